"""Benchmark: the embedded model (SmolLM2-135M-Instruct) in completion mode, chat mode, and chat mode with
structured output, side by side on the same seeds.

    .venv/bin/python benchmarks/chat_vs_completion.py                  # 100 instructions per mode, ~12 minutes
    .venv/bin/python benchmarks/chat_vs_completion.py --num-instructions 30 --modes chat

Each mode is a fresh run directory through all four stages with the pipeline's own code. Per stage, read back
from the run store:

- bootstrap: the share of responses with at least one usable candidate (parsed, not cut off), accepted
  instructions per request (repair turns included in the requests), generated tokens/s over the stage;
- classify: the share of first answers that parse (yes or no), and the instructions left unknown;
- instances: the share of tasks with at least one kept instance, and structured answers that parse as JSON;
- repair turns sent per stage (chat only).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from selfinstruct.parsing import json_object
from selfinstruct.pipeline import STAGES, Run
from selfinstruct.stages.classify import parse_answer
from selfinstruct.store import DB_NAME

MODES = {
    "completions": {"lm": {"api": "completions"}},
    "chat": {"lm": {"api": "chat"}},
    "chat+structured": {"lm": {"api": "chat", "structured": "json_schema"}},
}


def measure(run_dir: Path, seconds: dict[str, float]) -> dict[str, str]:
    db = sqlite3.connect(run_dir / DB_NAME)
    one = lambda sql, *args: db.execute(sql, args).fetchone()[0]  # noqa: E731
    requests = one("SELECT COUNT(*) FROM requests WHERE stage IN ('bootstrap', 'bootstrap repair')")
    first = one("SELECT COUNT(*) FROM requests WHERE stage = 'bootstrap' AND status = 'ok'")
    with_candidate = one(
        "SELECT COUNT(DISTINCT r.id) FROM requests r JOIN instructions i ON i.request_id = r.id"
        " WHERE r.stage = 'bootstrap' AND i.reason != 'truncated'"
    )
    accepted = one("SELECT COUNT(*) FROM instructions WHERE origin = 'machine' AND verdict = 'accepted'")
    answers = [t for (t,) in db.execute("SELECT text FROM requests WHERE stage = 'classify' AND sample_index = 0")]
    unknown = one(
        "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted' AND classification='unknown'"
    )
    tasks = one("SELECT COUNT(DISTINCT instruction_id) FROM requests WHERE stage = 'instances'")
    with_kept = one(
        "SELECT COUNT(DISTINCT n.instruction_id) FROM instances n JOIN instructions i ON i.id = n.instruction_id"
        " WHERE i.origin = 'machine' AND n.verdict = 'kept'"
    )
    structured = [
        json.loads(p).get("json_schema") is not None
        for (p,) in db.execute("SELECT params FROM requests WHERE status = 'ok'")
    ]
    texts = [t for (t,) in db.execute("SELECT text FROM requests WHERE status = 'ok'")]
    json_ok = sum(json_object(t) is not None for t, s in zip(texts, structured, strict=True) if s)
    tokens = dict(db.execute("SELECT stage, SUM(completion_tokens) FROM requests GROUP BY stage").fetchall())
    parsed = sum(parse_answer(a) is not None for a in answers)
    repairs = dict(db.execute("SELECT stage, COUNT(*) FROM requests WHERE stage LIKE '% repair' GROUP BY stage"))

    def rate(stage: str) -> str:
        generated = tokens.get(stage, 0) + tokens.get(f"{stage} repair", 0)
        return f"{generated / seconds[stage]:.1f}" if seconds.get(stage) else "-"

    return {
        "bootstrap: responses with >= 1 usable candidate": f"{100 * with_candidate / max(1, first):.1f}%",
        "bootstrap: accepted instructions per request": f"{accepted / max(1, requests):.2f}",
        "bootstrap: generated tokens/s": rate("bootstrap"),
        "bootstrap: repair turns": str(repairs.get("bootstrap repair", 0)),
        "classify: first answers that parse": f"{100 * parsed / max(1, len(answers)):.1f}%",
        "classify: left unknown": f"{unknown} of {accepted}",
        "classify: generated tokens/s": rate("classify"),
        "classify: repair turns": str(repairs.get("classify repair", 0)),
        "instances: tasks with >= 1 kept instance": f"{100 * with_kept / max(1, tasks):.1f}%",
        "instances: generated tokens/s": rate("instances"),
        "instances: repair turns": str(repairs.get("instances repair", 0)),
        "structured answers that parse as JSON": f"{json_ok} of {sum(structured)}" if any(structured) else "-",
        "seconds, all stages": f"{sum(seconds.values()):.0f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-instructions", type=int, default=100)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from: {', '.join(MODES)}")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    columns: dict[str, dict[str, str]] = {}
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            settings = {"num_instructions": args.num_instructions, "seed": args.seed, **MODES[mode]}
            seconds: dict[str, float] = {}
            with Run.open(Path(tmp) / "run", settings) as run:
                run.engine  # noqa: B018 -- load the model before timing
                for stage in STAGES:
                    start = time.perf_counter()
                    getattr(run, stage)()
                    seconds[stage] = time.perf_counter() - start
            columns[mode] = measure(Path(tmp) / "run", seconds)
        print(f"{mode}: done", flush=True)
    rows = list(next(iter(columns.values())))
    print(f"\nembedded SmolLM2-135M-Instruct, {args.num_instructions} instructions per mode, seed {args.seed}\n")
    print("| measure | " + " | ".join(columns) + " |\n|---|" + "---:|" * len(columns))
    for row in rows:
        print(f"| {row} | " + " | ".join(column[row] for column in columns.values()) + " |")


if __name__ == "__main__":
    main()
