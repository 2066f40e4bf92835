"""Bad input: each case gets one clear message (what, where, how to fix), exit code 2, and nothing half-written.

`python tests/test_bad_input.py` prints the table of cases and their messages that docs/reliability.md carries.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from selfinstruct.cli import cli

SEED = {"instruction": "Say hello to the user.", "instances": [{"input": "", "output": "Hello!"}]}


def seeds(tmp: Path, text: str | bytes, name: str = "seeds.jsonl") -> str:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


def run(tmp: Path, *args: str) -> list[str]:
    """`selfinstruct run` on a new run directory in the scratch directory, with these arguments."""
    return ["run", "--out", f"{tmp}/run", *args]


def prompt_file(tmp: Path, name: str, text: str) -> str:
    """A prompts directory holding one file; its path."""
    (tmp / "prompts").mkdir(exist_ok=True)
    (tmp / "prompts" / name).write_text(text)
    return str(tmp / "prompts")


def line(**fields: object) -> str:
    return json.dumps({**SEED, **fields}) + "\n"


@dataclass
class Case:
    name: str
    args: Callable[[Path], list[str]]  # the command line, given a scratch directory
    expect: str  # a part of the message
    code: int = 2


CASES = [
    Case(
        "invalid JSON line in seeds",
        lambda t: run(t, "--seed-tasks", seeds(t, line() + "{oops\n")),
        "seeds.jsonl:2: invalid JSON",
    ),
    Case(
        "missing field",
        lambda t: run(
            t,
            "--seed-tasks",
            seeds(t, json.dumps({"instances": SEED["instances"]}) + "\n"),
        ),
        "seeds.jsonl:1: missing field 'instruction'",
    ),
    Case(
        "wrongly typed field",
        lambda t: run(t, "--seed-tasks", seeds(t, line(instruction=42))),
        "seeds.jsonl:1: field 'instruction' must be a string, got int",
    ),
    Case(
        "empty seed file",
        lambda t: run(t, "--seed-tasks", seeds(t, "")),
        "no seed tasks found; the file is empty",
    ),
    Case(
        "duplicate seed ids",
        lambda t: run(
            t,
            "--seed-tasks",
            seeds(t, line(id="a") + line(id="a", instruction="Say bye.")),
        ),
        "seeds.jsonl:2: duplicate seed id 'a' (first at",
    ),
    Case(
        "non-UTF-8 bytes",
        lambda t: run(
            t,
            "--seed-tasks",
            seeds(t, line().encode() + b'{"instruction": "caf\xe9"}\n'),
        ),
        "seeds.jsonl:2: not valid UTF-8 (byte 0xe9",
    ),
    Case(
        "a 10 MB line",
        lambda t: run(t, "--seed-tasks", seeds(t, line(instruction="x " * 5_000_000))),
        "field 'instruction' is 10,000,000 characters long (at most 100,000)",
    ),
    Case(
        "CSV without the needed columns",
        lambda t: run(
            t,
            "--seed-tasks",
            seeds(t, "question,answer\nWhy?,Because.\n", "seeds.csv"),
        ),
        "seeds.csv:2: missing field 'instruction'",
    ),
    Case(
        "unknown config key",
        lambda t: run(t, "--config", seeds(t, "[bootstrap]\nthreshold = 0.5\n", "c.toml")),
        "unknown key 'bootstrap.threshold'; known keys here: bootstrap.chat_sampling",
    ),
    Case(
        "wrongly typed config key",
        lambda t: run(
            t,
            "--config",
            seeds(t, "[prepare]\nmax_instances_per_task = 'five'\n", "c.toml"),
        ),
        "prepare.max_instances_per_task: expected an integer, got 'five'",
    ),
    Case(
        "novelty threshold of 1",
        lambda t: run(
            t,
            "--config",
            seeds(t, "[bootstrap]\nsimilarity_threshold = 1.0\n", "c.toml"),
        ),
        "bootstrap.similarity_threshold must be between 0 and 1, both excluded",
    ),
    Case(
        "five stop sequences for an OpenAI-compatible endpoint",
        lambda t: run(
            t,
            "--backend",
            "openai",
            "--model",
            "m",
            "--config",
            seeds(t, '[instances.sampling]\nstop = ["a", "b", "c", "d", "e"]\n', "c.toml"),
        ),
        "instances.sampling.stop has 5 stop sequences; OpenAI-compatible endpoints accept at most 4",
    ),
    Case(
        "classification seeds only, but none flagged",
        lambda t: run(
            t,
            "--seed-tasks",
            seeds(t, "instruction,input,output\nSay hi.,,Hi!\n", "seeds.csv"),
            "--config",
            seeds(t, "[bootstrap]\nclassification_seeds_only = true\n", "c.toml"),
        ),
        "bootstrap.classification_seeds_only is set, but no seed task",
    ),
    Case(
        "zero count",
        lambda t: run(t, "--num-instructions", "0"),
        "num_instructions must be at least 1",
    ),
    Case(
        "negative count",
        lambda t: run(t, "--num-instructions", "-5"),
        "num_instructions must be at least 1",
    ),
    Case(
        "prompt file with an unknown placeholder",
        lambda t: run(
            t,
            "--prompts",
            prompt_file(
                t, "chat_classify.txt", "[system]\nDecide.\n[user]\nTask: {instruction} for {user}\n[repair]\nNo.\n"
            ),
        ),
        "chat_classify.txt:4: unknown placeholder {user} in [user] of chat_classify.txt; it takes {instruction}",
    ),
    Case(
        "prompt file whose examples the stage cannot parse",
        lambda t: run(
            t,
            "--prompts",
            prompt_file(t, "instances_generation.txt", "Examples.\n\nTask: Be kind.\nHere you go: be kind!\n"),
        ),
        "instances_generation.txt:4: the answer to the example task 'Be kind.' does not parse as instances",
    ),
    Case(
        "a misspelt prompt file name",
        lambda t: run(t, "--prompts", prompt_file(t, "bootstrp.txt", "{tasks}")),
        "bootstrp.txt: not a prompt file this version reads; the files are bootstrap.txt",
    ),
    Case(
        "a prompts directory that does not exist",
        lambda t: run(t, "--prompts", f"{t}/none"),
        "the prompts directory does not exist (write the defaults there with `selfinstruct prompts --output DIR`",
    ),
    Case(
        "unwritable output directory",
        lambda t: ["run", "--out", f"{seeds(t, 'x', 'a-file')}/run"],
        "cannot create the run directory",
    ),
    Case(
        "GGUF path that does not exist",
        lambda t: ["bootstrap", "--out", f"{t}/run", "--model", f"{t}/none.gguf"],
        "model file not found",
    ),
    Case(
        "file that is not a model",
        lambda t: ["bootstrap", "--out", f"{t}/run", "--model", seeds(t, "hi", "m.gguf")],
        "is not a GGUF model file",
    ),
    Case(
        "unreachable endpoint at start-up",
        lambda t: [
            "bootstrap",
            "--out",
            f"{t}/run",
            "--backend",
            "openai",
            "--model",
            "m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--num-instructions",
            "1",
        ],
        "the first request failed after 4 attempts; the last error: cannot connect to http://127.0.0.1:9/v1",
    ),
]


def invoke(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_error(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code, output = invoke(case.args(tmp_path))
    assert code == case.code, output
    assert case.expect in output
    assert "Traceback" not in output
    if case.name not in (
        "GGUF path that does not exist",
        "file that is not a model",
        "unreachable endpoint at start-up",
    ):
        assert not (tmp_path / "run").exists(), "nothing is written for bad input"


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    from selfinstruct.seeds import load_seed_tasks

    assert load_seed_tasks(seeds(tmp_path, b"\xef\xbb\xbf" + line().encode()))[0].instruction == SEED["instruction"]


def test_resuming_with_an_incompatible_config_is_refused(tmp_path: Path) -> None:
    from conftest import ScriptedLM

    from selfinstruct.pipeline import Run

    Run.open(tmp_path / "run", {"num_instructions": 2}, lm=ScriptedLM()).bootstrap()
    code, output = invoke(["bootstrap", "--out", f"{tmp_path}/run", "--seed", "7"])
    assert code == 2 and "seed: 42 -> 7" in output and "--allow-config-change" in output


def test_full_disk_while_exporting_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import ScriptedLM

    from selfinstruct.pipeline import Run

    run = Run.open(tmp_path / "run", {"num_instructions": 2}, lm=ScriptedLM())
    run.run_all()
    before = {p.name: p.read_bytes() for p in (tmp_path / "run" / "export").iterdir()}

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, output = invoke(["export", f"{tmp_path}/run", "--format", "paper", "--format", "alpaca"])
    assert code == 2 and "No space left on device; no file was left half-written" in output
    after = {p.name: p.read_bytes() for p in (tmp_path / "run" / "export").iterdir()}
    assert after == before, "the earlier export is intact and no temporary file remains"


def test_full_disk_in_the_database_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from selfinstruct.store import Store

    def full(self: Store, *args: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add_seed_tasks", full)
    code, output = invoke(["prepare", "--out", f"{tmp_path}/run"])
    assert code == 2 and "could not be written (database or disk is full)" in output and "rolled back" in output


if __name__ == "__main__":  # the table for docs/reliability.md
    import tempfile

    print("| bad input | exit code | message |\n|---|---|---|")
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.pop("OPENAI_API_KEY", None)
            code, output = invoke(case.args(Path(tmp)))
        message = " ".join(output.split()).replace(tmp, "/tmp/x").replace("|", "\\|")
        print(f"| {case.name} | {code} | {message} |")
    sys.exit(0)
