"""The advice revised by a pilot's evidence (issue #20): the pilot's verdict becomes a profile fact, the rules
decide again, and the revision says what changed and why, in the pilot's own numbers.

The verdict is a fact like any other (`pilot_verdict`, source "user": measured on the user's data), so the
same rules engine, trace and "why" answers serve the revised card; nothing is decided outside the rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assistant.profile import UseCaseProfile
from assistant.recommend import Advisor, Recommendation


@dataclass(frozen=True)
class Revision:
    before: Recommendation
    after: Recommendation
    verdict: str
    reason: str          # the pilot's sentence, with its numbers

    @property
    def changed(self) -> bool:
        return (self.before.approach, self.before.technique) != (self.after.approach, self.after.technique)

    def summary(self) -> str:
        was = f"{self.before.approach} / {self.before.technique}"
        now = f"{self.after.approach} / {self.after.technique}"
        head = f"Advice changed: {was} -> {now}." if self.changed else f"Advice stands: {now}."
        return f"{head} {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"before": {"approach": self.before.approach, "technique": self.before.technique,
                           "confidence": self.before.confidence},
                "after": {"approach": self.after.approach, "technique": self.after.technique,
                          "confidence": self.after.confidence},
                "changed": self.changed, "verdict": self.verdict, "reason": self.reason,
                "rules": [r.rule for r in self.after.reasons if r.rule.startswith("pilot-")]}


def pilot_evidence(pilot_report: dict[str, Any]) -> str:
    """The sentence the `pilot_verdict` fact keeps as its evidence."""
    return f"pilot on {pilot_report['n']} test rows of your data: {pilot_report['reason']}"


def revise(advisor: Advisor, profile: UseCaseProfile, pilot_report: dict[str, Any], text: str = "") -> Revision:
    """The recommendation for `profile` before and after the pilot in `pilot_report` (pilot.json)."""
    before = advisor.recommend(text, profile=profile)
    measured = profile.with_fact("pilot_verdict", pilot_report["verdict"], "user", pilot_evidence(pilot_report))
    return Revision(before, advisor.recommend(text, profile=measured), pilot_report["verdict"],
                    pilot_report["reason"])
