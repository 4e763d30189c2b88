"""Render examples with the base model's own chat template, check it, and count tokens.

The checks are the mistakes fine-tuning users hit most (see their issue trackers):
  * no end-of-turn / EOS token after the assistant's reply: the model never learns to stop;
  * the pad token equal to the end-of-turn token: padding masks the end of turn out of the loss;
  * a prompt rendering that is not a prefix of the full conversation: the assistant-only loss mask cannot
    be derived (and is empty when the prompt alone fills the context);
  * a system prompt the template drops, or inserts by default, or expects only in first position.
Token lengths are counted on the full rendered conversation with the model's tokenizer; rows longer
than the context become `too_long` rejects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from executor.data.records import Example

PROBE_SYSTEM, PROBE_USER, PROBE_REPLY = "PROBE_SYSTEM_7f3a", "PROBE_USER_7f3a", "PROBE_REPLY_7f3a"


@dataclass
class TemplateReport:
    tokenizer: str
    end_of_turn: str | None = None
    eos_after_reply: bool = False
    pad_token: str | None = None
    system_supported: bool = True
    default_system_prompt: str | None = None
    prefix_preserving: bool = True
    rows_checked_for_mask: int = 0
    rows_with_empty_mask: int = 0
    system_moved_to_front: int = 0
    system_merged_into_user: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChatTemplate:
    def __init__(self, tokenizer, max_length: int):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; pick an instruct/chat model or set one")
        self.tok = tokenizer
        self.max_length = max_length
        self.report = TemplateReport(tokenizer=getattr(tokenizer, "name_or_path", "") or "")
        self._inspect()

    # ------------------------------------------------------------------ probing the template
    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _inspect(self) -> None:
        r = self.report
        user = {"role": "user", "content": PROBE_USER}
        full = self.render([user, {"role": "assistant", "content": PROBE_REPLY}])
        tail = full.split(PROBE_REPLY, 1)[1]
        r.eos_after_reply = bool(tail.strip())
        r.end_of_turn = tail.strip().split()[0] if tail.strip() else None
        if not r.eos_after_reply:
            r.problems.append("the chat template adds no end-of-turn token after the assistant reply: a model "
                              "trained on it never learns to stop")
        r.pad_token = self.tok.pad_token
        if r.pad_token is not None and r.end_of_turn is not None and r.pad_token == r.end_of_turn:
            r.problems.append(f"the pad token is the end-of-turn token {r.pad_token!r}: masking padding out of "
                              "the loss masks the end of turn too")
        prompt = self.render([user], add_generation_prompt=True)
        r.prefix_preserving = full.startswith(prompt)
        if not r.prefix_preserving:
            r.problems.append("rendering the prompt is not a prefix of rendering the conversation, so the "
                              "assistant-only loss mask cannot be derived from this template")
        try:
            with_system = self.render([{"role": "system", "content": PROBE_SYSTEM}, user])
            r.system_supported = PROBE_SYSTEM in with_system
        except Exception:  # templates such as Gemma's raise on a system role
            r.system_supported, with_system = False, ""
        if not r.system_supported:
            r.notes.append("the template has no system role: system prompts are merged into the first user turn")
        else:
            pre, post = with_system.split(PROBE_SYSTEM, 1)
            bare = self.render([user])
            if bare.startswith(pre) and bare.endswith(post) and len(bare) > len(pre) + len(post):
                r.default_system_prompt = bare[len(pre):len(bare) - len(post)]
                r.notes.append(f"the template inserts a default system prompt when a conversation has none: "
                               f"{r.default_system_prompt!r}; rows without one will be trained with it (set "
                               "a system prompt to choose your own)")

    # ------------------------------------------------------------------ per example
    def place_system(self, example: Example) -> None:
        """System turns go where the template expects them: merged, first (or into the first user turn)."""
        systems = [m for m in example.messages if m["role"] == "system"]
        if not systems:
            return
        if len(systems) == 1 and example.messages[0]["role"] == "system" and self.report.system_supported:
            return
        rest = [m for m in example.messages if m["role"] != "system"]
        text = "\n\n".join(m["content"] for m in systems)
        if self.report.system_supported:
            example.messages = [{"role": "system", "content": text}, *rest]
            self.report.system_moved_to_front += 1
        else:
            first_user = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
            if first_user is not None:
                rest[first_user] = {"role": "user", "content": f"{text}\n\n{rest[first_user]['content']}"}
            example.messages = rest
            self.report.system_merged_into_user += 1

    def conversations(self, example: Example) -> list[list[dict[str, str]]]:
        if example.kind == "preference":
            return [
                [*example.messages, {"role": "assistant", "content": example.chosen}],
                [*example.messages, {"role": "assistant", "content": example.rejected}],
            ]
        return [example.messages]

    def token_lengths(self, examples: list[Example]) -> list[int | str]:
        """Tokens per example (the longer of chosen/rejected for preference rows), batched; for a row the
        template cannot render (e.g. roles that do not alternate), the error message instead."""
        texts: list[str] = []
        owners: list[int] = []
        lengths: list[int | str] = [0] * len(examples)
        for i, ex in enumerate(examples):
            if ex.kind == "text":
                texts.append(ex.text)
                owners.append(i)
                continue
            try:
                rendered = [self.render(conversation) for conversation in self.conversations(ex)]
            except Exception as exc:  # jinja2 TemplateError and friends: one bad row must not stop the run
                lengths[i] = f"the chat template cannot render this row: {exc}"
                continue
            texts += rendered
            owners += [i] * len(rendered)
        encoded = self.tok(texts, add_special_tokens=False)["input_ids"] if texts else []
        for owner, ids in zip(owners, encoded, strict=True):
            lengths[owner] = max(lengths[owner], len(ids) + (1 if examples[owner].kind == "text" else 0))
        return lengths

    def check_masks(self, examples: list[Example]) -> None:
        """On a sample: the assistant tokens that survive truncation to max_length (the loss mask) exist."""
        for ex in examples:
            if ex.kind == "text" or not self.report.prefix_preserving:
                continue
            for conversation in self.conversations(ex):
                prompt_len = len(self.tok(self.render(conversation[:-1], add_generation_prompt=True),
                                          add_special_tokens=False)["input_ids"])
                full_len = len(self.tok(self.render(conversation), add_special_tokens=False)["input_ids"])
                self.report.rows_checked_for_mask += 1
                if min(full_len, self.max_length) - prompt_len <= 0:
                    self.report.rows_with_empty_mask += 1
        if self.report.rows_with_empty_mask:
            self.report.problems.append(
                f"{self.report.rows_with_empty_mask} of {self.report.rows_checked_for_mask} sampled conversations "
                f"have no assistant tokens left within {self.max_length} tokens (empty loss mask)"
            )
