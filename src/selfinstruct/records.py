"""Reading rows from JSON lists, JSONL and CSV with errors that name the file and line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """A user-supplied file is malformed: the message says where and how to fix it."""


def read_text(path: str | Path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not valid UTF-8 (byte {data[e.start]:#04x} at offset {e.start}); re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is harmless: drop it


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, row) from a .jsonl, .json (a list of objects) or .csv file.

    For JSON lists the "line" is the 1-based position in the list.
    """
    path = Path(path)
    text = read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # newline="": quoted fields may span lines (code, poems) and keep their line breaks.
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames:
            raise InputError(f"{path}: the CSV file is empty; it needs a header row")
        for row in reader:
            yield reader.line_num, {k: (v if v is not None else "") for k, v in row.items() if k is not None}
        return
    if suffix == ".json" or (suffix != ".jsonl" and text.lstrip().startswith("[")):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        if not isinstance(rows, list):
            raise InputError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
        for i, row in enumerate(rows, 1):
            if not isinstance(row, dict):
                raise InputError(f"{path}: item {i} is not a JSON object")
            yield i, row
        return
    # Split on "\n" only: str.splitlines() also splits on U+2028 and friends, which JSON strings may hold raw.
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{line_no}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        yield line_no, row
