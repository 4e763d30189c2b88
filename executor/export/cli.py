"""`tunewise export`, `tunewise serve` and `tunewise plan export`, mounted on the CLI by assistant/cli.py.

Lazy imports: each command imports what it runs when it runs, so `tunewise --help` and the other commands answer at
once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from executor.serve.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PROMPT_BYTES,
    DEFAULT_MAX_QUEUED_TOKENS,
    DEFAULT_MAX_SEQUENCES,
)

plan_app = typer.Typer(help="Work with training plans: export them as other tools' configs.", no_args_is_help=True)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def export_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `tunewise train`.")],
    fmt: Annotated[str, typer.Option("--format", help="adapter | merged | gguf")] = "merged",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: RUN_DIR/export-FORMAT).")] = None,
    gguf_type: Annotated[str, typer.Option("--gguf-type", help="GGUF tensor type: q8_0 | f16 | f32.")] = "q8_0",
    base: Annotated[Path | None, typer.Option("--base", help="Model folder to merge the adapter into instead of "
                                              "the plan's base model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Export a run's weights: the PEFT adapter, LoRA merged into the 16-bit base, or GGUF + Ollama Modelfile."""
    from executor.export.gguf_file import GGUFExportError
    from executor.export.run_dir import ExportError
    from executor.export.weights import export_run
    from executor.models.registry import ModelError

    try:
        info = export_run(run_dir, fmt, out, file_type=gguf_type, base=base)
    except (ExportError, GGUFExportError, ModelError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{fmt} export of {run_dir} -> {info['out']}")
    typer.echo(f"load it with: {info['load_with']}")


def serve_command(
    target: Annotated[str, typer.Argument(help="A run directory, a model folder, a .gguf file or a model id.")],
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8001,
    host: Annotated[str, typer.Option("--host", help="Interface to bind (default: this machine only).")] = "127.0.0.1",
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="TUNEWISE_API_KEY",
                                                help="Require 'Authorization: Bearer KEY' (or set TUNEWISE_API_KEY).")
                       ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model id clients ask for (default: the folder "
                                             "name).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", help="Requests generated together.")] = 32,
    batch_wait_ms: Annotated[float, typer.Option("--batch-wait-ms", help="Requests arriving less than this apart "
                                                 "are batched together.")] = 5.0,
    max_sequences: Annotated[int, typer.Option("--max-sequences", min=1, help="Completions one request may ask "
                                               "for (prompts x n).")] = DEFAULT_MAX_SEQUENCES,
    max_prompt_bytes: Annotated[int, typer.Option("--max-prompt-bytes", min=1, help="UTF-8 bytes of one prompt "
                                                  "(a chat's messages together), checked before tokenizing.")]
    = DEFAULT_MAX_PROMPT_BYTES,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Bytes of a request body.")]
    = DEFAULT_MAX_BODY_BYTES,
    max_queued_tokens: Annotated[int, typer.Option("--max-queued-tokens", min=1, help="Prompt plus max_tokens of "
                                                   "all unfinished requests; past it a request gets 429.")]
    = DEFAULT_MAX_QUEUED_TOKENS,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions)."""
    from executor.export.run_dir import ExportError
    from executor.models.registry import ModelError
    from executor.serve.limits import ServeLimits
    from executor.serve.server import make_engine, serve

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        typer.secho(f"warning: serving on {host} without an API key: anyone who can reach it can use the model",
                    fg="yellow", err=True)
    try:
        engine = make_engine(target, device=device, model_id=name, max_batch_size=max_batch_size,
                             batch_wait_ms=batch_wait_ms, max_queued_tokens=max_queued_tokens)
    except (ExportError, ModelError, OSError) as exc:
        _fail(str(exc))
    base_url = f"http://{host}:{port}/v1"
    typer.echo(f"serving {engine.model_id!r} at {base_url} (context {engine.context_length} tokens)", err=True)
    typer.echo(f"  OPENAI_BASE_URL={base_url} OPENAI_API_KEY={'<your key>' if api_key else 'unused'}", err=True)
    limits = ServeLimits(max_sequences=max_sequences, max_prompt_bytes=max_prompt_bytes,
                         max_body_bytes=max_body_bytes)
    serve(engine, host=host, port=port, api_key=api_key, limits=limits)


@plan_app.command("export")
def plan_export_command(
    plan: Annotated[Path, typer.Argument(help="A plan file (from `tunewise recommend --plan-out`).")],
    to: Annotated[str, typer.Option("--to", help="axolotl | llamafactory")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: next to the plan).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Prepared data folder (default: the plan's "
                                              "data.path).")] = None,
) -> None:
    """Write the plan as an Axolotl or LLaMA-Factory config (LLaMA-Factory also gets its dataset_info.json)."""
    from executor.export.plan_configs import PlanExportError, export_plan

    try:
        written = export_plan(plan, to, out, data)
    except PlanExportError as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(str(path))
