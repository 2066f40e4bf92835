"""Write a run's data as files: the paper's files, its fine-tuning data, and Alpaca JSON.

Every file is written to a temporary file in the same directory, flushed to disk and renamed over the
target, so a reader never sees a half-written file, whatever happens during the write.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selfinstruct.store import Store

END_OF_TEXT = "<|endoftext|>"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def finetuning_record(instruction: str, input_text: str, output: str) -> dict[str, str]:
    """The prompt/completion form used to fine-tune GPT-3 (completion-only loss), one fixed template."""
    prompt = instruction.strip()
    if input_text.strip():
        prompt += f"\n\nInput: {input_text.strip()}"
    return {"prompt": prompt + "\n\nOutput:", "completion": f" {output.strip()}{END_OF_TEXT}"}


def export(store: Store, output_dir: str | Path, include_seed_tasks: bool = True) -> dict[str, int]:
    """Write every export file into `output_dir`; returns {file name: records}."""
    out = Path(output_dir)
    machine = store.machine_instruction_rows()
    instances = store.instances()
    kept = [r for r in instances if r["verdict"] == "kept" and (include_seed_tasks or r["origin"] == "machine")]
    raw = {inst.id: req for inst, req in store.instance_responses()}
    label = {"yes": "Yes", "no": "No", "unknown": "Unknown", None: None}

    files: dict[str, list[dict[str, Any]]] = {
        "machine_generated_instructions.jsonl": [
            {
                "instruction": r["text"],
                "most_similar": dict(json.loads(r["neighbours"] or "[]")),
                "avg_similarity_score": r["mean_rouge"],
                "max_similarity_score": r["max_rouge"],
                "request_id": r["request_id"],
            }
            for r in machine
        ],
        "is_clf_or_not.jsonl": [
            {"instruction": r["text"], "is_classification": label[r["classification"]]} for r in machine
        ],
        "machine_generated_instances.jsonl": [
            {
                "instruction": r["text"],
                "is_classification": label[r["classification"]],
                "raw_instances": raw[r["id"]].text,
                "finish_reason": raw[r["id"]].finish_reason,
                "request_id": raw[r["id"]].id,
            }
            for r in machine
            if r["id"] in raw
        ],
        "all_generated_instances.jsonl": [
            {
                "instruction": r["instruction"],
                "input": r["input"],
                "output": r["output"],
                "verdict": r["verdict"],
                "reason": r["reason"],
            }
            for r in instances
            if r["origin"] == "machine"
        ],
        "finetuning_data.jsonl": [finetuning_record(r["instruction"], r["input"], r["output"]) for r in kept],
    }
    counts = {}
    for name, rows in files.items():
        atomic_write(out / name, _jsonl(rows))
        counts[name] = len(rows)
    alpaca = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in kept]
    atomic_write(out / "alpaca_data.json", json.dumps(alpaca, ensure_ascii=False, indent=2) + "\n")
    counts["alpaca_data.json"] = len(alpaca)
    return counts
