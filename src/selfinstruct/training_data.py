"""Fine-tuning data, read from wherever it is: a run directory, any of the export files (Alpaca JSON, OpenAI chat
JSONL, the paper's prompt/completion finetuning_data.jsonl) or a Hugging Face dataset directory; the format is
found from the records themselves. A malformed record is an InputError naming the file and line. The training
itself is finetune.py's."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfinstruct.export import END_OF_TEXT, finetuning_record
from selfinstruct.records import InputError, read_records

OUTPUT_MARKER = "\n\nOutput:"  # the end of every prompt in the paper's template (export.finetuning_record)
INPUT_MARKER = "\n\nInput: "


@dataclass(frozen=True)
class Example:
    instruction: str
    input: str
    output: str
    # A prompt/completion record in another of the paper's templates (finetuning_data.jsonl is encoded with a
    # random one per instance) cannot be split back into fields reliably: it is trained on as it is written.
    prompt: str | None = None
    completion: str | None = None


def paper_prompt(instruction: str, input_text: str) -> str:
    """The prompt part of the paper's template (ends with "Output:"): prompt the fine-tuned model with exactly this."""
    return finetuning_record(instruction, input_text, "")["prompt"]


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if value is None:
        raise InputError(f"{where}: missing field {key!r} (fields here: {', '.join(sorted(row)) or 'none'})")
    if not isinstance(value, str):
        raise InputError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return value


def _from_alpaca(row: dict[str, Any], where: str) -> Example:
    instruction = _text(row, "instruction", where).strip()
    if not instruction:
        raise InputError(f"{where}: field 'instruction' is empty")
    return Example(instruction, _text(row, "input", where, required=False).strip(), _text(row, "output", where).strip())


def _from_paper(row: dict[str, Any], where: str) -> Example:
    prompt = _text(row, "prompt", where)
    completion = _text(row, "completion", where).removesuffix(END_OF_TEXT)
    if not prompt.strip() or not completion.strip():
        raise InputError(f"{where}: an empty prompt or completion is not a fine-tuning example")
    head = prompt.removesuffix(OUTPUT_MARKER)
    # The fixed template: fields recovered. Without "Input:", a blank line would be ambiguous (the paper's
    # "{instruction}\n\n{input}\n\nOutput:" looks the same), so such a prompt is kept as written.
    if head != prompt and completion.startswith(" ") and (INPUT_MARKER in head or "\n\n" not in head):
        instruction, _, input_text = head.partition(INPUT_MARKER)
        return _from_alpaca({"instruction": instruction, "input": input_text, "output": completion}, where)
    # Any other of the paper's templates: kept verbatim for training; for a chat format, the prompt is the user turn.
    return Example(prompt.strip(), "", completion.strip(), prompt, completion)


def _from_chat(row: dict[str, Any], where: str) -> Example:
    messages = row["messages"]
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages] if isinstance(messages, list) else None
    if roles != ["user", "assistant"]:
        raise InputError(
            f"{where}: expected 'messages' to be one user message then one assistant message (as `selfinstruct "
            f"export --format openai-chat` writes), got roles {roles}; system messages and several turns are not "
            "supported"
        )
    # The export joins instruction and input with a blank line, which cannot be split reliably: the user
    # message becomes the instruction.
    user, assistant = (_text(m, "content", f"{where}: message {i}") for i, m in enumerate(messages))
    return _from_alpaca({"instruction": user, "output": assistant}, where)


PARSERS: dict[str, Callable[[dict[str, Any], str], Example]] = {
    "alpaca": _from_alpaca,
    "paper": _from_paper,
    "openai-chat": _from_chat,
}


def _schema(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "openai-chat"
    if "prompt" in row and "completion" in row:
        return "paper"
    if "instruction" in row:
        return "alpaca"
    return None


def _parse(rows: Iterable[tuple[str, dict[str, Any]]], source: Path) -> tuple[str, list[Example]]:
    """(format, examples); the first record's format is the file's, and every record must share it."""
    kind: str | None = None
    examples = []
    for where, row in rows:
        found = _schema(row)
        if found is None:
            raise InputError(
                f"{where}: not a fine-tuning example (fields: {', '.join(sorted(row)) or 'none'}); expected "
                "instruction/input/output (Alpaca), prompt/completion (the paper's finetuning_data.jsonl) or "
                "messages (OpenAI chat)"
            )
        kind = kind or found
        if found != kind:
            raise InputError(f"{where}: a {found} record in a file whose first record is {kind}; use one format")
        examples.append(PARSERS[kind](row, where))
    if kind is None:
        raise InputError(f"{source}: no examples found; the data is empty")
    return kind, examples


def _file_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    # read_records numbers a JSON list's items by position, JSONL and CSV rows by line.
    label = (lambda n: f"{path}: item {n}") if path.suffix.lower() == ".json" else (lambda n: f"{path}:{n}")
    for n, row in read_records(path):
        yield label(n), row


def _dataset_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise InputError(
            f"{path}: reading a Hugging Face dataset directory needs the datasets library: "
            "pip install 'selfinstruct[finetune]'"
        ) from None
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise InputError(f"{path}: a dataset with splits {list(loaded)} but no 'train' split")
        loaded = loaded["train"]
    for i, row in enumerate(loaded, 1):
        yield f"{path}: row {i}", row


def _run_examples(run_dir: Path) -> list[Example]:
    from selfinstruct.pipeline import Run

    # Export afresh from the database (the source of truth): RUN_DIR/export may predate a later `prepare`.
    with tempfile.TemporaryDirectory(prefix="selfinstruct-finetune-") as tmp, Run.open(run_dir) as run:
        run.export(tmp, formats=("alpaca",))
        return _parse(_file_rows(Path(tmp) / "alpaca_data.json"), run_dir)[1]


def read_data(path: str | Path) -> tuple[str, list[Example]]:
    """(format, examples) from a run directory, an Alpaca JSON, OpenAI chat JSONL or paper finetuning_data.jsonl
    file, or a Hugging Face dataset directory. A malformed record raises InputError naming the file and line."""
    from selfinstruct.store import DB_NAME  # here: the run store (and asyncio) is not loaded by every CLI start

    path = Path(path)
    if path.is_dir():
        if (path / DB_NAME).exists():
            return "run", _run_examples(path)
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "hf", _parse(_dataset_rows(path), path)[1]
        raise InputError(
            f"{path}: neither a run directory (no {DB_NAME}) nor a Hugging Face dataset directory (no "
            "dataset_info.json); pass a run directory, an export file or `selfinstruct export --format hf`'s hf_dataset"
        )
    return _parse(_file_rows(path), path)


def load_examples(path: str | Path) -> list[Example]:
    return read_data(path)[1]
