"""The command line: options, clear errors, nothing written on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED, ScriptedLM

from selfinstruct.cli import cli
from selfinstruct.pipeline import Run


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("command", ["run", "bootstrap", "classify", "instances", "prepare"])
def test_every_stage_command_takes_the_run_options(command: str) -> None:
    code, output = invoke(command, "--help")
    assert code == 0
    for option in (
        "--out",
        "--num-instructions",
        "--seed-tasks",
        "--seed",
        "--config",
        "--backend",
        "--model",
        "--base-url",
    ):
        assert option in output


def test_malformed_seed_file_fails_with_line_number_and_writes_nothing(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        '{"instruction": "Say hello.", "instances": [{"input": "", "output": "Hello"}]}\n' * 2
        + '{"instruction": "Broken", "instances": [}\n'
    )
    out = tmp_path / "run"
    code, output = invoke("run", "--out", str(out), "--seed-tasks", str(seeds))
    assert code == 2
    assert "seeds.jsonl:3: invalid JSON" in output
    assert not out.exists()


def test_bad_config_file_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[bootstrap]\nsimilarity_treshold = 0.5\n")
    code, output = invoke("run", "--out", str(tmp_path / "run"), "--config", str(config))
    assert code == 2 and "unknown key 'bootstrap.similarity_treshold'" in output
    config.write_text("num_instructions = 'many'\n")
    code, output = invoke("run", "--out", str(tmp_path / "run"), "--config", str(config))
    assert code == 2 and "num_instructions: expected an integer" in output
    code, output = invoke("run", "--out", str(tmp_path / "run"), "--num-instructions", "0")
    assert code == 2 and "num_instructions must be at least 1" in output
    assert not (tmp_path / "run").exists()


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    code, output = invoke("bootstrap", "--out", str(tmp_path / "run"), "--model", str(tmp_path / "nope.gguf"))
    assert code == 2 and "model file not found" in output
    not_a_model = tmp_path / "model.gguf"
    not_a_model.write_text("hello")
    code, output = invoke("bootstrap", "--out", str(tmp_path / "run2"), "--model", str(not_a_model))
    assert code == 2 and "is not a GGUF model file" in output


def test_export_command(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", {"num_instructions": 3}, lm=ScriptedLM())
    run.run_all()
    run.close()
    code, output = invoke("export", str(tmp_path / "run"), "--output", str(tmp_path / "data"))
    assert code == 0, output
    assert "alpaca_data.json" in output
    assert json.loads((tmp_path / "data" / "alpaca_data.json").read_text())
    code, output = invoke("export", str(tmp_path))
    assert code == 2 and "is not a run directory" in output


def test_paper_seed_file_loads_as_seeds(tmp_path: Path) -> None:
    paper = SHARED / "data" / "original-format" / "seed_tasks.jsonl"
    if not paper.exists():
        pytest.skip("../shared is not present")
    run = Run.open(tmp_path, {"seed_tasks": str(paper), "num_instructions": 3}, lm=ScriptedLM())
    assert len(run.store.accepted("seed")) == 175
    run.bootstrap()
    assert len(run.store.accepted("machine")) >= 3


def test_run_summary_shows_errors_and_latency_per_stage(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", {"num_instructions": 3}, lm=ScriptedLM())
    run.run_all()
    run.close()
    code, output = invoke("prepare", "--out", str(tmp_path / "run"))
    assert code == 0, output
    for column in ("requests", "failed", "errors", "tokens in", "p50/p90"):
        assert column in output
    assert "bootstrap" in output and "classify" in output and "instances" in output
