"""An Ollama Modelfile next to the exported GGUF, with the model's chat template in Ollama's Go syntax.

Jinja templates cannot be translated in general, so the template family is recognized by rendering the
model's own template on a probe conversation (ChatML as in SmolLM2 / Qwen, Llama 3, Mistral [INST]) and the
matching Go template is written, with the stop token and the default system prompt the Jinja template
inserts. An unrecognized template gets no TEMPLATE line and a comment saying so: Ollama then falls back
to the `tokenizer.chat_template` stored in the GGUF.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
LLAMA3 = (
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
MISTRAL = (
    "{{- range $i, $m := .Messages }}{{- if eq $m.Role \"user\" }}[INST] "
    "{{ if and $.System (eq $i 0) }}{{ $.System }}\n\n{{ end }}{{ $m.Content }} [/INST]"
    "{{- else if eq $m.Role \"assistant\" }} {{ $m.Content }}</s>{{ end }}{{ end }}"
)
PROBE = "TUNEWISE_PROBE_QUESTION"


def template_family(tokenizer) -> tuple[str | None, str | None]:
    """(family, default system prompt) recognized from the tokenizer's own chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None, None
    text = tokenizer.apply_chat_template([{"role": "user", "content": PROBE}], tokenize=False,
                                         add_generation_prompt=True)
    if f"<|im_start|>user\n{PROBE}<|im_end|>" in text:
        head = "<|im_start|>system\n"
        system = text[len(head):text.index("<|im_end|>")] if text.startswith(head) else None
        return "chatml", system
    if f"<|start_header_id|>user<|end_header_id|>\n\n{PROBE}<|eot_id|>" in text:
        marker = "<|start_header_id|>system<|end_header_id|>\n\n"
        system = None
        if marker in text:
            start = text.index(marker) + len(marker)
            system = text[start:text.index("<|eot_id|>", start)] or None
        return "llama3", system
    if f"[INST] {PROBE} [/INST]" in text or f"[INST]{PROBE}[/INST]" in text:
        return "mistral", None
    return None, None


def _quote(text: str) -> str:
    if '"""' in text:
        raise ValueError('a Modelfile value cannot contain """')
    return f'"""{text}"""'


def write_modelfile(out_dir: Path, gguf_name: str, tokenizer, model_name: str) -> Path:
    family, system = template_family(tokenizer)
    lines = [f"# Ollama Modelfile for {model_name}, written by `tunewise export --format gguf`.",
             f"#   ollama create {model_name} -f Modelfile && ollama run {model_name}",
             f"FROM ./{gguf_name}"]
    stops: list[str] = []
    if family is None:
        lines.append("# The chat template was not recognized; Ollama uses tokenizer.chat_template from the GGUF.")
    else:
        lines.append(f"TEMPLATE {_quote({'chatml': CHATML, 'llama3': LLAMA3, 'mistral': MISTRAL}[family])}")
        stops = {"chatml": ["<|im_end|>"], "llama3": ["<|eot_id|>"], "mistral": ["</s>"]}[family]
        if system:  # the Jinja template inserts this when the conversation has no system message
            lines.append(f"SYSTEM {_quote(system)}")
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    path = out_dir / "Modelfile"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
