"""The rules engine: evaluate knowledge/rules.yaml against a profile and decide.

Each rule adds scores to approaches/techniques or forbids some (hard constraints). The decision is
the best-scoring allowed approach, then the best allowed technique compatible with it; ties go to the
cheaper option (the order in `executor.plan.COMPATIBLE_TECHNIQUES`). Questions come from asking the
engine itself: an unknown field is worth asking about when some answer to it would change the decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from assistant.estimates import techniques_that_fit
from assistant.sizing import band_fits
from executor.plan import COMPATIBLE_TECHNIQUES

if TYPE_CHECKING:
    from assistant.knowledge import Knowledge, Question, Rule
    from assistant.profile import UseCaseProfile

APPROACH_ORDER = tuple(COMPATIBLE_TECHNIQUES)  # cheapest first: prompting, rag, fine_tuning, ...

TRAINING_DATA_KINDS = ("instruction_pairs", "chat_logs", "labeled_classes", "preference_pairs")


def derive(values: dict[str, Any], knowledge: Knowledge) -> dict[str, Any]:
    facts = dict(values)
    gpu_mem, gpu_count = values.get("gpu_memory_gb"), values.get("gpu_count")
    if gpu_mem is not None:
        facts["has_gpu"] = gpu_mem > 0 and (gpu_count is None or gpu_count > 0)
        facts["total_gpu_memory_gb"] = gpu_mem * (gpu_count or 1) if facts["has_gpu"] else 0.0
    elif gpu_count is not None:
        facts["has_gpu"] = gpu_count > 0
        facts["total_gpu_memory_gb"] = None
    else:
        facts["has_gpu"] = facts["total_gpu_memory_gb"] = None
    kind = values.get("data_kind")
    if kind is None:
        # "60,000 examples" with no word on their kind: counted examples are training examples; a team that
        # has already fine-tuned a model had examples to train it on.
        trained = (values.get("example_count") or 0) > 0 or values.get("tuning_fell_short") is True
        facts["has_training_data"] = True if trained else None
    else:
        facts["has_training_data"] = kind in TRAINING_DATA_KINDS
    behaviour = [values.get(k) for k in ("custom_tone", "domain_vocabulary", "specialized_reasoning")]
    behaviour.append(None if values.get("output_format") is None else values["output_format"] == "structured")
    facts["custom_behaviour"] = True if any(behaviour) else (None if None in behaviour else False)
    model = knowledge.models.get(values.get("preferred_model") or "")
    facts["preferred_params_b"] = model.params_b if model else None
    facts["preferred_family"] = model.family if model else None
    task = values.get("task_type")
    facts["narrow_task"] = None if task is None else task in ("classification", "extraction")
    # Which training techniques fit the preferred model on the stated GPUs (None when unknown).
    if model and model.params_b and facts["has_gpu"] is not None:
        facts["preferred_fits"] = techniques_that_fit(
            model, values.get("gpu_memory_gb") or 0.0, values.get("gpu_count") or 1, knowledge
        )
    else:
        facts["preferred_fits"] = None
    # Which techniques fit a model of the size the task needs (the right-sized choice, not the largest).
    facts["band_fits"] = band_fits(facts, knowledge)
    return facts


def _compare(op: str, value: Any, arg: Any) -> bool:
    if op == "known":
        return (value is not None) == bool(arg)
    if value is None:
        return False
    if op == "eq":
        return value == arg
    if op == "ne":
        return value != arg
    if op == "in":
        return value in arg
    if op == "not_in":
        return value not in arg
    if op == "contains":
        return arg in value
    if op == "gt":
        return value > arg
    if op == "gte":
        return value >= arg
    if op == "lt":
        return value < arg
    if op == "lte":
        return value <= arg
    raise ValueError(f"unknown operator {op!r}")


def matches(cond: dict[str, Any], facts: dict[str, Any]) -> bool:
    for key, arg in cond.items():
        if key == "all":
            ok = all(matches(sub, facts) for sub in arg)
        elif key == "any":
            ok = any(matches(sub, facts) for sub in arg)
        elif key == "not":
            ok = not matches(arg, facts)
        elif isinstance(arg, dict):
            ok = all(_compare(op, facts.get(key), a) for op, a in arg.items())
        else:
            ok = facts.get(key) is not None and facts.get(key) == arg
        if not ok:
            return False
    return True


@dataclass
class Decision:
    approach: str
    technique: str
    approach_scores: dict[str, float]
    technique_scores: dict[str, float]
    allowed_approaches: list[str]
    allowed_techniques: list[str]
    fired: list[Rule]
    facts: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return self.approach, self.technique

    def ranked_options(self) -> list[tuple[str, str, float]]:
        """Every allowed (approach, technique) pair with its combined score, best first."""
        options = []
        for approach in self.allowed_approaches:
            for technique in COMPATIBLE_TECHNIQUES[approach]:
                if technique in self.allowed_techniques:
                    score = self.approach_scores[approach] + self.technique_scores.get(technique, 0.0)
                    options.append((approach, technique, score))
        return sorted(options, key=lambda o: -o[2])

    def margin(self) -> float:
        chosen = self.approach_scores[self.approach]
        others = [self.approach_scores[a] for a in self.allowed_approaches if a != self.approach]
        return chosen - max(others) if others else 10.0


def decide(facts: dict[str, Any], rules: list[Rule]) -> Decision:
    approach_scores = dict.fromkeys(APPROACH_ORDER, 0.0)
    technique_scores: dict[str, float] = {}
    forbidden_a: set[str] = set()
    forbidden_t: set[str] = set()
    fired = []
    for rule in rules:
        if not matches(rule.when, facts):
            continue
        fired.append(rule)
        for name, score in rule.effect.approach.items():
            approach_scores[name] += score
        for name, score in rule.effect.technique.items():
            technique_scores[name] = technique_scores.get(name, 0.0) + score
        forbidden_a.update(rule.effect.forbid_approach)
        forbidden_t.update(rule.effect.forbid_technique)
    all_techniques = {t for ts in COMPATIBLE_TECHNIQUES.values() for t in ts}
    allowed_t = [t for t in all_techniques if t not in forbidden_t]
    # An approach survives only if at least one technique compatible with it is still allowed.
    allowed_a = [
        a for a in APPROACH_ORDER
        if a not in forbidden_a and any(t in allowed_t for t in COMPATIBLE_TECHNIQUES[a])
    ]
    if not allowed_a:  # contradictory constraints: fall back to the option that needs nothing
        allowed_a, allowed_t = ["prompting"], ["none"]
    approach = max(allowed_a, key=lambda a: (approach_scores[a], -APPROACH_ORDER.index(a)))
    compatible = [t for t in COMPATIBLE_TECHNIQUES[approach] if t in allowed_t]
    technique = max(
        compatible, key=lambda t: (technique_scores.get(t, 0.0), -COMPATIBLE_TECHNIQUES[approach].index(t))
    )
    return Decision(
        approach, technique, approach_scores, technique_scores, allowed_a, sorted(allowed_t), fired, facts
    )


class AskedQuestion(BaseModel):
    """A question from knowledge/questions.yaml asked about one profile: what its answers would change.
    The recommendation carries these as they are (one question type from the engine to the chat)."""

    field: str
    text: str
    options: list[dict[str, Any]]
    impact: float  # share of the answers that would change the decision
    would_change_to: dict[str, str]  # option label -> "approach/technique" it would lead to


class RulesEngine:
    def __init__(self, knowledge: Knowledge):
        self.knowledge = knowledge
        self.rules = knowledge.rules

    def facts(self, profile: UseCaseProfile) -> dict[str, Any]:
        return derive(profile.values(), self.knowledge)

    def decide(self, profile: UseCaseProfile) -> Decision:
        return decide(self.facts(profile), self.rules)

    def counterfactual(self, profile: UseCaseProfile, field_name: str, value: Any) -> Decision:
        values = profile.values()
        values[field_name] = value
        return decide(derive(values, self.knowledge), self.rules)

    def counterfactuals(self, profile: UseCaseProfile) -> list[tuple[Question, Any, Decision]]:
        """The decision under every answer to every question (one table serves questions and alternatives)."""
        facts = self.facts(profile)
        return [(q, option, self.counterfactual(profile, q.field, option.value))
                for q in self.knowledge.questions for option in q.options
                if option.unless is None or not matches(option.unless, facts)]

    def questions(self, profile: UseCaseProfile, decision: Decision,
                  table: list[tuple[Question, Any, Decision]] | None = None) -> list[AskedQuestion]:
        """Unknown fields whose answer would change the decision, most decision-relevant first."""
        changes: dict[str, dict[str, str]] = {}
        for question, option, alt in table if table is not None else self.counterfactuals(profile):
            if not getattr(profile, question.field).known and alt.key != decision.key:
                changes.setdefault(question.field, {})[option.label] = f"{alt.approach}/{alt.technique}"
        asked = [
            AskedQuestion(field=q.field, text=q.text, options=[o.model_dump(exclude={"unless"}) for o in q.options],
                          impact=round(len(changes[q.field]) / len(q.options), 3), would_change_to=changes[q.field])
            for q in self.knowledge.questions if q.field in changes
        ]
        return sorted(asked, key=lambda q: -q.impact)  # stable: ties keep questions.yaml's order

    def reasons(self, decision: Decision) -> list[Rule]:
        """Fired rules that pushed toward the decision, strongest first; hard constraints included."""
        scored = []
        for rule in decision.fired:
            weight = rule.effect.approach.get(decision.approach, 0.0)
            if decision.technique != "none":
                weight += rule.effect.technique.get(decision.technique, 0.0)
            constrains = self._constraint_mattered(rule, decision)
            if weight > 0 or constrains:
                scored.append((weight + (100 if constrains else 0), rule))
        scored.sort(key=lambda item: -item[0])
        chosen = [rule for _, rule in scored]
        # Thin profiles: fall back on the other fired rules (priors always fire), those that speak to
        # the chosen approach or technique first, so there are always at least two reasons.
        compatible = COMPATIBLE_TECHNIQUES[decision.approach]

        def relevance(rule: Rule) -> int:
            if rule.effect.approach.get(decision.approach, 0) > 0:
                return 0
            return 1 if any(t in compatible for t in rule.effect.technique) else 2

        for rule in sorted(decision.fired, key=relevance):
            if len(chosen) >= 2:
                break
            if rule not in chosen:
                chosen.append(rule)
        return chosen


    @staticmethod
    def _constraint_mattered(rule: Rule, decision: Decision) -> bool:
        """A constraint explains the decision only if it removed an option that would otherwise have won."""
        chosen_a = decision.approach_scores[decision.approach]
        if any(decision.approach_scores[a] >= chosen_a for a in rule.effect.forbid_approach):
            return True
        chosen_t = decision.technique_scores.get(decision.technique, 0.0)
        return any(
            t in COMPATIBLE_TECHNIQUES[decision.approach] and decision.technique_scores.get(t, 0.0) >= chosen_t
            for t in rule.effect.forbid_technique
        )
