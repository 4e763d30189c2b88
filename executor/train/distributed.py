"""Several processes, one plan: DDP, or FSDP for models that do not fit one GPU, launched through `accelerate`.

The worker decides with `choose_launch` and runs `accelerate launch ... -m executor.runs.rank PLAN RUN_DIR
--run-id ID` (by hand: `-m executor.train.rank PLAN RUN_DIR`; the plan is the whole run, data folder and step
cap included); the Trainer shards batches across the processes (NCCL on GPUs, gloo on CPUs) and averages
gradients, or, under FSDP, shards the parameters too. Only the main process writes the run directory and reports
(through the reporter its entry point hands to `rank.run_rank`); every process computes. This module plans and
starts launches; it imports neither the trainer nor the run queue.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Bytes of GPU memory per parameter while training, by technique: bf16 weights + grads + fp32 AdamW states
# (2 + 2 + 12) for full fine-tuning; frozen bf16 weights (2) or 4-bit (0.6) plus adapters for the others.
# The activations come on top; FSDP is chosen when the weights and optimizer state alone leave too little.
BYTES_PER_PARAM = {"full": 16.0, "lora": 2.2, "qlora": 0.7, "prompt_tuning": 2.1, "dpo": 4.4, "rlhf": 4.4}
HEADROOM = 0.7  # the share of a GPU the model state may take before activations no longer fit


@dataclass(frozen=True)
class Launch:
    nproc: int
    mode: Literal["single", "ddp", "fsdp"]
    why: str


def model_state_gb(plan) -> float | None:
    """Weights + gradients + optimizer state of the plan's model in GB, or None when its size is unknown."""
    if plan.estimates.gpu_memory_gb:  # the advisor's estimate includes activations; prefer it when present
        return plan.estimates.gpu_memory_gb
    params_b = plan.base_model.params_b
    if not params_b:
        return None
    return params_b * BYTES_PER_PARAM.get(plan.technique, 16.0)


def choose_launch(plan, gpus: int, gpu_memory_gb: float | None) -> Launch:
    """How many processes a run gets and whether they replicate (DDP) or shard (FSDP) the model.

    A plan asks for `hardware.gpu_count` GPUs (0 or 1: one); it gets at most the GPUs the worker gave it.
    DDP keeps a whole copy per GPU, so it is only chosen while the model state fits one GPU with room for
    activations; otherwise FSDP shards it, the only way such a model trains at all.
    """
    wanted = max(1, plan.hardware.gpu_count or 1)
    nproc = max(1, min(wanted, gpus))
    if nproc == 1:
        why = "one GPU" if gpus else "no GPU: one process on the CPU"
        if wanted > 1:
            why += f" (the plan asks for {wanted}; {gpus or 'none'} available to this run)"
        return Launch(1, "single", why)
    state = model_state_gb(plan)
    if state is not None and gpu_memory_gb and state > HEADROOM * gpu_memory_gb:
        if plan.technique == "qlora":  # bitsandbytes 4-bit weights do not shard under FSDP here
            return Launch(nproc, "ddp", f"{nproc} GPUs, DDP: a QLoRA model is not sharded (state {state:.1f} GB)")
        return Launch(nproc, "fsdp", f"{nproc} GPUs, FSDP: the model state ({state:.1f} GB) does not fit "
                                     f"{HEADROOM:.0%} of one {gpu_memory_gb:.0f} GB GPU")
    return Launch(nproc, "ddp", f"{nproc} GPUs, DDP: the model fits one GPU, so each holds a copy")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the rendezvous port of a launch; servers and tests use it too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def launch_command(plan: Path, run_dir: Path, nproc: int, resume: bool = False, port: int | None = None,
                   mode: str = "ddp", module: str = "executor.train.rank", extra: list[str] | tuple = ()
                   ) -> list[str]:
    """The accelerate command that starts `nproc` processes of `module` (PLAN RUN_DIR [--resume] EXTRA...); the
    run queue passes its own entry point (executor.runs.rank) and the run to report to as `extra`."""
    # `--multi_gpu` is accelerate's name for "several local processes"; on a machine without CUDA the Trainer
    # falls back to gloo on the CPU, which is how the tests exercise this path.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(nproc),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if mode == "fsdp":
        # Transformer-layer wrapping uses the model's own `_no_split_modules`; a full state dict on the main
        # process keeps the saved adapter / model folder the same as a single-GPU run's.
        command += ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                    "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_cpu_ram_efficient_loading", "true",
                    "--fsdp_reshard_after_forward", "true"]
    elif nproc > 1:  # accelerate refuses --multi_gpu for one process (a baseline run in the scaling benchmark)
        command.append("--multi_gpu")
    if port:
        command += ["--main_process_port", str(port)]
    command += ["-m", module, str(plan), str(run_dir)]
    if resume:
        command.append("--resume")
    return command + list(extra)


def launch(plan: Path, run_dir: Path, nproc: int, **kwargs) -> int:
    return subprocess.run(launch_command(plan, run_dir, nproc, **kwargs), check=False).returncode
