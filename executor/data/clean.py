"""Text repair and normalization: ftfy for mojibake, NFC, control characters, whitespace.

Applied to every string of an Example before PII redaction, filters and de-duplication, so that two
rows that differ only by a broken encoding or stray spaces are recognized as the same row.
"""

from __future__ import annotations

import re
import unicodedata

import ftfy

# C0/C1 control characters except tab and newline (which carry structure in code and chat turns).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")
_ftfy_config = ftfy.TextFixerConfig(normalization="NFC", explain=False)


def normalize_text(text: str) -> str:
    if not text:
        return ""
    if not text.isascii():
        text = ftfy.fix_text(text, _ftfy_config)  # mojibake ("cafÃ©" -> "café"), then NFC
        text = _ZERO_WIDTH.sub("", text)
        text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()
