"""Reading the files under knowledge/: where the folder is, its YAML reader and the error both sides raise.

The advisor (assistant/knowledge.py) reads all of knowledge/; the executor reads only the model catalog
(executor/models/catalog.py). Both come through here, so a broken file gets the same message, naming the
file, the entry and the field, whichever side found it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from executor.paths import PROJECT_ROOT

# libyaml's safe loader where PyYAML was built with it: all of knowledge/ parses in ~0.02 s instead of ~0.2 s,
# on every cold `tunewise recommend` and chat start. Same documents, same safety (no arbitrary tags).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used; the message says where and what to fix."""


def default_knowledge_dir() -> Path:
    """knowledge/ next to the packages (editable install), overridable with TUNEWISE_KNOWLEDGE."""
    env = os.environ.get("TUNEWISE_KNOWLEDGE")
    return Path(env) if env else PROJECT_ROOT / "knowledge"


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # a safe loader, see _LOADER
    except FileNotFoundError:
        raise KnowledgeError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"{path}: not valid YAML: {exc}") from None


def validated(model: type[BaseModel], raw: Any, where: str):
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "<entry>"
        raise KnowledgeError(f"{where}: field {loc!r}: {err['msg']}") from None


def entries(path: Path, raw: Any, key: str) -> list[dict]:
    if not isinstance(raw, dict) or not isinstance(raw.get(key), list):
        raise KnowledgeError(f"{path}: expected a top-level {key!r} list")
    return raw[key]


def entry_name(entry: Any, index: int, key: str = "id") -> str:
    return str(entry.get(key)) if isinstance(entry, dict) and entry.get(key) else f"#{index + 1}"
