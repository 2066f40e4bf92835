"""Write a run's data for every fine-tuning stack: the paper's files, Alpaca JSON, OpenAI chat JSONL, ShareGPT,
a Hugging Face dataset, Parquet, and a dataset card.

Every file is written to a temporary name in the same directory, flushed to disk and renamed over the target
(a dataset directory likewise), so a reader never sees a half-written export.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfinstruct.config import Config
from selfinstruct.files import atomic_directory, atomic_write

if TYPE_CHECKING:  # only for annotations: the CLI imports this module for FORMATS, and `dedup` starts faster
    from selfinstruct.store import Store

END_OF_TEXT = "<|endoftext|>"
FORMATS = ("paper", "alpaca", "openai-chat", "sharegpt", "hf", "parquet")
Row = dict[str, Any]


class ExportError(RuntimeError):
    """An export cannot be written or does not pass its consumer's checks."""


def _jsonl(rows: Iterable[Row]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _prompt(instruction: str, input_text: str) -> str:
    return instruction.strip() + (f"\n\n{input_text.strip()}" if input_text.strip() else "")


def finetuning_record(instruction: str, input_text: str, output: str) -> dict[str, str]:
    """The prompt/completion form used to fine-tune GPT-3 (completion-only loss), one fixed template."""
    prompt = instruction.strip()
    if input_text.strip():
        prompt += f"\n\nInput: {input_text.strip()}"
    return {"prompt": prompt + "\n\nOutput:", "completion": f" {output.strip()}{END_OF_TEXT}"}


# The paper's encodings (prepare_for_finetuning.py): (prompt, completion) templates, one drawn per instance, so
# the tuned model does not depend on one exact layout. "{i}" is the instruction, "{x}" the input, "{y}" the output.
PAPER_TEMPLATES_WITH_INPUT = (
    ("{i}\nInput: {x}\nOutput:", " {y}"),
    ("{i}\n\nInput: {x}\n\nOutput:", " {y}"),
    ("Task: {i}\nInput: {x}\nOutput:", " {y}"),
    ("{i}\n\n{x}\n\nOutput:", " {y}"),
    ("{i}\n\n{x}\n\n", "{y}"),
    ("{i}\n{x}\n\n", "{y}"),
    ("Task: {i}\n\n{x}\n\n", "{y}"),
)
PAPER_TEMPLATES_WITHOUT_INPUT = (
    ("{i} Output:", " {y}"),
    ("{i}\nOutput:", " {y}"),
    ("{i}\n\nOutput:", " {y}"),
    ("{i}\n", "{y}"),
    ("{i}\n\n", "{y}"),
    ("Task: {i}\n\n", "{y}"),
)
_FIELD_NAME = re.compile(r"(\w+):")


def _loosen_input(input_text: str, rng: random.Random) -> str:
    """Half the time, as the paper: an input with a single field name ("Sentence: I love it.") loses it, and
    blank lines become single line breaks."""
    text = input_text.strip()
    if rng.random() < 0.5:
        if len(set(_FIELD_NAME.findall(text))) == 1:
            text = text.split(":", 1)[1].strip()
        text = text.replace("\n\n", "\n")
    return text


def paper_finetuning_records(rows: list[Row], seed: int) -> list[dict[str, str]]:
    """The paper's fine-tuning data: each instance under a random template, field names loosened, duplicate
    prompt/completion pairs removed, shuffled. Seeded: the same run gives the same file."""
    rng = random.Random(f"{seed}:finetuning")
    records, seen = [], set()
    for row in rows:
        input_text = _loosen_input(row["input"], rng)
        templates = PAPER_TEMPLATES_WITH_INPUT if input_text else PAPER_TEMPLATES_WITHOUT_INPUT
        prompt, completion = rng.choice(templates)
        values = {"i": row["instruction"].strip(), "x": input_text, "y": row["output"].strip()}
        pair = (prompt.format(**values), completion.format(**values) + END_OF_TEXT)
        if pair not in seen:
            seen.add(pair)
            records.append({"prompt": pair[0], "completion": pair[1]})
    rng.shuffle(records)
    return records


def finetuning_records(rows: list[Row], template: str, seed: int) -> list[dict[str, str]]:
    """finetuning_data.jsonl: the paper's encoding ("paper") or one fixed template ("fixed")."""
    if template == "paper":
        return paper_finetuning_records(rows, seed)
    return [finetuning_record(r["instruction"], r["input"], r["output"]) for r in rows]


def openai_chat_record(row: Row) -> Row:
    return {
        "messages": [
            {"role": "user", "content": _prompt(row["instruction"], row["input"])},
            {"role": "assistant", "content": row["output"].strip()},
        ]
    }


def sharegpt_record(row: Row) -> Row:
    return {
        "conversations": [
            {"from": "human", "value": _prompt(row["instruction"], row["input"])},
            {"from": "gpt", "value": row["output"].strip()},
        ]
    }


OPENAI_ROLES = {"system", "user", "assistant", "tool", "function"}
OPENAI_MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call", "tool_calls", "tool_call_id"}


def check_openai_chat(record: Any) -> list[str]:
    """The format errors OpenAI's fine-tuning data check reports for one example (empty when valid)."""
    if not isinstance(record, dict):
        return ["data_type: the example is not an object"]
    errors = [
        f"unrecognized_key: {k}" for k in record if k not in {"messages", "tools", "functions", "parallel_tool_calls"}
    ]
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return [*errors, "missing_messages_list"]
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            errors.append(f"message_missing_key: message {i}")
            continue
        errors += [f"message_unrecognized_key: message {i} has {k!r}" for k in message if k not in OPENAI_MESSAGE_KEYS]
        if message["role"] not in OPENAI_ROLES:
            errors.append(f"unrecognized_role: message {i} has role {message['role']!r}")
        content = message["content"]
        if not isinstance(content, str) or not content.strip():
            errors.append(f"missing_content: message {i} has empty or non-text content")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        errors.append("example_missing_assistant_message")
    return errors


def dataset_card(store: Store, rows: list[Row]) -> str:
    from selfinstruct.report.stats import compute, steering

    stats = compute(store)
    config = json.loads(store.get_meta("config") or "{}")
    lm, bootstrap = config.get("lm", {}), config.get("bootstrap", {})
    seeds = config.get("seed_tasks") or "the selfinstruct project's own 175 seed tasks (written for the project)"
    table1 = "\n".join(
        f"| {k} | {v:,.1f} |" if isinstance(v, float) else f"| {k} | {v:,} |" for k, v in stats.table1.items()
    )
    funnel = "\n".join(f"| {reason} | {n:,} |" for reason, n in stats.instruction_funnel.dropped.items())
    steering = "\n".join(f"- {name}: {value}" for name, value in steering(config))
    instance_funnel = "\n".join(f"| {reason} | {n:,} |" for reason, n in stats.instance_funnel.dropped.items())
    return f"""---
language: en
task_categories: [text-generation]
tags: [self-instruct, synthetic, instruction-tuning]
---

# Self-Instruct dataset

Generated with [selfinstruct](https://pypi.org/project/selfinstruct/), an implementation of Self-Instruct
(Wang et al. 2022). {len(rows):,} instruction/input/output records
({stats.table1["instances"]:,} machine-generated instances, the rest from the seed tasks).

## Statistics (the paper's Table 1)

| | |
|---|---|
{table1}

## How it was made

- Seed tasks: {seeds}
- Model: backend `{lm.get("backend")}`, model `{lm.get("model") or "SmolLM2-135M-Instruct (embedded default)"}`
- Bootstrap sampling: `{json.dumps(bootstrap.get("sampling", {}))}`
- Novelty filter: ROUGE-L F1 > {bootstrap.get("similarity_threshold")} to the pool rejected
  (tokenizer `{bootstrap.get("tokenizer")}`); run seed {config.get("seed")}
{steering}

## Filters

{stats.instruction_funnel.total:,} candidate instructions, {stats.instruction_funnel.kept:,} accepted:

| reason dropped | candidates |
|---|---|
{funnel or "| none | 0 |"}

{stats.instance_funnel.total:,} parsed instances, {stats.instance_funnel.kept:,} kept:

| reason dropped | instances |
|---|---|
{instance_funnel or "| none | 0 |"}

Machine-generated data from a language model: it can be wrong, biased or unsafe; review before use.
"""


def _hf_dataset(rows: list[Row]) -> Any:
    try:
        import datasets
    except ImportError:
        raise ExportError(
            "the hf and parquet formats need the 'datasets' package: pip install 'selfinstruct[hf]'"
        ) from None
    datasets.disable_progress_bars()  # the CLI prints its own summary
    return datasets.Dataset.from_list(
        rows, features=datasets.Features({k: datasets.Value("string") for k in ("instruction", "input", "output")})
    )


def export(
    store: Store, output_dir: str | Path, config: Config | None = None, formats: Iterable[str] = FORMATS
) -> dict[str, int]:
    """Write the chosen formats (and a dataset card) into `output_dir`; returns {file name: records}. The run's
    config says whether seed tasks are included and how finetuning_data.jsonl is encoded."""
    config = config or Config()
    include_seed_tasks = config.prepare.include_seed_tasks
    out = Path(output_dir)
    formats = set(formats)
    unknown = formats - set(FORMATS)
    if unknown:
        raise ExportError(f"unknown export format {sorted(unknown)[0]!r}; choose from {', '.join(FORMATS)} or all")
    instances = store.instances()
    kept = [r for r in instances if r["verdict"] == "kept" and (include_seed_tasks or r["origin"] == "machine")]
    rows = [{"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in kept]
    files: dict[str, str] = {}
    counts: dict[str, int] = {}

    if "paper" in formats:
        machine = store.machine_instruction_rows()
        raw = {inst.id: req for inst, req in store.instance_responses()}
        label = {"yes": "Yes", "no": "No", "unknown": "Unknown", None: None}
        paper: dict[str, list[Row]] = {
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
            "finetuning_data.jsonl": finetuning_records(rows, config.prepare.finetuning_template, config.seed),
        }
        for name, records in paper.items():
            files[name], counts[name] = _jsonl(records), len(records)
    if "alpaca" in formats:
        files["alpaca_data.json"] = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
        counts["alpaca_data.json"] = len(rows)
    if "openai-chat" in formats:
        chat = [openai_chat_record(r) for r in rows]
        for i, record in enumerate(chat):
            if errors := check_openai_chat(record):
                raise ExportError(f"openai_chat.jsonl record {i} would fail OpenAI's data check: {errors}")
        files["openai_chat.jsonl"], counts["openai_chat.jsonl"] = _jsonl(chat), len(chat)
    if "sharegpt" in formats:
        files["sharegpt.json"] = json.dumps([sharegpt_record(r) for r in rows], ensure_ascii=False, indent=2) + "\n"
        counts["sharegpt.json"] = len(rows)
    dataset = _hf_dataset(rows) if formats & {"hf", "parquet"} else None
    files["README.md"] = dataset_card(store, rows)  # built before anything is written: a failure writes nothing

    for name, text in files.items():
        atomic_write(out / name, text)
    if dataset is not None and "hf" in formats:
        atomic_directory(out / "hf_dataset", lambda tmp: dataset.save_to_disk(str(tmp)))
        counts["hf_dataset"] = len(rows)
    if dataset is not None and "parquet" in formats:
        tmp = out / ".data.parquet.tmp"
        try:
            dataset.to_parquet(str(tmp))
            os.replace(tmp, out / "data.parquet")
        finally:
            tmp.unlink(missing_ok=True)
        counts["data.parquet"] = len(rows)
    counts["README.md"] = 1
    return counts


def push_to_hub(store: Store, repo: str, include_seed_tasks: bool = True, token: str | None = None) -> str:
    """Upload the dataset (and its card) to the Hugging Face Hub; returns the repository's URL."""
    rows = [
        {"instruction": r["instruction"], "input": r["input"], "output": r["output"]}
        for r in store.instances("kept")
        if include_seed_tasks or r["origin"] == "machine"
    ]
    dataset = _hf_dataset(rows)
    card = dataset_card(store, rows)
    try:
        from huggingface_hub import DatasetCard

        dataset.push_to_hub(repo, token=token)
        DatasetCard(card).push_to_hub(repo, token=token)
    except Exception as e:  # offline, no token, no permission: one clear message, nothing half-claimed
        raise ExportError(
            f"could not push to the Hugging Face Hub repository {repo!r}: {type(e).__name__}: {e}. "
            "Check the network and HF_TOKEN; the local export is unaffected."
        ) from None
    return f"https://huggingface.co/datasets/{repo}"
