"""Row filters: empty, too short, reply identical to the prompt, wrong language.

(Too long is decided after tokenization with the base model's tokenizer: see template.py.)
Each filter returns (reason, detail) for a row it rejects, or None.
"""

from __future__ import annotations

import re

from executor.data.records import Example

# A handful of function words per language: enough to tell which language a paragraph is in, which is
# all an optional language filter needs (no model download, no extra dependency).
STOPWORDS = {
    "en": set("the and of to in is that it for you with on this are be was have not as at but or from a an i "
              "my me we our your do does did how what why when where then please can could would will if so "
              "there their they he she his her them us am".split()),
    "de": set("der die und das ist nicht ich sie es zu den mit von ein eine auf für sich dem auch wir".split()),
    "fr": set("le la les et est des une un que pas pour dans ce qui sur il elle vous nous avec au du".split()),
    "es": set("el la los las y es que de en un una por con para no se del al lo como más pero".split()),
    "it": set("il la le e di che è un una per non con del della sono si lo gli da questo come".split()),
    "pt": set("o a os as e de que é um uma para com não do da em no na por se mais como".split()),
    "nl": set("de het een en van is dat niet in op te met voor zijn er aan ook als maar om".split()),
}
_WORDS = re.compile(r"[^\W\d_]+")


def guess_language(text: str) -> str | None:
    words = _WORDS.findall(text.lower()[:5000])
    if len(words) < 4:
        return None  # too little text to judge: never reject on a guess
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] / len(words) >= 0.08 else "other"


def _reply(example: Example) -> str:
    if example.chosen is not None:
        return example.chosen
    if example.text is not None and not example.messages:
        return example.text
    assistant = [m["content"] for m in example.messages if m["role"] == "assistant"]
    return assistant[-1] if assistant else ""


def _prompt(example: Example) -> str:
    users = [m["content"] for m in example.messages if m["role"] == "user"]
    return users[-1] if users else ""


def check_example(example: Example, min_chars: int = 2, language: str | None = None) -> tuple[str, str] | None:
    strings = example.strings()
    if not any(s.strip() for s in strings):
        return "empty", "no text left after cleaning"
    reply = _reply(example)
    if example.kind != "text" and not _prompt(example).strip():
        return "empty", "the user turn is empty"
    if not reply.strip():
        return "empty", "the reply is empty" if example.kind != "text" else "the text is empty"
    if len(reply.strip()) < min_chars:
        return "too_short", f"the reply has {len(reply.strip())} characters (minimum {min_chars})"
    if example.kind == "preference" and example.rejected is not None:
        if not example.rejected.strip():
            return "empty", "the rejected reply is empty"
        if example.rejected.strip() == example.chosen.strip():
            return "response_equals_prompt", "chosen and rejected replies are identical"
    if example.kind != "text" and " ".join(reply.split()).lower() == " ".join(_prompt(example).split()).lower():
        return "response_equals_prompt", "the reply repeats the prompt verbatim"
    if language:
        found = guess_language(" ".join(strings))
        if found is not None and found != language:
            return "wrong_language", f"reads as {found!r}, expected {language!r}"
    return None
