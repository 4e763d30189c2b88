"""The base-model catalog (knowledge/models.yaml), read and checked once for the advisor and the executor.

The advisor chooses from it (assistant/knowledge.py adds the check that each model's `cite` names a guidance
passage); the executor resolves plan model names with it (executor/models/registry.py). `model_ref` turns a
catalog entry into the plan's reference to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from executor.knowledge_files import KnowledgeError, default_knowledge_dir, entries, entry_name, read_yaml, validated
from executor.plan import TECHNIQUES, ModelRef


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    family: str
    source: str
    hf_id: str | None = None
    params_b: float | None = None
    active_params_b: float | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    vocab_size: int | None = None
    context_length: int
    license: str
    commercial_use: bool
    methods: list[str]
    tags: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    good_for: str
    cite: str

    @field_validator("source")
    @classmethod
    def _source(cls, value):
        if value not in ("bundled", "hub", "api"):
            raise ValueError("source must be bundled, hub or api")
        return value

    @field_validator("methods")
    @classmethod
    def _methods(cls, value):
        bad = [m for m in value if m not in TECHNIQUES]
        if bad:
            raise ValueError(f"unknown method(s) {bad}")
        return value


@dataclass(frozen=True)
class Catalog:
    path: Path
    models: dict[str, ModelInfo]  # by id, in the file's order
    sizing: dict[str, Any] = field(default_factory=dict)  # size bands by task, and their caps (assistant/sizing.py)


def load_catalog(root: str | Path | None = None) -> Catalog:
    """models.yaml under `root` (default: the knowledge folder), every entry checked; KnowledgeError names
    the model and the field that is wrong."""
    path = Path(root or default_knowledge_dir()) / "models.yaml"
    raw = read_yaml(path)
    sizing = (raw.get("sizing") if isinstance(raw, dict) else None) or {}
    for task, band in (sizing.get("by_task") or {}).items():
        if not isinstance(band, dict) or not {"min_b", "max_b"} <= set(band):
            raise KnowledgeError(f"{path}: sizing.by_task.{task}: needs min_b and max_b")
    models: dict[str, ModelInfo] = {}
    aliases: dict[str, str] = {}
    for i, entry in enumerate(entries(path, raw, "models")):
        where = f"{path}: model {entry_name(entry, i)!r}"
        info = validated(ModelInfo, entry, where)
        if info.id in models:
            raise KnowledgeError(f"{where}: field 'id': duplicate model id")
        if info.source != "api" and not (info.params_b and info.hidden_size and info.num_layers):
            raise KnowledgeError(f"{where}: open-weights models need params_b, hidden_size and num_layers")
        for alias in [info.id, *info.aliases]:
            if aliases.get(alias.lower(), info.id) != info.id:
                raise KnowledgeError(f"{where}: field 'aliases': {alias!r} also names {aliases[alias.lower()]}")
            aliases[alias.lower()] = info.id
        models[info.id] = info
    return Catalog(path, models, sizing)


def model_ref(info: ModelInfo) -> ModelRef:
    """The plan's reference to a catalog model."""
    return ModelRef(id=info.id, source=info.source, hf_id=info.hf_id, params_b=info.params_b)
