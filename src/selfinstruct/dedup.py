"""`selfinstruct dedup`: the Self-Instruct novelty filter on any file of instructions.

Rows are read from JSON lists, JSONL or CSV; a row is kept when the ROUGE-L F1 of its field to every `--against`
text and to every row kept before it is at most the threshold. Kept rows are written in input order, in the
output's format (by its extension); rejects get their highest score and the nearest kept text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfinstruct.files import atomic_write
from selfinstruct.records import InputError, read_records
from selfinstruct.similarity import sequential_filter

Row = dict[str, Any]


@dataclass
class DedupResult:
    kept: list[Row]
    rejected: list[Row]  # each row plus "max_rouge" and "nearest"


def read_field(path: str | Path, field: str) -> tuple[list[Row], list[str]]:
    rows, texts = [], []
    for line, row in read_records(path):
        value = row.get(field)
        if value is None:
            available = ", ".join(sorted(row)) or "none"
            raise InputError(f"{path}:{line}: no field {field!r} (fields here: {available}); choose one with --field")
        if not isinstance(value, str):
            raise InputError(f"{path}:{line}: field {field!r} must be text, got {type(value).__name__}")
        rows.append(row)
        texts.append(value)
    return rows, texts


def dedup(
    rows: Sequence[Row],
    texts: Sequence[str],
    against: Sequence[str] = (),
    threshold: float = 0.7,
    tokenizer: str = "rouge",
) -> DedupResult:
    decisions = sequential_filter(texts, threshold, against, tokenizer)
    kept, rejected = [], []
    for row, decision in zip(rows, decisions, strict=True):
        if decision.kept:
            kept.append(row)
        else:
            assert decision.nearest is not None
            rejected.append({**row, "max_rouge": decision.nearest.score, "nearest": decision.nearest.text})
    return DedupResult(kept, rejected)


def render(rows: Sequence[Row], path: str | Path) -> str:
    """Rows in the format the file's extension names: .json (a list), .csv, otherwise JSON Lines."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return json.dumps(list(rows), ensure_ascii=False, indent=2) + "\n"
    if suffix == ".csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write(rows: Sequence[Row], path: str | Path) -> None:
    atomic_write(Path(path), render(rows, path))
