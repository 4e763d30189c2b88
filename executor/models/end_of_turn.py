"""The end-of-turn token, read from the model's own chat template, and every stop setting made to agree.

A chat model ends an assistant turn with the token its template writes after the reply (`<|im_end|>` for
SmolLM2 and Qwen, `<|eot_id|>` for Llama 3, `<end_of_turn>` for Gemma). The tokenizer's `eos_token` does
not always say so: for the bundled SmolLM2 it depends on the transformers version's GGUF conversion
(`<|im_start|>` with 5.17, `<|im_end|>` with 5.24). A tuned model whose eos is not its end of turn runs on
past its answer in evaluation, the playground, `tunewise serve` and every tool that trusts the exported
tokenizer (llama.cpp, vLLM, Ollama). So the template decides, once, for every loader path and export:
the tokenizer's eos, `generation_config.eos_token_id` (a list where the model has several stop tokens)
and, through them, the GGUF metadata and the Modelfile's stop.
"""

from __future__ import annotations

PROBE_USER, PROBE_REPLY = "PROBE_USER_5c1e", "PROBE_REPLY_5c1e"


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template writes first after an assistant reply (None without one)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROBE_USER}, {"role": "assistant", "content": PROBE_REPLY}],
            tokenize=False,
        )
    except Exception:  # noqa: BLE001 - a template that cannot render a plain turn names no end of turn
        return None
    if PROBE_REPLY not in rendered:
        return None
    tail = rendered.split(PROBE_REPLY, 1)[1]
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    specials |= {str(t) for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values()}
    found = [(tail.find(token), token) for token in specials if token and token in tail]
    return min(found)[1] if found else None


def with_end_of_turn(tokenizer):
    """The tokenizer with eos set to its chat template's end of turn (unchanged where the template has none)."""
    token = end_of_turn_token(tokenizer)
    if token is not None and tokenizer.eos_token != token:
        tokenizer.eos_token = token
    return tokenizer


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Every token that ends a generation: the end of turn first, then the tokenizer's and the model's eos."""
    ids: list[int] = []

    def add(value) -> None:
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, int) and v >= 0 and v not in ids:
                ids.append(v)

    token = end_of_turn_token(tokenizer)
    if token is not None:
        add(tokenizer.convert_tokens_to_ids(token))
    add(tokenizer.eos_token_id)
    if model is not None:
        for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
            add(getattr(source, "eos_token_id", None) if source is not None else None)
    return ids


def set_generation_stop(model, tokenizer) -> None:
    """Make the model's own configs stop at the end of turn, so a saved model carries it."""
    ids = stop_token_ids(tokenizer, model)
    if not ids:
        return
    model.config.eos_token_id = ids[0]
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.eos_token_id = ids if len(ids) > 1 else ids[0]
        if generation.pad_token_id is None and tokenizer.pad_token_id is not None:
            generation.pad_token_id = tokenizer.pad_token_id
