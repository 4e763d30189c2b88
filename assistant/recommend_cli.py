"""`tunewise recommend`: the advisor on the command line (mounted by assistant/cli.py).

Heavy imports (chroma, the embedder) happen inside the command, so `tunewise --help` stays fast; the command itself
never imports torch or transformers (the MiniLM embedder runs on numpy), so a cold `recommend` answers in ~2 s.

Lazy imports: each command imports what it runs when it runs, so `tunewise --help` and the other commands answer at
once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from assistant.quiet import quiet_libraries

# Read by transformers and huggingface_hub when (if ever) they are first imported: the same quiet output as
# quiet_libraries() gives, without importing transformers (~1 s) on a path that does not use it.
_QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def _quiet() -> None:
    for name, value in _QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "transformers" in sys.modules:  # already loaded (an LLM client pulled it in): set its switches directly
        quiet_libraries()


class LLMUnavailable(Exception):
    """`--extractor llm` and the LLM call failed: the command ends with this one line (exit 2)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


class FallbackExtractor:
    """The LLM extractor with a way out when its endpoint fails. `auto` (required=False) reads with the local
    extractor instead, warning once on stderr, as the chat falls back; `llm` (required=True) raises LLMUnavailable."""

    def __init__(self, llm, local, required: bool):
        self.llm, self.local, self.required = llm, local, required
        self.failed = False

    def extract(self, text: str):
        if self.failed:
            return self.local.extract(text)
        try:
            return self.llm.extract(text)
        except Exception as exc:  # noqa: BLE001 - network, key, quota, refused schema: all end the same way
            if self.required:
                raise LLMUnavailable(f"--extractor llm: the LLM call failed ({_one_line(exc)}); use --extractor "
                                     "auto to fall back to the local extractor") from None
            self.failed = True
            print(f"warning: the LLM extractor failed ({_one_line(exc)}); using the local extractor instead",
                  file=sys.stderr)
            return self.local.extract(text)


def _advisor(extractor: str, knowledge: Path | None, retrieval: bool):
    from assistant.knowledge import KnowledgeError, load_knowledge
    from assistant.recommend import Advisor

    _quiet()
    try:
        kn = load_knowledge(knowledge)
    except KnowledgeError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    chosen = None
    if extractor == "regex":
        from assistant.extract import RegexExtractor

        chosen = RegexExtractor(kn)
    if extractor in ("llm", "auto"):
        from assistant.extract import RegexExtractor
        from assistant.llm_extract import LLMExtractor, available_provider

        if extractor == "llm" and available_provider() is None:
            typer.secho("error: --extractor llm needs OPENAI_API_KEY or ANTHROPIC_API_KEY", fg="red", err=True)
            raise typer.Exit(2)
        if available_provider() is not None:
            from assistant.semantic import default_extractor

            local = default_extractor(kn)
            chosen = FallbackExtractor(LLMExtractor(local), local, required=extractor == "llm")
    return Advisor(kn, extractor=chosen, index="auto" if retrieval else None)


def recommend(
    text: Annotated[str | None, typer.Argument(help="Your use case in plain words.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    jsonl: Annotated[
        str | None,
        typer.Option(
            "--jsonl", help="Read JSON lines {\"id\", \"text\"} from FILE ('-' = stdin); write one line each."
        ),
    ] = None,
    plan_out: Annotated[Path | None, typer.Option("--plan-out", help="Write the training plan (YAML).")] = None,
    extractor: Annotated[
        str, typer.Option(help="Profile extractor: semantic (offline keywords + meaning, default), regex "
                               "(keywords only), llm (needs an API key), auto.")
    ] = os.environ.get("TUNEWISE_EXTRACTOR", "semantic"),
    knowledge: Annotated[Path | None, typer.Option(help="Knowledge folder (default: the bundled one).")] = None,
    retrieval: Annotated[bool, typer.Option(help="Cite retrieved guidance (local Chroma index).")] = True,
) -> None:
    """Recommend prompting, RAG, fine-tuning or RAG+LoRA for a use case, with reasons, citations and a plan."""
    if extractor not in ("semantic", "regex", "llm", "auto"):
        raise typer.BadParameter("use semantic, regex, llm or auto", param_hint="--extractor")
    if jsonl is not None:
        if text is not None or plan_out is not None:
            raise typer.BadParameter("--jsonl reads its texts from the input; drop TEXT and --plan-out")
        raise typer.Exit(_unless_llm_fails(_recommend_jsonl, jsonl, _advisor(extractor, knowledge, retrieval)))
    if text is None:
        if sys.stdin.isatty():
            raise typer.BadParameter("give TEXT, or --jsonl FILE", param_hint="TEXT")
        text = sys.stdin.read()
    advisor = _advisor(extractor, knowledge, retrieval)
    rec = _unless_llm_fails(advisor.recommend, text)
    if plan_out is not None:
        from executor.plan import dump_plan

        dump_plan(rec.plan, plan_out)
    if as_json:
        sys.stdout.write(json.dumps(rec.to_json_dict(), ensure_ascii=False) + "\n")
    else:
        from assistant.render import print_recommendation

        print_recommendation(rec)
        if plan_out is not None:
            typer.echo(f"Plan written to {plan_out}")


def _unless_llm_fails(function, *args):
    try:
        return function(*args)
    except LLMUnavailable as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None


def _recommend_jsonl(source: str, advisor) -> int:
    """One output line per input line; a bad line gets an error line naming it. Exit 1 if any failed."""
    try:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        typer.secho(f"error: cannot read {source}: {exc.strerror}", fg="red", err=True)
        return 2
    done = rejected = 0
    try:
        for lineno, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            record_id = None
            try:
                record = json.loads(raw)
                if not isinstance(record, dict):
                    raise ValueError("expected a JSON object")
                record_id = record.get("id")
                text = record.get("text")
                if not isinstance(text, str):
                    raise ValueError("field 'text' is missing or not a string")
                out = {"id": record_id, **advisor.recommend(text).to_json_dict()}
                done += 1
            except (ValueError, json.JSONDecodeError) as exc:
                out = {"id": record_id, "error": f"{source}:{lineno}: {exc}"}
                rejected += 1
            sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    finally:
        if stream is not sys.stdin:
            stream.close()
    print(f"{done} recommended, {rejected} rejected", file=sys.stderr)
    return 1 if rejected else 0
