"""The TrainingPlan: the one typed contract between the advisor (assistant/) and the executor.

The assistant writes a plan; the executor reads it and runs it. Nothing else crosses that line, so
every field here is something the executor acts on. Plans are versioned: `schema_version` is bumped on
any incompatible change and `load_plan` refuses versions it does not know, naming the file and field.

Lazy imports: pydantic_core is imported inside the functions that use it, so importing this module (from the CLI,
the chat or a run process) stays cheap.
"""

from __future__ import annotations

import codecs
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PLAN_SCHEMA_VERSION = 1
# Limits of a plan file (README "Limits"): a plan is a few KB of YAML a few levels deep; the YAML parser recurses
# per level, so a hostile file must be refused before it can exhaust the stack or memory.
MAX_PLAN_BYTES = 1 << 20
MAX_PLAN_DEPTH = 20
# Bounds of the numbers a run acts on: far beyond any real run, but an `epochs: 1e308` or a batch of 10^8 is a
# typo or an attack, and must be named before anything is scheduled.
MAX_EPOCHS = 1000
MAX_BATCH = 65536
MAX_STEPS = 10_000_000
MAX_SEQ_LENGTH = 1 << 20
MAX_MODEL_ID_CHARS = 1024

Approach = Literal["prompting", "rag", "fine_tuning", "rag_fine_tuning", "from_scratch"]
Technique = Literal["full", "lora", "qlora", "prompt_tuning", "dpo", "rlhf", "api", "none"]
DataFormat = Literal[
    "auto", "alpaca", "sharegpt", "chatml", "prompt_completion", "preference", "openai_preference",
    "classification", "text", "squad", "transcript", "unpaired_preference", "stepwise_supervision",
]
EvalTask = Literal["auto", "exact_match", "classification", "json", "generation"]


@dataclass(frozen=True)
class TechniqueInfo:
    """What a technique is, written once: the advisor, the plan checks and the trainers read this row
    instead of spelling out their own lists of technique names."""

    label: str  # how people call it (the recommendation and the chat show this)
    family: Literal["sft", "preference", "hosted", "none"]  # which trainer runs it (hosted: the vendor's)
    lora: Literal["always", "optional", "never"] = "never"  # optional: DPO/RLHF use LoRA when the plan says
    prompt_adapter: bool = False  # trains virtual prompt tokens (prompt / prefix tuning) over a frozen base
    quantized: bool = False  # the frozen base is loaded in 4 bits (QLoRA)
    sections: tuple[str, ...] = ()  # the `training` sections a plan with this technique must carry

    @property
    def trains(self) -> bool:
        """A training loop runs here (hosted fine-tuning is trained by the vendor; `none` trains nothing)."""
        return self.family in ("sft", "preference")

    @property
    def hosted(self) -> bool:
        return self.family == "hosted"

    @property
    def needs_preference_data(self) -> bool:
        """Trains on pairs of responses, one preferred (two sequences per example)."""
        return self.family == "preference"

    @property
    def adapters(self) -> bool:
        """Always trains adapters over a frozen base (DPO/RLHF only when the plan gives LoRA settings)."""
        return self.lora == "always" or self.prompt_adapter


# Ordered as `Technique`: the training techniques come first, in the order the estimates list them.
TECHNIQUES: dict[str, TechniqueInfo] = {
    "full": TechniqueInfo("full fine-tuning", "sft"),
    "lora": TechniqueInfo("LoRA", "sft", lora="always", sections=("lora",)),
    "qlora": TechniqueInfo("QLoRA", "sft", lora="always", quantized=True, sections=("lora", "quantization")),
    "prompt_tuning": TechniqueInfo("prompt tuning", "sft", prompt_adapter=True, sections=("prompt_tuning",)),
    "dpo": TechniqueInfo("DPO", "preference", lora="optional", sections=("preference",)),
    "rlhf": TechniqueInfo("RLHF (reward model + GRPO)", "preference", lora="optional", sections=("rlhf",)),
    "api": TechniqueInfo("hosted API fine-tuning", "hosted"),
    "none": TechniqueInfo("no training", "none"),
}
TRAINING_TECHNIQUES = tuple(name for name, info in TECHNIQUES.items() if info.trains)


def trains(technique: str) -> bool:
    """Does a plan with this technique run training here? (`none` and hosted `api` do not.)"""
    return TECHNIQUES[technique].trains


def uses_lora(technique: str, lora: LoraSpec | None) -> bool:
    """LoRA adapters are trained: always for lora/qlora, for DPO/RLHF when the plan has LoRA settings."""
    mode = TECHNIQUES[technique].lora
    return mode == "always" or (mode == "optional" and lora is not None)

# Which techniques make sense under which approach. The rules engine and the plan share this table so a
# plan can never ask the executor for, say, DPO under a prompting-only approach.
COMPATIBLE_TECHNIQUES: dict[str, tuple[str, ...]] = {
    "prompting": ("none",),
    "rag": ("none",),
    "fine_tuning": ("lora", "qlora", "full", "prompt_tuning", "dpo", "rlhf", "api"),
    "rag_fine_tuning": ("lora", "qlora", "full", "prompt_tuning", "dpo", "rlhf", "api"),
    "from_scratch": ("full",),
}


class _Strict(BaseModel):
    # Unknown keys are errors: a typo in a hand-edited plan must not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class ModelRef(_Strict):
    id: str = Field(min_length=1, max_length=MAX_MODEL_ID_CHARS,
                    description="Catalog id from knowledge/models.yaml, or a local path / hub id")
    source: Literal["bundled", "local", "hub", "api"] = "bundled"
    hf_id: str | None = None
    path: str | None = None
    params_b: float | None = None

    @field_validator("id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("control characters in the model id")
        return value

    @model_validator(mode="after")
    def _source_fits(self) -> ModelRef:
        # Raised as the field's own error (not the section's), so the message names base_model.id / .path.
        if self.source == "local" and not self.path:
            raise ValidationError.from_exception_data("ModelRef", [_field_error(
                "path", "source 'local' needs the model folder in base_model.path", self.path)])
        if self.source != "local" and ".." in PurePosixPath(self.id.replace("\\", "/")).parts:
            raise ValidationError.from_exception_data("ModelRef", [_field_error(
                "id", f"{self.id!r} is a relative path, not a catalog or hub id; for a model folder set "
                      "base_model.source: local and base_model.path", self.id)])
        return self


def _field_error(field: str, message: str, value: Any) -> Any:
    from pydantic_core import PydanticCustomError

    return {"type": PydanticCustomError("value_error", "Value error, {reason}", {"reason": message}),
            "loc": (field,), "input": value}


class SplitSpec(_Strict):
    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1
    stratify_by: str | None = Field(None, description="Column to stratify on (label, category, ...)")
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1.0, got {total:.3f}")
        return self


class CleaningSpec(_Strict):
    fix_unicode: bool = True
    deduplicate: bool = True
    near_duplicate_threshold: float = Field(0.85, ge=0.0, le=1.0)
    redact_pii: bool = True
    min_chars: int = 2


class DataSpec(_Strict):
    path: str | None = Field(None, description="Dataset file or folder; None until the user uploads one")
    format: DataFormat = "auto"
    kind: str | None = Field(None, description="Data kind from the profile (instruction_pairs, ...)")
    expected_examples: int | None = None
    corpus_path: str | None = Field(None, description="Document folder for RAG / continued pretraining")
    split: SplitSpec = SplitSpec()
    cleaning: CleaningSpec = CleaningSpec()


class LoraSpec(_Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = "all-linear"


class QuantizationSpec(_Strict):
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class PromptTuningSpec(_Strict):
    kind: Literal["prompt", "prefix"] = "prompt"
    num_virtual_tokens: int = Field(20, ge=1)
    init_text: str | None = None


class PreferenceSpec(_Strict):
    beta: float = Field(0.1, gt=0.0)
    loss_type: str = "sigmoid"


class RlhfSpec(_Strict):
    algorithm: Literal["grpo", "ppo"] = "grpo"
    reward_learning_rate: float = Field(1e-5, gt=0, le=1, allow_inf_nan=False)
    reward_epochs: int = Field(1, ge=1, le=MAX_EPOCHS)
    policy_learning_rate: float = Field(1e-6, gt=0, le=1, allow_inf_nan=False)
    num_generations: int = Field(4, ge=2)
    kl_beta: float = 0.04


class SpeedSpec(_Strict):
    """Switches of the fast GPU training path (executor/train/speed.py); `auto` lets the executor decide."""
    varlen_attention: Literal["auto", "on", "off"] = "auto"
    fused_kernels: Literal["auto", "on", "off"] = "auto"
    fused_lora: Literal["auto", "on", "off"] = "auto"
    chunked_loss: Literal["auto", "on", "off"] = "auto"
    auto_micro_batch: Literal["auto", "on", "off"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    micro_batch_tokens: int | None = Field(None, ge=16, description="Tokens per micro-batch; None: sized by memory")


class TrainingSpec(_Strict):
    method: Technique
    epochs: float = Field(3, gt=0, le=MAX_EPOCHS, allow_inf_nan=False)
    learning_rate: float = Field(2e-4, gt=0, le=1, allow_inf_nan=False)
    per_device_batch_size: int = Field(4, ge=1, le=MAX_BATCH)
    gradient_accumulation_steps: int = Field(4, ge=1, le=MAX_BATCH)
    max_seq_length: int = Field(1024, ge=16, le=MAX_SEQ_LENGTH)
    warmup_ratio: float = Field(0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    lr_scheduler: str = "cosine"
    completion_only_loss: bool = True
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    packing: Literal["auto", "on", "off"] = "auto"
    speed: SpeedSpec = SpeedSpec()
    save_best_by: str = "eval_loss"
    early_stopping_patience: int | None = Field(3, ge=1, description="Evaluations without improvement; None: off")
    eval_max_rows: int | None = Field(256, ge=1, description="Validation rows used during training (None: all); "
                                      "the full test split is for evaluation after training")
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Cap on optimizer steps (a smoke or demo "
                                  "run); None: the "
                                  "epochs decide")
    seed: int = 42
    lora: LoraSpec | None = None
    quantization: QuantizationSpec | None = None
    prompt_tuning: PromptTuningSpec | None = None
    preference: PreferenceSpec | None = None
    rlhf: RlhfSpec | None = None

    @model_validator(mode="after")
    def _method_settings_present(self) -> TrainingSpec:
        missing = [name for name in TECHNIQUES[self.method].sections if getattr(self, name) is None]
        if missing:
            raise ValueError(f"method {self.method!r} needs the section(s): {', '.join(missing)}")
        return self


class RetrievalSpec(_Strict):
    corpus_path: str | None = None
    chunk_size: int = Field(800, ge=50)
    chunk_overlap: int = Field(100, ge=0)
    top_k: int = Field(4, ge=1)
    embedding_model: str = "all-MiniLM-L6-v2"


class EvaluationSpec(_Strict):
    task: EvalTask = "auto"
    metrics: list[str] = Field(default_factory=lambda: ["perplexity", "task_accuracy"])
    baselines: list[Literal["zero_shot", "few_shot", "rag"]] = Field(default_factory=lambda: ["zero_shot"])
    few_shot_k: int = 4
    compare_base: bool = True
    max_new_tokens: int = 128
    decoding: Literal["greedy", "sample"] = "greedy"
    after_training: bool = Field(False, description="A queued run evaluates itself on the test split once trained")
    max_rows: int | None = Field(None, ge=1, description="Test rows evaluated after training (None: all)")


class HardwareSpec(_Strict):
    device: Literal["auto", "cuda", "cpu"] = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    gpu_count: int = Field(0, ge=0)
    gpu_memory_gb: float | None = None


class EstimateSpec(_Strict):
    gpu_memory_gb: float | None = None
    train_hours: float | None = None
    cost_usd: float | None = None


class TrainingPlan(_Strict):
    schema_version: int = PLAN_SCHEMA_VERSION
    approach: Approach
    technique: Technique
    base_model: ModelRef
    data: DataSpec = DataSpec()
    training: TrainingSpec | None = None
    retrieval: RetrievalSpec | None = None
    evaluation: EvaluationSpec = EvaluationSpec()
    hardware: HardwareSpec = HardwareSpec()
    estimates: EstimateSpec = EstimateSpec()
    use_case: str = Field("", description="One-line summary of the use case the plan serves")
    created_by: str = "tunewise"

    @model_validator(mode="after")
    def _consistent(self) -> TrainingPlan:
        if self.schema_version != PLAN_SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (this Tunewise reads "
                f"{PLAN_SCHEMA_VERSION})"
            )
        if self.technique not in COMPATIBLE_TECHNIQUES[self.approach]:
            raise ValueError(f"technique {self.technique!r} does not fit approach {self.approach!r}")
        if trains(self.technique) and self.training is None:
            raise ValueError(f"technique {self.technique!r} needs a 'training' section")
        if self.training is not None and self.training.method != self.technique:
            raise ValueError(
                f"training.method {self.training.method!r} differs from technique {self.technique!r}"
            )
        if self.approach in ("rag", "rag_fine_tuning") and self.retrieval is None:
            raise ValueError(f"approach {self.approach!r} needs a 'retrieval' section")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainingPlan:
        """This plan with fields changed by dotted path (`{"training.lora.r": 32}`, the paths
        knowledge/hyperparameters.yaml uses), validated as a whole. The one way to change a plan: the chat's
        settings, `set ...`, the CLI's flags and the worker all come through here, so their errors are the plan's.
        Raises PlanError naming the field for an unknown path, a section the plan lacks, or an invalid value."""
        raw = self.model_dump(mode="json")
        for path, value in overrides.items():
            _set_path(raw, path, value)
        try:
            return TrainingPlan.model_validate(raw)
        except ValidationError as exc:
            raise PlanError(f"invalid plan: {plan_problems(exc)}") from None


class PlanError(ValueError):
    """A plan that cannot be used; the message names the field (and the file, when there is one)."""


def plan_problems(exc: ValidationError) -> str:
    """A validation error as `field.path: message; ...`, the form every plan error takes."""
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<plan>'}: {err['msg']}" for err in exc.errors())


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The section class behind a field's annotation (`LoraSpec | None` -> LoraSpec); None for a plain value."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    # Walk the model classes beside the dumped dict: a typo is caught against the schema (not the data), and a
    # section the plan does not have (training.lora on a full fine-tune) is named instead of created silently.
    model: type[BaseModel] = TrainingPlan
    node = raw
    parts = path.split(".")
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth + 1])
        if part not in model.model_fields:
            where = ".".join(parts[:depth]) or "the plan"
            raise PlanError(f"{here}: unknown field; {where} has: {', '.join(model.model_fields)}")
        if depth == len(parts) - 1:
            node[part] = value
            return
        section = _section_model(model.model_fields[part].annotation)
        if section is None:
            raise PlanError(f"{here}: is a value, not a section; {path} does not exist")
        if node.get(part) is None:
            raise PlanError(f"{here}: this plan has no {part} section (technique {raw.get('technique')!r}), so "
                            f"{path} cannot be set")
        model, node = section, node[part]


def dump_plan(plan: TrainingPlan, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Tunewise training plan (schema v{plan.schema_version}). Run it with the executor.\n"
    path.write_text(header + plan.to_yaml(), encoding="utf-8")
    return path


def load_plan(path: str | Path) -> TrainingPlan:
    """Read and validate a plan file; every problem is a PlanError naming the file (and the field)."""
    path = Path(path)
    raw = _parse_plan(path, _read_plan_text(path))
    if not isinstance(raw, dict):
        raise PlanError(f"{path}: a plan is a YAML mapping, got {type(raw).__name__}")
    try:
        return TrainingPlan.model_validate(raw)
    except ValidationError as exc:
        raise PlanError(f"{path}: invalid plan: {plan_problems(exc)}") from None


def _read_plan_text(path: Path) -> str:
    """The plan's text: a regular file (a FIFO would block) of at most MAX_PLAN_BYTES, UTF-8 or BOM-marked."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise PlanError(f"{path}: a folder, not a plan file")
        if not stat.S_ISREG(mode):
            raise PlanError(f"{path}: not a regular file; give a plan file (YAML)")
        with path.open("rb") as f:
            data = f.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise PlanError(f"{path}: no such plan file") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc.strerror})") from None
    if len(data) > MAX_PLAN_BYTES:
        raise PlanError(f"{path}: larger than {MAX_PLAN_BYTES >> 20} MiB; a plan is a few KB of YAML")
    return _decode_plan(path, data)


_PLAN_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32-LE's BOM starts as 16's


def _decode_plan(path: Path, data: bytes) -> str:
    codec = next((name for bom, name in _PLAN_BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: not {codec.upper().removesuffix('-SIG')} text (byte {data[exc.start]:#04x} at "
                        f"offset {exc.start}); save the plan as UTF-8") from None


# libyaml parses a plan in C, ten times faster than PyYAML's Python parser, and refuses nesting past 1000 levels
# itself; the Python parser recurses per level.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_plan(path: Path, text: str) -> Any:
    nested = PlanError(f"{path}: nested more than {MAX_PLAN_DEPTH} levels deep; a plan is a few levels of YAML")
    try:
        raw = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader, C or Python
    except yaml.YAMLError as exc:
        if "maximum nesting depth" in str(exc):
            raise nested from None
        raise PlanError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:  # the Python parser recurses per level: far deeper than MAX_PLAN_DEPTH
        raise nested from None
    except (ValueError, OverflowError) as exc:  # a value YAML reads but Python refuses: 2020-13-01, 5000 digits
        raise PlanError(f"{path}: not valid YAML: {str(exc)[:200]}") from None
    if _deeper_than(raw, MAX_PLAN_DEPTH):
        raise nested
    return raw


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` mappings/lists deep. Level by level with each node once per level:
    YAML aliases can share one list a billion times over (and even contain themselves)."""
    level = {id(value): value} if isinstance(value, (dict, list)) else {}
    for _ in range(limit):
        below: dict[int, Any] = {}
        for node in level.values():
            for child in node.values() if isinstance(node, dict) else node:
                if isinstance(child, (dict, list)):
                    below[id(child)] = child
        if not below:
            return False
        level = below
    return True
