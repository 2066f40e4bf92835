"""The bootstrap stage's guards: truncated candidates, exact copies, a model that never gives a usable
instruction, prompt groups across a resume, and the classification-seeds-only mode."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
from conftest import ScriptedLM

from selfinstruct.config import ConfigError, Sampling
from selfinstruct.lm import Completion
from selfinstruct.pipeline import Run
from selfinstruct.stages.bootstrap import BarrenBootstrap
from selfinstruct.store import DB_NAME

HEADER = "Come up with a series of tasks:"
# The paper's header for --use_clf_seed_tasks_only
CLASSIFICATION_HEADER = (
    "Come up with a series of classification tasks. Try to specify the possible output labels when possible."
)


class FixedBootstrapLM(ScriptedLM):
    """Answers every bootstrap prompt with one fixed text; the other stages as the scripted LM does."""

    def __init__(self, text: str, finish_reason: str = "stop") -> None:
        super().__init__()
        self.text, self.finish_reason = text, finish_reason

    async def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        if prompt.startswith("Come up with a series"):
            self.sent += 1
            self.calls[(prompt, seed)] += 1
            return Completion(self.text, self.finish_reason, 10, 10)
        return await super().complete(prompt, sampling, seed)


def candidates(run_dir: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(run_dir / DB_NAME) as db:
        return db.execute(
            "SELECT text, verdict, reason FROM instructions WHERE origin = 'machine' ORDER BY id"
        ).fetchall()


def test_the_cut_off_last_item_is_stored_as_a_truncated_candidate(tmp_path: Path) -> None:
    lm = FixedBootstrapLM(" Describe the ocean in three vivid sentences.\n10. Explain why the sky", "length")
    with Run.open(tmp_path, {"num_instructions": 1}, lm=lm) as run:
        run.bootstrap()
    assert candidates(tmp_path)[:2] == [
        ("Describe the ocean in three vivid sentences.", "accepted", ""),
        ("Explain why the sky", "rejected", "truncated"),
    ]


def test_an_exact_copy_never_enters_the_pool_even_at_threshold_one(tmp_path: Path) -> None:
    # The config refuses a threshold of 1 (test_config.py); a Config built in code bypasses that check, and an
    # exact copy then passes the novelty filter. It must still be rejected, not crash on the store's unique index.
    same = "Describe the ocean in three vivid sentences."
    lm = FixedBootstrapLM(f" {same}\n10. {same}\n11. {same}")
    with Run.open(tmp_path, {"num_instructions": 1}, lm=lm) as run:
        bootstrap = dataclasses.replace(run.config.bootstrap, similarity_threshold=1.0)
        run.config = dataclasses.replace(run.config, bootstrap=bootstrap)
        run.bootstrap()
        assert [i.text for i in run.store.accepted("machine")] == [same]
    assert [(v, r) for _, v, r in candidates(tmp_path)][:3] == [
        ("accepted", ""),
        ("rejected", "duplicate"),
        ("rejected", "duplicate"),
    ]
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status != 'ok'").fetchone() == (0,)


def test_a_model_that_never_gives_a_usable_instruction_stops_the_run(tmp_path: Path) -> None:
    lm = FixedBootstrapLM(" Go.\n10. Run fast.")  # every item too short
    with Run.open(tmp_path, {"num_instructions": 5, "bootstrap": {"max_barren_requests": 6}}, lm=lm) as run:
        with pytest.raises(BarrenBootstrap, match=r"the last \d+ answered requests gave no accepted instruction") as e:
            run.bootstrap()
        assert "too_short" in str(e.value) and "bootstrap.max_barren_requests" in str(e.value)
        # It stopped there, not after a budget: after the 6th, only the requests already in flight, or answered and
        # waiting for their worker to judge them (twice as many workers as slots), were sent.
        assert 6 <= lm.sent <= 6 + 2 * run.engine.concurrency


def test_the_cli_reports_a_barren_bootstrap_as_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from selfinstruct import pipeline
    from selfinstruct.cli import cli

    monkeypatch.setattr(pipeline, "create_backends", lambda lm, seed, ray=None: [FixedBootstrapLM(" Go now.")])
    config = tmp_path / "c.toml"
    config.write_text("[bootstrap]\nmax_barren_requests = 3\n")
    result = CliRunner().invoke(cli, ["bootstrap", "--out", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 2
    assert "\nerror: bootstrap stopped: the last " in result.output and "gave no accepted instruction" in result.output


def test_prompt_groups_stay_aligned_across_a_resume(tmp_path: Path) -> None:
    """With samples_per_prompt 4, requests 4k..4k+3 share one prompt. A run that stops after one request of a
    group must not let the resumed run send the rest of that group with another prompt."""
    settings = {"bootstrap": {"samples_per_prompt": 4}}
    with Run.open(tmp_path, {"num_instructions": 1, **settings}, lm=ScriptedLM()) as run:
        run.bootstrap()
    with Run.open(tmp_path, {"num_instructions": 40}, lm=ScriptedLM()) as run:
        run.bootstrap()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        rows = db.execute("SELECT sample_index, prompt FROM requests WHERE stage = 'bootstrap'").fetchall()
    groups: dict[int, set[str]] = {}
    for index, prompt in rows:
        groups.setdefault(index // 4, set()).add(prompt)
    assert len(groups) > 2 and all(len(prompts) == 1 for prompts in groups.values())


def test_classification_seeds_only(tmp_path: Path) -> None:
    lm = ScriptedLM()
    settings = {"num_instructions": 4, "bootstrap": {"classification_seeds_only": True}}
    with Run.open(tmp_path, settings, lm=lm) as run:
        run.bootstrap()
        clf_seeds = {i.text for i in run.store.accepted("seed") if i.classification == "yes"}
        machine = {i.text for i in run.store.accepted("machine")}
    prompts = {prompt for prompt, _ in lm.calls if prompt.startswith("Come up with a series")}
    assert prompts and all(p.startswith(CLASSIFICATION_HEADER + "\n") for p in prompts)
    for prompt in prompts:
        shown = [line.split(". ", 1)[1] for line in prompt.splitlines()[1:-1]]
        assert len(shown) == 8 and all(s in clf_seeds or s in machine for s in shown)
    assert not any(p.startswith(HEADER) for p in prompts)


def test_classification_seeds_only_needs_classification_seeds(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.csv"
    seeds.write_text(
        "instruction,input,output\n" + "".join(f"Write line number {i} of a poem.,,ok\n" for i in range(9))
    )
    settings = {"seed_tasks": str(seeds), "bootstrap": {"classification_seeds_only": True}}
    with pytest.raises(ConfigError) as info:
        Run.open(tmp_path / "run", settings, lm=ScriptedLM())
    assert "bootstrap.classification_seeds_only" in str(info.value) and "is_classification" in str(info.value)
    assert not (tmp_path / "run").exists()
