"""The exact request a stage would send next, without sending it or writing anything
(`selfinstruct prompts --show STAGE --out DIR`).

For a run directory it is the next new request of the stage: the bootstrap's in-context sample is the one the
run seed draws for the next prompt group from the pool as stored; classify and instances show the next
instruction they would ask about. For a directory that does not exist yet, what a new run would send: the
bootstrap samples from the seed tasks, and classify and instances, which have no machine instruction yet, are
shown for the first seed task."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfinstruct import config as cfg
from selfinstruct.config import stage_sampling
from selfinstruct.lm.engine import sampling_params
from selfinstruct.lmtypes import Prompt
from selfinstruct.pipeline import resolve_config, stored_config
from selfinstruct.seeds import load_seed_tasks
from selfinstruct.stages import bootstrap, classify, instances
from selfinstruct.stages.prompts import for_run as prompts_for_run
from selfinstruct.store import DB_NAME, Instruction, Store

STAGES = ("bootstrap", "classify", "instances")


@dataclass
class Preview:
    stage: str
    config: cfg.Config
    prompt: Prompt
    sampling: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what was sampled or chosen, and why
    in_context: list[str] = field(default_factory=list)  # bootstrap: the sampled instructions, in prompt order
    instruction: str | None = None  # classify, instances: the task the request is about

    def to_dict(self) -> dict[str, Any]:
        lm = self.config.lm
        return {
            "stage": self.stage,
            "api": lm.api,
            "backend": lm.backend,
            "model": lm.model,
            ("messages" if isinstance(self.prompt, list) else "prompt"): self.prompt,
            "sampling": self.sampling,
            "in_context": self.in_context,
            "instruction": self.instruction,
            "prompts_hash": self.config.prompts.hash,
            "prompts_dir": self.config.prompts.dir,
            "notes": self.notes,
        }

    def render(self) -> str:
        lm = self.config.lm
        lines = [
            f"The next {self.stage} request (not sent)",
            f"api: {lm.api} · backend: {lm.backend} · model: {lm.model or 'the embedded default'}",
            f"sampling: {json.dumps(self.sampling)} (and a sampler seed derived from the request's identity)",
            f"prompt files: {self.config.prompts.dir or 'the package defaults'} (hash {self.config.prompts.hash})",
            *self.notes,
        ]
        if isinstance(self.prompt, list):
            for message in self.prompt:
                lines += [f"----- {message['role']} -----", message["content"]]
        else:
            lines += ["----- prompt -----", self.prompt]
        return "\n".join(lines)


def preview(
    out_dir: str | Path,
    stage: str,
    overrides: dict[str, Any] | None = None,
    config_file: str | None = None,
    allow_config_change: bool = False,
) -> Preview:
    """The request `stage` would send next in `out_dir` with these settings (the same errors as `run` for settings
    a resume would refuse, and for broken prompt files)."""
    if stage not in STAGES:
        raise cfg.ConfigError(f"--show takes one of {', '.join(STAGES)}, not {stage!r} (prepare sends no request)")
    path = Path(out_dir) / DB_NAME
    store = Store(path.parent) if path.exists() else None
    try:
        stored = stored_config(store) if store is not None else None
        config = resolve_config(stored, config_file, overrides or {}, allow_config_change)
        if store is not None:
            seeds, machine = store.accepted("seed"), store.accepted("machine")
        else:
            labels = {True: "yes", False: "no", None: None}
            tasks = load_seed_tasks(config.seed_tasks)
            seeds = [Instruction(n, "seed", t.instruction, labels[t.is_classification]) for n, t in enumerate(tasks)]
            machine = []
        return _build(stage, config, store, seeds, machine)
    finally:
        if store is not None:
            store.close()


def _build(
    stage: str, config: cfg.Config, store: Store | None, seeds: list[Instruction], machine: list[Instruction]
) -> Preview:
    prompts = prompts_for_run(config)
    chat = config.lm.api == "chat"
    if stage == "bootstrap":
        group = bootstrap.first_new_group(store, config) if store is not None else 0
        shown_seeds = bootstrap.prompt_seeds(config, seeds)
        shown = bootstrap.in_context_sample(config, group, shown_seeds, [i.text for i in machine])
        cfg_b = config.bootstrap
        prompt = bootstrap.encoder(prompts, chat, cfg_b.classification_seeds_only, cfg_b.guidance)(shown)
        machine_texts = {i.text for i in machine}
        from_machine = sum(text in machine_texts for text in shown)
        notes = [
            f"in-context sample: prompt group {group}, run seed {config.seed}: {len(shown) - from_machine} seed "
            f"tasks and {from_machine} machine-written (the pool holds {len(seeds)} seeds and {len(machine)} "
            "machine-written instructions)"
        ]
        if store is not None and (left := len(store.unfinished_requests(bootstrap.STAGE))):
            notes.append(f"note: {left} journaled request(s) of this stage are sent again before it")
        sampling = stage_sampling(config, bootstrap.STAGE, bootstrap.SCHEMA)
        return Preview(stage, config, prompt, sampling_params(sampling), notes, in_context=shown)
    if stage == "classify":
        todo = [i for i in machine if i.classification is None]
        target, notes = _target(todo, seeds, "classify")
        prompt = classify.encoder(prompts, chat)(target.text)
        sampling = stage_sampling(config, classify.STAGE, classify.SCHEMA)
        return Preview(stage, config, prompt, sampling_params(sampling), notes, instruction=target.text)
    answered = {inst.id for inst, _ in store.instance_responses()} if store is not None else set()
    todo = sorted(
        (i for i in machine if i.classification is not None and i.id not in answered),
        key=lambda i: (i.classification != "yes", i.id),
    )
    unclassified = sum(i.classification is None for i in machine)
    target, notes = _target(todo, seeds, "instances", f"{unclassified} not classified yet" if unclassified else "")
    clf = target.classification == "yes"
    prompt = instances.encoder(prompts, chat, clf, config.instances.guidance)(target.text)
    notes.append(f"prompted {'output-first (a classification task)' if clf else 'input-first'}")
    sampling = stage_sampling(config, instances.STAGE, instances.SCHEMAS[clf])
    return Preview(stage, config, prompt, sampling_params(sampling), notes, instruction=target.text)


def _target(
    todo: list[Instruction], seeds: list[Instruction], stage: str, why: str = ""
) -> tuple[Instruction, list[str]]:
    if todo:
        return todo[0], [f"instruction #{todo[0].id} ({len(todo)} waiting for this stage): {todo[0].text}"]
    if not seeds:
        raise cfg.ConfigError("the run has no seed task to show a request for")
    return seeds[0], [
        f"no machine instruction waits for {stage} yet{f' ({why})' if why else ''}: shown for the first seed task "
        f"instead: {seeds[0].text}"
    ]
