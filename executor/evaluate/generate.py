"""Batched greedy generation and assistant-token perplexity, the two model calls evaluation needs.

Lazy imports: torch is imported inside the functions that use it, so importing this module (from the CLI, the
chat or a run process) stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from executor.models.end_of_turn import stop_token_ids
from executor.train.data import IGNORE_INDEX, PadCollator, tokenize_chat

Progress = Callable[[int, int], None]


def generate(model, tokenizer, prompts: Sequence[list[dict[str, str]]], max_new_tokens: int,
             batch_size: int = 16, progress: Progress | None = None) -> list[str]:
    """Greedy completions of chat prompts, left-padded in batches (same decoding for every system)."""
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    outputs: list[str] = []
    try:
        order = sorted(range(len(prompts)), key=lambda i: len(str(prompts[i])))  # similar lengths batch well
        texts = {i: tokenizer.apply_chat_template(list(prompts[i]), tokenize=False, add_generation_prompt=True)
                 for i in order}
        results: dict[int, str] = {}
        device = next(model.parameters()).device
        for start in range(0, len(order), batch_size):
            ids = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in ids], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(device)
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=stop_token_ids(tokenizer, model))
            for row, i in enumerate(ids):
                new = out[row, enc["input_ids"].shape[1]:]
                results[i] = tokenizer.decode(new, skip_special_tokens=True).strip()
            if progress:
                progress(min(start + batch_size, len(order)), len(order))
        outputs = [results[i] for i in range(len(prompts))]
    finally:
        tokenizer.padding_side = side
    return outputs


def _virtual_tokens(model) -> int:
    """Prompt tuning prepends learned tokens to the logits; their count, to slice them off."""
    config = getattr(model, "peft_config", {}).get("default") if hasattr(model, "peft_config") else None
    return getattr(config, "num_virtual_tokens", 0) if config is not None and config.is_prompt_learning else 0


def assistant_nll(model, tokenizer, conversations: Sequence[list[dict[str, str]]], max_length: int,
                  batch_size: int = 8) -> list[tuple[float, int]]:
    """(summed negative log-likelihood, token count) of the assistant tokens of each conversation; perplexity
    is exp(sum of NLL / sum of tokens), token-weighted."""
    import torch

    collate = PadCollator(tokenizer.pad_token_id)
    skip = _virtual_tokens(model)
    device = next(model.parameters()).device
    results: list[tuple[float, int]] = []
    features = [tokenize_chat(tokenizer, c, max_length) for c in conversations]
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size]
        present = [f for f in chunk if f is not None]
        scores = iter([])
        if present:
            batch = {k: v.to(device) for k, v in collate(present).items()}
            with torch.inference_mode():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logits = logits[:, skip:, :].float()
            labels = batch["labels"]
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="none").view(shift_labels.shape)
            counts = (shift_labels != IGNORE_INDEX).sum(1)
            scores = iter(zip(losses.sum(1).tolist(), counts.tolist(), strict=True))
        for f in chunk:
            results.append(next(scores) if f is not None else (math.nan, 0))
    return results
