"""Benchmark: chat answers of every shape, through all four stages.

    .venv/bin/python benchmarks/chat_shapes.py                     # 200 instructions, about a minute
    .venv/bin/python benchmarks/chat_shapes.py --num-instructions 50

Starts the dev server on 127.0.0.1 in chat mode (every shape of selfinstruct.chatshapes, one drawn per request)
and runs the whole pipeline against it with `--backend openai --api chat` into a fresh run directory. Then it
reads the run store: for every stored response it recomputes what the scripted model meant to say and the shape
it said it in (chatshapes.intended), and checks what the parsers recovered:

- bootstrap: the intended tasks found among the candidates stored for that response;
- classify: the first answer's verdict equals the intended one;
- instances: the intended pairs among the instances parsed from the response without a problem.

And the three things that must never happen: a preamble or closing remark accepted as an instruction, a
classification left unknown (target at most 2%), a kept instance with a marker line or markdown left in it.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from selfinstruct.chatshapes import CLOSINGS, PREAMBLES, intended
from selfinstruct.devserver import DevServer, ServerConfig
from selfinstruct.lm import Completion
from selfinstruct.parsing import is_chatter
from selfinstruct.pipeline import Run
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import MARKER_LINE, parse_instances
from selfinstruct.store import DB_NAME

MARKDOWN = re.compile(r"\*\*|__|^#{1,6} |^[-*] ", re.MULTILINE)


def measure(run_dir: Path) -> tuple[dict[tuple[str, str], list[int]], dict[str, float]]:
    db = sqlite3.connect(run_dir / DB_NAME)
    db.row_factory = sqlite3.Row
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])  # responses, intended, recovered
    candidates = defaultdict(set)
    for row in db.execute("SELECT request_id, text FROM instructions WHERE origin = 'machine'"):
        candidates[row["request_id"]].add(row["text"])
    classification = dict(db.execute("SELECT id, classification FROM instructions").fetchall())
    for row in db.execute("SELECT * FROM requests WHERE status = 'ok' AND messages IS NOT NULL"):
        messages, seed = json.loads(row["messages"]), json.loads(row["params"])["seed"]
        plan = intended(messages, seed)
        if plan is None or (row["stage"] == "classify" and row["sample_index"] > 0):
            continue
        if plan.stage == "bootstrap":
            found = sum(item in candidates[row["id"]] for item in plan.items)
        elif plan.stage == "classify":
            found = int(parse_answer(row["text"]) == plan.items[0])
        else:
            clf = plan.stage == "instances_classification"
            completion = Completion(row["text"], row["finish_reason"], 0, 0)
            parsed = {(i, o) for i, o, problem in parse_instances(completion, clf) if not problem}
            found = sum(((i, label) if clf else (label, i)) in parsed for label, i in plan.items)
        entry = counts[plan.stage, plan.shape]
        entry[0] += 1
        entry[1] += 1 if plan.stage == "classify" else len(plan.items)
        entry[2] += found
    accepted = [t for (t,) in db.execute("SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted'")]
    chatter = {t.rstrip(":.!") for t in PREAMBLES + CLOSINGS}
    machine = [
        c
        for i, c in classification.items()
        if i
        in {r[0] for r in db.execute("SELECT id FROM instructions WHERE origin = 'machine' AND verdict = 'accepted'")}
    ]
    kept = db.execute(
        "SELECT n.input, n.output FROM instances n JOIN instructions i ON i.id = n.instruction_id"
        " WHERE i.origin = 'machine' AND n.verdict = 'kept'"
    ).fetchall()
    summary = {
        "accepted instructions": len(accepted),
        "chatter accepted": sum(t.rstrip(":.!") in chatter or is_chatter(t) for t in accepted),
        "classify unknown %": 100 * sum(c == "unknown" for c in machine) / max(1, len(machine)),
        "kept machine instances": len(kept),
        "kept with marker or markdown": sum(
            bool(MARKER_LINE.search(x) or MARKDOWN.search(x)) for pair in kept for x in pair
        ),
    }
    return counts, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-instructions", type=int, default=200)
    args = parser.parse_args()
    with DevServer(ServerConfig()) as server, tempfile.TemporaryDirectory() as tmp:
        settings = {
            "num_instructions": args.num_instructions,
            "lm": {"backend": "openai", "api": "chat", "model": "scripted", "base_url": server.base_url},
        }
        start = time.perf_counter()
        with Run.open(Path(tmp) / "run", settings) as run:
            run.run_all()
        seconds = time.perf_counter() - start
        counts, summary = measure(Path(tmp) / "run")
    print(f"dev server, chat API, {args.num_instructions} instructions, all stages: {seconds:.1f} s\n")
    print("| stage | shape | responses | intended items | recovered | share |\n|---|---|---:|---:|---:|---:|")
    worst = 100.0
    for (stage, shape), (responses, wanted, found) in sorted(counts.items()):
        share = 100 * found / wanted if wanted else 100.0
        worst = min(worst, share)
        print(f"| {stage} | {shape} | {responses} | {wanted} | {found} | {share:.1f}% |")
    print(f"\n{len(counts)} shapes; the lowest share recovered: {worst:.1f}% (target: at least 95% in every shape)\n")
    print("| measure | value | target |\n|---|---:|---|")
    targets = {
        "chatter accepted": "0",
        "classify unknown %": "at most 2",
        "kept with marker or markdown": "0",
    }
    for key, value in summary.items():
        print(
            f"| {key} | {value:.1f} | {targets.get(key, '')} |"
            if isinstance(value, float)
            else f"| {key} | {value} | {targets.get(key, '')} |"
        )


if __name__ == "__main__":
    main()
