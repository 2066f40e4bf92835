"""The Python API: open a run directory and run the paper's stages on it.

    run = Run.open("runs/demo", {"num_instructions": 20})
    run.run_all()

A run directory holds one SQLite database (the source of truth, see store.py) and the exported files.
Opening an existing directory resumes it: its stored config is the base, and explicit settings may change
only the keys that cannot change what was already generated (the target count, retries, timeouts...).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from selfinstruct import config as cfg
from selfinstruct.export import export
from selfinstruct.lm import LM, create_backends
from selfinstruct.lm.engine import Engine
from selfinstruct.lmtypes import Prices
from selfinstruct.seeds import load_seed_tasks
from selfinstruct.stages import Report, no_report
from selfinstruct.stages.bootstrap import bootstrap, check_classification_seeds
from selfinstruct.stages.classify import classify
from selfinstruct.stages.instances import generate_instances
from selfinstruct.stages.prepare import prepare
from selfinstruct.stages.prompts import load as load_prompts
from selfinstruct.store import DB_NAME, Store

T = TypeVar("T")

# Keys a resumed run may change: none of them alters what the stored requests asked for.
RESUMABLE_KEYS = {
    "num_instructions",
    "lm.max_retries",
    "lm.timeout",
    "lm.threads",
    "lm.base_url",
    "lm.max_consecutive_failures",
    "lm.parallel",
    "lm.concurrency",
    "lm.ordered",
    "lm.requests_per_minute",
    "lm.tokens_per_minute",
    "lm.price_input",
    "lm.price_output",
    "lm.max_cost",
    "lm.max_tokens_total",
    "bootstrap.max_barren_requests",
    "prepare.max_instances_per_task",
    "prepare.include_seed_tasks",
    "prepare.conflicts",
    "prepare.finetuning_template",
    # Where the prompt files are: their content (prompts.hash) is what a request depends on.
    "prompts.dir",
    # Where the model runs: the same model answers the same requests wherever it is.
    "ray.address",
    "ray.replicas",
    "ray.num_cpus",
    "ray.num_gpus",
}
STAGES = ("bootstrap", "classify", "instances", "prepare")


class RunError(RuntimeError):
    """The run directory cannot be used as asked: the message says why and what to do."""


def resolve_config(
    stored: cfg.Config | None, config_file: str | None, overrides: dict[str, Any], allow_config_change: bool
) -> cfg.Config:
    config = stored or cfg.Config()
    if config_file:
        config = cfg.load_toml(config_file, config)
    config = cfg.from_dict(overrides, config)
    config = with_prompts_hash(config)
    if stored is not None and not allow_config_change:
        before, after = cfg.flatten(stored.to_dict()), cfg.flatten(config.to_dict())
        changed = sorted(k for k in after if before.get(k) != after[k] and k not in RESUMABLE_KEYS)
        if changed:
            details = "; ".join(f"{k}: {before.get(k)!r} -> {after[k]!r}" for k in changed)
            if "prompts.hash" in changed:
                details += " (the prompt files differ from those the run was made with)"
            raise RunError(
                f"this run directory was made with a different configuration ({details}). Resuming with it would "
                "mix data from two settings. Use a new --out directory, or pass --allow-config-change to resume anyway."
            )
    return config


def with_prompts_hash(config: cfg.Config) -> cfg.Config:
    """The config with the content hash of its prompt files; the files are read and checked here, so a broken one
    stops the command (naming its file and line) before anything is sent or written."""
    folder = str(Path(config.prompts.dir).resolve()) if config.prompts.dir else None
    prompts = load_prompts(folder)
    return dataclasses.replace(config, prompts=cfg.PromptsConfig(dir=folder, hash=prompts.hash))


def stored_config(store: Store) -> cfg.Config | None:
    """The config a run directory was made with (None before its first command stored one)."""
    text = store.get_meta("config")
    return cfg.from_dict(_upgrade_stored_config(json.loads(text))) if text else None


def _upgrade_stored_config(values: dict[str, Any]) -> dict[str, Any]:
    """Read a config stored by an older version: lm.base_url was one optional URL, now a list of replicas; runs
    made before lm.weights loaded the GGUF file as it is, and keep doing so (their stored requests stay valid)."""
    lm = values.setdefault("lm", {})
    if lm.get("base_url") is None or isinstance(lm.get("base_url"), str):
        lm["base_url"] = [lm["base_url"]] if lm.get("base_url") else []
    lm.setdefault("weights", "original")
    # Runs made before prompt files could be replaced used the package's.
    values.setdefault("prompts", {"dir": None, "hash": load_prompts(None).hash})
    return values


@dataclass
class Run:
    """A run directory. The stages are coroutines (the engine keeps many requests in flight); this API runs
    them on one event loop that lives as long as the Run, so HTTP sessions and the embedded model's worker
    persist from stage to stage."""

    store: Store
    config: cfg.Config
    lm: LM | list[LM] | None = None
    retry_failed: bool = False  # send again the requests a backend rejected (HTTP 400, a prompt over the context)
    _engine: Engine | None = None
    _runner: asyncio.Runner = field(default_factory=asyncio.Runner)

    @classmethod
    def open(
        cls,
        out_dir: str | Path,
        overrides: dict[str, Any] | None = None,
        config_file: str | None = None,
        allow_config_change: bool = False,
        lm: LM | list[LM] | None = None,  # replicas of one model, e.g. Ray actors from create_replicas
        retry_failed: bool = False,
    ) -> Run:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise RunError(f"{out} exists and is not a directory; choose another --out")
        stored = None
        if (out / DB_NAME).exists():
            store = Store(out)
            stored = stored_config(store)
            store.close()
        config = resolve_config(stored, config_file, overrides or {}, allow_config_change)
        # Validate the seed file before creating anything, so a bad file leaves nothing behind.
        seeds = load_seed_tasks(config.seed_tasks) if stored is None else None
        if seeds is not None and config.bootstrap.classification_seeds_only:
            check_classification_seeds([s.instruction for s in seeds if s.is_classification])
        try:
            out.mkdir(parents=True, exist_ok=True)
            store = Store(out)
        except OSError as e:
            raise RunError(f"cannot create the run directory {out}: {e.strerror or e}") from None
        with store.transaction():
            if seeds is not None:
                store.add_seed_tasks(seeds)
            store.set_meta("config", config.to_json())
        return cls(store, config, lm, retry_failed)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            lm = self.config.lm
            if self.lm is None:
                self.lm = create_backends(lm, self.config.seed, self.config.ray)
            replicas = len(self.lm) if isinstance(self.lm, list) else 1
            self._engine = Engine(
                self.lm,
                self.store,
                # An in-process backend decodes `parallel` sequences at once; more requests in flight would only
                # queue inside it, and the bootstrap would sample their prompts from an older pool.
                concurrency=lm.concurrency if lm.backend == "openai" else min(lm.concurrency, lm.parallel * replicas),
                max_retries=lm.max_retries,
                max_consecutive_failures=lm.max_consecutive_failures,
                requests_per_minute=lm.requests_per_minute,
                tokens_per_minute=lm.tokens_per_minute,
                ordered=lm.ordered,
                prices=Prices(lm.price_input, lm.price_output),
                max_cost=lm.max_cost,
                max_tokens_total=lm.max_tokens_total,
                retry_failed=self.retry_failed,
            )
        return self._engine

    def spent(self) -> tuple[int, float] | None:
        """(tokens, dollars) used by this run directory so far; None before any LM work was set up."""
        return self._engine.spent() if self._engine is not None else None

    def run_coroutine(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this run's event loop (where the engine and its backends live)."""
        return self._runner.run(coroutine)

    def bootstrap(self, report: Report = no_report) -> None:
        self.run_coroutine(bootstrap(self.config, self.store, self.engine, report))

    def classify(self, report: Report = no_report) -> None:
        self.run_coroutine(classify(self.config, self.store, self.engine, report))

    def instances(self, report: Report = no_report) -> None:
        self.run_coroutine(generate_instances(self.config, self.store, self.engine, report))

    def prepare(self, report: Report = no_report) -> None:
        prepare(self.config, self.store, report)

    def export(
        self, output_dir: str | Path | None = None, formats: Iterable[str] = ("paper", "alpaca")
    ) -> dict[str, int]:
        """Write the chosen export formats (see export.FORMATS) into output_dir (default RUN_DIR/export)."""
        target = Path(output_dir) if output_dir else self.store.run_dir / "export"
        return export(self.store, target, self.config, formats)

    def run_all(self, report_for: dict[str, Report] | None = None) -> dict[str, int]:
        report_for = report_for or {}
        for stage in STAGES:
            getattr(self, stage)(report_for.get(stage, no_report))
        return self.export()

    def summary(self) -> dict[str, Any]:
        instances = self.store.instances()
        machine = self.store.accepted("machine")
        return {
            "machine_instructions": len(machine),
            "candidates": self.store.candidate_count(),
            "rejected": self.store.reject_reasons(),
            "classification": {
                label: sum(1 for i in machine if i.classification == label) for label in ("yes", "no", "unknown", None)
            },
            "instances_kept": sum(1 for r in instances if r["verdict"] == "kept" and r["origin"] == "machine"),
            "instances_dropped": sum(1 for r in instances if r["verdict"] == "dropped"),
            "instances_dropped_by_reason": dict(
                Counter(r["reason"] for r in instances if r["verdict"] == "dropped").most_common()
            ),
        }

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._engine is not None:
                self._runner.run(self._engine.aclose())
        finally:
            self._runner.close()
            self.store.close()
