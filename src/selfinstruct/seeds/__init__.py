"""Seed tasks: the project's own default set (seed_tasks.jsonl beside this file) and user files.

Accepted formats: the paper's JSONL schema
`{"id", "name", "instruction", "instances": [{"input", "output"}], "is_classification"}`,
or a JSON list / JSONL / CSV of flat rows with instruction, input, output (and optionally
is_classification) columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfinstruct.records import InputError, read_records

DEFAULT_SEED_TASKS = Path(__file__).with_name("seed_tasks.jsonl")
MAX_FIELD_CHARS = 100_000  # far above any real seed task; a 10 MB field is a wrong file, not a task


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


@dataclass(frozen=True)
class SeedTask:
    id: str
    name: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool | None  # None: not given (flat files); the classify stage does not touch seeds


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None:
        if required:
            fields = ", ".join(sorted(row)) or "none"
            raise InputError(
                f"{where}: missing field {key!r} (fields here: {fields}); seed tasks need instruction "
                "and an output, in the paper's schema or as instruction/input/output columns"
            )
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if len(value) > MAX_FIELD_CHARS:
        raise InputError(
            f"{where}: field {key!r} is {len(value):,} characters long (at most {MAX_FIELD_CHARS:,}); "
            "a seed task is a short instruction with one example: check that this is the right file"
        )
    return value


def _flag(value: Any, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise InputError(f"{where}: field 'is_classification' must be true or false, got {value!r}")


def _parse(row: dict[str, Any], where: str, index: int) -> SeedTask:
    instruction = _text(row, "instruction", where).strip()
    if not instruction:
        raise InputError(f"{where}: field 'instruction' is empty")
    if "instances" in row:
        raw = row["instances"]
        if not isinstance(raw, list) or not raw:
            raise InputError(f"{where}: field 'instances' must be a non-empty list of {{input, output}} objects")
        instances = []
        for j, inst in enumerate(raw):
            if not isinstance(inst, dict):
                raise InputError(f"{where}: instances[{j}] must be an object with 'input' and 'output'")
            instances.append(
                Instance(
                    _text(inst, "input", f"{where}: instances[{j}]", required=False),
                    _text(inst, "output", f"{where}: instances[{j}]"),
                )
            )
    else:  # flat row: instruction / input / output (Alpaca-style "response" accepted for output)
        output_key = "response" if "response" in row and "output" not in row else "output"
        instances = [Instance(_text(row, "input", where, required=False), _text(row, output_key, where))]
    task_id = row.get("id", f"seed_task_{index}")
    return SeedTask(
        id=str(task_id),
        name=str(row.get("name") or task_id),
        instruction=instruction,
        instances=tuple(instances),
        is_classification=_flag(row.get("is_classification"), where),
    )


def load_seed_tasks(path: str | Path | None = None) -> list[SeedTask]:
    """Load and validate every seed task, or raise InputError naming the file and line."""
    path = Path(path) if path else DEFAULT_SEED_TASKS
    tasks: list[SeedTask] = []
    seen: dict[str, str] = {}
    for line_no, row in read_records(path):
        where = f"{path}:{line_no}"
        task = _parse(row, where, len(tasks))
        if task.id in seen:
            raise InputError(f"{where}: duplicate seed id {task.id!r} (first at {seen[task.id]}); ids must be unique")
        seen[task.id] = where
        tasks.append(task)
    if not tasks:
        raise InputError(f"{path}: no seed tasks found; the file is empty")
    return tasks
