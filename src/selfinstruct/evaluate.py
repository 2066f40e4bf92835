"""Measure what a model learned, the paper's two ways (§5): ROUGE-L of its responses against reference outputs,
and an LM judge rating each response A/B/C/D with the paper's rubric; plus a side-by-side of two models.

Prediction files use the format of the paper's human-evaluation data, one JSON object per line:
{"prompt", "instruction", "input", "response", "target"}. Evaluation sets use its user-oriented format:
{"id", "motivation_app", "instruction", "instances": [{"input", "output"}]}.

Generation and judging go through the request engine with a journal in the evaluation directory, so an
interrupted evaluation resumes without paying again for any answer.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from selfinstruct.config import LMConfig, Sampling
from selfinstruct.export import END_OF_TEXT, finetuning_record
from selfinstruct.files import atomic_write
from selfinstruct.lm import create_backends
from selfinstruct.lm.engine import Engine, run_all
from selfinstruct.records import InputError, read_records
from selfinstruct.report.evaluation import render_evaluation
from selfinstruct.similarity import rouge_l_f1
from selfinstruct.store import Store

PREDICTION_KEYS = ("prompt", "instruction", "input", "response", "target")
GENERATION = Sampling(temperature=0.0, top_p=1.0, max_tokens=200, stop=(END_OF_TEXT,))
JUDGE = Sampling(temperature=0.0, top_p=1.0, max_tokens=8, stop=("\n",))
JUDGE_ATTEMPTS = 3  # an answer that is not A-D is asked again at temperature 1, then recorded as unparsed
RATINGS = ("A", "B", "C", "D")

# The paper's four-level rubric (§5.2), in our words.
JUDGE_PROMPT = """Rate how well the response answers the user's instruction, on this scale:
A: the response is valid and satisfying.
B: the response is acceptable but has minor errors or imperfections.
C: the response is relevant and responds to the instruction, but it has significant errors in the content.
D: the response is irrelevant or completely invalid.

Instruction: {instruction}
{input_line}Reference answer: {target}
Response: {response}

Rating (A, B, C or D):"""
# A capital B, C or D standing alone, or an A that is not the article of a following lower-case word
# ("A response like this deserves D" is a D).
_RATING = re.compile(r"\b([BCD])\b|\b(A)\b(?!\s+[a-z])")


@dataclass(frozen=True)
class EvalItem:
    id: str
    motivation_app: str
    instruction: str
    input: str
    target: str


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for line, row in read_records(path):
        missing = [k for k in ("response", "target") if not isinstance(row.get(k), str)]
        if missing:
            raise InputError(
                f"{path}:{line}: a prediction needs string fields {', '.join(missing)} "
                f"(format: one JSON object per line with {', '.join(PREDICTION_KEYS)})"
            )
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no predictions in the file")
    return rows


def score_predictions(paths: list[str | Path]) -> dict[str, dict[str, Any]]:
    """{path: {"n": count, "rougeL": mean F1}} for each prediction file."""
    scores = {}
    for path in paths:
        rows = read_predictions(path)
        scores[str(path)] = {
            "n": len(rows),
            "rougeL": statistics.fmean(rouge_l_f1(r["target"], r["response"]) for r in rows),
        }
    return scores


def default_eval_set() -> Path:
    return Path(str(resources.files("selfinstruct").joinpath("evalsets", "user_oriented.jsonl")))


def load_eval_set(path: str | Path | None = None) -> list[EvalItem]:
    """One item per instance of each task (the project's own 50 tasks by default)."""
    path = path or default_eval_set()
    items = []
    for line, row in read_records(path):
        instances = row.get("instances")
        if not isinstance(row.get("instruction"), str) or not isinstance(instances, list) or not instances:
            raise InputError(
                f"{path}:{line}: an evaluation task needs an 'instruction' and a non-empty 'instances' list "
                '(format: {"id", "motivation_app", "instruction", "instances": [{"input", "output"}]})'
            )
        for k, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("output"), str):
                raise InputError(f"{path}:{line}: instance {k + 1} needs an 'output' string")
            task_id = str(row.get("id", f"task_{line}"))
            items.append(
                EvalItem(
                    task_id if len(instances) == 1 else f"{task_id}/{k}",
                    str(row.get("motivation_app", "")),
                    row["instruction"],
                    str(instance.get("input") or ""),
                    instance["output"],
                )
            )
    if not items:
        raise InputError(f"{path}: the evaluation set is empty")
    return items


def prompt_for(item: EvalItem) -> str:
    """The fine-tuning template (export.finetuning_record), so a fine-tuned model sees what it was trained on."""
    return finetuning_record(item.instruction, item.input, "")["prompt"]


def parse_rating(text: str) -> str | None:
    match = _RATING.search(text)  # capitals only: the article "a" is not a rating
    return (match.group(1) or match.group(2)) if match else None


def judge_prompt(prediction: dict[str, Any]) -> str:
    input_text = str(prediction.get("input") or "").strip()
    return JUDGE_PROMPT.format(
        instruction=str(prediction.get("instruction", "")).strip(),
        input_line=f"Input: {input_text}\n" if input_text else "",
        target=prediction["target"].strip(),
        response=prediction["response"].strip(),
    )


def model_config(model: str, backend: str | None, base_url: tuple[str, ...], threads: int | None) -> LMConfig:
    """Guess the backend from MODEL when not given: a .gguf file runs on llama.cpp, a directory on transformers,
    anything else is a model name served at --base-url."""
    if backend is None:
        path = Path(model).expanduser()
        if path.is_dir():
            backend = "transformers"
        elif path.suffix == ".gguf" or path.is_file():
            backend = "llamacpp"
        elif base_url:
            backend = "openai"
        else:
            raise InputError(f"{model}: no such model file or directory (for an endpoint's model, pass --base-url)")
    return LMConfig(backend=backend, model=model, base_url=base_url if backend == "openai" else (), threads=threads)


async def generate(engine: Engine, items: list[EvalItem], label: str) -> list[dict[str, Any]]:
    """One prediction per item, in the paper's prediction format (plus id, app and model)."""
    out: dict[str, dict[str, Any]] = {}

    async def one(item: EvalItem) -> None:
        prompt = prompt_for(item)
        completion = await engine.request("evaluate", prompt, GENERATION)
        response = completion.text.split(END_OF_TEXT)[0].strip() if completion else ""
        out[item.id] = {
            "id": item.id,
            "motivation_app": item.motivation_app,
            "model": label,
            "prompt": prompt,
            "instruction": item.instruction,
            "input": item.input,
            "response": response,
            "target": item.target,
            "failed": completion is None,
        }

    await run_all(engine, map(one, items))
    return [out[item.id] for item in items]


async def judge(engine: Engine, predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The judge's rating of each prediction, with its raw answers."""
    verdicts: dict[int, dict[str, Any]] = {}

    async def one(index: int, prediction: dict[str, Any]) -> None:
        raw: list[str] = []
        rating = None
        for attempt in range(JUDGE_ATTEMPTS):
            sampling = JUDGE if attempt == 0 else Sampling(**{**JUDGE.__dict__, "temperature": 1.0})
            completion = await engine.request("judge", judge_prompt(prediction), sampling, sample_index=attempt)
            if completion is None:
                break
            raw.append(completion.text)
            if rating := parse_rating(completion.text):
                break
        verdicts[index] = {"id": prediction.get("id"), "rating": rating or "unparsed", "raw": raw}

    await run_all(engine, (one(i, p) for i, p in enumerate(predictions)))
    return [verdicts[i] for i in range(len(predictions))]


def rating_summary(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    counts = Counter(v["rating"] for v in verdicts)
    rated = sum(counts[r] for r in RATINGS)
    return {
        **{r: counts[r] for r in RATINGS},
        "unparsed": counts["unparsed"],
        "A+B %": 100 * (counts["A"] + counts["B"]) / rated if rated else 0.0,
    }


def compare(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, int]:
    """Per-item ROUGE-L wins of the second model over the first (items matched by id)."""
    by_id = {p["id"]: p for p in first}
    wins = ties = losses = 0
    for p in second:
        a = rouge_l_f1(by_id[p["id"]]["target"], by_id[p["id"]]["response"])
        b = rouge_l_f1(p["target"], p["response"])
        wins, ties, losses = wins + (b > a), ties + (b == a), losses + (b < a)
    return {"wins": wins, "ties": ties, "losses": losses}


def _label(model: str, taken: set[str]) -> str:
    path = Path(model)
    label = path.name or model
    if label in taken:  # e.g. two .../merged directories
        label = f"{path.parent.name}/{path.name}"
    return label


def evaluate_models(
    models: list[str],
    out_dir: str | Path,
    eval_set: str | Path | None = None,
    backend: str | None = None,
    base_url: tuple[str, ...] = (),
    judge_with: LMConfig | None = None,
    concurrency: int = 16,
    threads: int | None = None,
) -> dict[str, Any]:
    """Generate predictions of each model on the evaluation set, score them, optionally judge them, and write
    predictions-<label>.jsonl, judgements-<label>.jsonl, scores.json and report.html into out_dir."""
    items = load_eval_set(eval_set)
    configs = [model_config(m, backend, base_url, threads) for m in models]  # errors before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out)
    results: dict[str, Any] = {"eval_set": str(eval_set or default_eval_set()), "models": {}}
    predictions: dict[str, list[dict[str, Any]]] = {}

    async def main() -> None:
        judge_engine = Engine(create_backends(judge_with, 0), store, concurrency=concurrency) if judge_with else None
        try:
            for model, config in zip(models, configs, strict=True):
                label = _label(model, set(predictions))
                engine = Engine(create_backends(config, 0), store, concurrency=concurrency)
                try:
                    rows = await generate(engine, items, label)
                finally:
                    await engine.aclose()  # one model in memory at a time
                predictions[label] = rows
                name = label.replace("/", "_")
                path = out / f"predictions-{name}.jsonl"
                atomic_write(path, _jsonl(rows))
                entry: dict[str, Any] = {"model": model, "backend": config.backend, "predictions": str(path)}
                entry.update(score_predictions([path])[str(path)])
                if judge_engine is not None and judge_with is not None:
                    verdicts = await judge(judge_engine, rows)
                    atomic_write(out / f"judgements-{name}.jsonl", _jsonl(verdicts))
                    entry["judge"] = {"model": judge_with.model or judge_with.backend, **rating_summary(verdicts)}
                results["models"][label] = entry
        finally:
            if judge_engine is not None:
                await judge_engine.aclose()

    try:
        asyncio.run(main())
        labels = list(predictions)
        if len(labels) >= 2:
            results["comparison"] = {
                "first": labels[0],
                "second": labels[1],
                **compare(predictions[labels[0]], predictions[labels[1]]),
            }
        atomic_write(out / "scores.json", json.dumps(results, indent=2) + "\n")
        atomic_write(out / "report.html", render_evaluation(results, predictions))
    finally:
        store.close()
    return results


def judge_files(
    paths: list[str | Path], judge_with: LMConfig, out_dir: str | Path, concurrency: int = 16
) -> dict[str, Any]:
    """Rate the responses of existing prediction files with an LM judge; verdicts go to out_dir."""
    files = {str(p): read_predictions(p) for p in paths}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out)
    summaries: dict[str, Any] = {}

    async def main() -> None:
        engine = Engine(create_backends(judge_with, 0), store, concurrency=concurrency)
        try:
            for path, rows in files.items():
                verdicts = await judge(engine, rows)
                atomic_write(out / f"judgements-{Path(path).stem}.jsonl", _jsonl(verdicts))
                summaries[path] = {"model": judge_with.model or judge_with.backend, **rating_summary(verdicts)}
        finally:
            await engine.aclose()

    try:
        asyncio.run(main())
    finally:
        store.close()
    return summaries


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


@dataclass
class Evaluation:
    """What `selfinstruct evaluate` shows and writes, for prediction files or for models."""

    rows: list[tuple[str, int, float, dict[str, Any] | None]]  # (file or model, n, ROUGE-L, judge's ratings or None)
    scores: dict[str, dict[str, Any]]  # per predictions file: n and ROUGE-L (what --output writes)
    comparison: dict[str, Any] | None = None  # two models: the second's wins/ties/losses against the first
    report: Path | None = None  # the evaluation directory's report.html, for models


def evaluate(
    files: list[str],
    models: list[str],
    out_dir: str | Path | None,
    eval_set: str | Path | None = None,
    backend: str | None = None,
    base_url: tuple[str, ...] = (),
    judge_with: LMConfig | None = None,
    concurrency: int = 16,
) -> Evaluation:
    """Score prediction files (and judge them, when asked), or generate, score and judge the predictions of one or
    two models into out_dir."""
    if files:
        scores = score_predictions(list(files))
        judged = judge_files(list(files), judge_with, out_dir, concurrency) if judge_with and out_dir else {}
        return Evaluation([(p, s["n"], s["rougeL"], judged.get(p)) for p, s in scores.items()], scores)
    if out_dir is None:
        raise ValueError("evaluating models needs an evaluation directory")
    results = evaluate_models(models, out_dir, eval_set, backend, base_url, judge_with, concurrency)
    by_model = results["models"]
    return Evaluation(
        [(label, m["n"], m["rougeL"], m.get("judge")) for label, m in by_model.items()],
        {m["predictions"]: {"n": m["n"], "rougeL": m["rougeL"]} for m in by_model.values()},
        results.get("comparison"),
        Path(out_dir) / "report.html",
    )
