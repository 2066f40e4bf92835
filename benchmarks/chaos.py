"""Chaos: SIGKILL `selfinstruct run` at random moments in every stage, resume, repeat, then check that nothing
was lost, duplicated or paid for twice.

    .venv/bin/python benchmarks/chaos.py                 # 20 trials, 3 kills each, 10% injected faults
    .venv/bin/python benchmarks/chaos.py --trials 5 --fault-rate 0.3

Each trial runs the real CLI in a subprocess against the project's dev server (an OpenAI-compatible server on
127.0.0.1 with a small latency and a fault mix), kills it with SIGKILL while a randomly chosen stage is in
flight, resumes, and so on; a last run completes. Then, per trial:

- the target count is met, no instruction text is accepted twice;
- every accepted instruction passes every filter, and the novelty filter replayed over the pool keeps them all;
- no request whose response was stored before a kill was sent again afterwards (audit log of every send);
- every stored response was used (its candidates, classification or instances exist);
- PRAGMA integrity_check is ok; the exports are complete and parse.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfinstruct.devserver import DevServer, ServerConfig
from selfinstruct.filters import check_instruction, instruction_filters
from selfinstruct.lm import Completion
from selfinstruct.similarity import sequential_filter
from selfinstruct.stages.bootstrap import parse_instructions
from selfinstruct.stages.prepare import parse_instances
from selfinstruct.store import DB_NAME

STAGES = ("bootstrap", "classify", "instances")


def query(db_path: Path, sql: str) -> list[tuple]:
    if not db_path.exists():
        return []
    with sqlite3.connect(db_path, timeout=30) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def start(out: Path, url: str, target: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfinstruct.cli",
            "run",
            "--out",
            str(out),
            "--backend",
            "openai",
            "--base-url",
            url,
            "--model",
            "scripted",
            "--num-instructions",
            str(target),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def trial(root: Path, url: str, rng: random.Random, kills: int, target: int) -> dict[str, int]:
    out = root / "run"
    db = out / DB_NAME
    log = root / "sent.log"
    env = {**os.environ, "SELFINSTRUCT_SEND_LOG": str(log), "OPENAI_API_KEY": "sk-chaos"}
    snapshots = []  # (keys stored before the kill, sends logged by then)
    kill_stages = []
    for _ in range(kills):
        stage = rng.choice(STAGES)
        proc = start(out, url, target, env)
        deadline = time.monotonic() + 60
        # Wait until the chosen stage has work in flight (or the run ends), then a random moment more.
        while proc.poll() is None and time.monotonic() < deadline:
            if query(db, f"SELECT COUNT(*) FROM requests WHERE stage = '{stage}'") not in ([], [(0,)]):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            # Name the stage that really was in flight: the one of the newest request (or none yet).
            last = query(db, "SELECT stage FROM requests ORDER BY id DESC LIMIT 1")
            kill_stages.append(last[0][0] if last else "start-up")
        proc.wait()
        keys = {k for (k,) in query(db, "SELECT key FROM requests WHERE status = 'ok'")}
        snapshots.append((keys, len(log.read_text().splitlines()) if log.exists() else 0))
    for _ in range(5):  # the final run; a request that failed all its retries is retried by the next run
        if start(out, url, target, env).wait() == 0 and query(
            db, "SELECT COUNT(*) FROM requests WHERE status != 'ok'"
        ) == [(0,)]:
            break

    sent = log.read_text().splitlines()
    resent = sum(len(keys & set(sent[offset:])) for keys, offset in snapshots)
    accepted = [
        t
        for (t,) in query(db, "SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id")
    ]
    seeds = [t for (t,) in query(db, "SELECT text FROM instructions WHERE origin='seed' ORDER BY id")]
    filters = instruction_filters(4, 150)
    invalid = sum(not check_instruction(t, filters)[0] for t in accepted)
    invalid += sum(not d.kept for d in sequential_filter(accepted, 0.7, seeds))
    unused = 0
    for text, finish, n_candidates in query(
        db,
        "SELECT r.text, r.finish_reason, (SELECT COUNT(*) FROM instructions i"
        " WHERE i.request_id = r.id) FROM requests r WHERE r.stage='bootstrap'"
        " AND r.status='ok'",
    ):
        unused += n_candidates != len(parse_instructions(Completion(text, finish, 0, 0)))
    unused += query(
        db, "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted' AND classification IS NULL"
    )[0][0]
    for text, finish, clf, n_instances in query(
        db,
        "SELECT r.text, r.finish_reason, i.classification, (SELECT COUNT(*) FROM instances n WHERE n.request_id = r.id)"
        " FROM requests r JOIN instructions i ON i.id = r.instruction_id WHERE r.stage='instances' AND r.status='ok'",
    ):  # an empty answer yields no instances, and that is using it
        unused += n_instances != len(parse_instances(Completion(text, finish, 0, 0), clf == "yes"))
    alpaca = json.loads((out / "export" / "alpaca_data.json").read_text())
    kept = query(db, "SELECT COUNT(*) FROM instances WHERE verdict='kept'")[0][0]
    return {
        "kills": len(kill_stages),
        **{f"killed in {s}": kill_stages.count(s) for s in ("start-up", *STAGES)},
        "target met": int(len(accepted) >= target),
        "lost (unfinished requests)": query(db, "SELECT COUNT(*) FROM requests WHERE status != 'ok'")[0][0],
        "duplicated instructions": len(accepted) - len(set(accepted)),
        "invalid accepted": invalid,
        "stored responses re-sent": resent,
        "stored responses unused": unused,
        "integrity ok": int(query(db, "PRAGMA integrity_check") == [("ok",)]),
        "exports complete": int(len(alpaca) == kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3, help="kills per trial before the final run")
    parser.add_argument("--target", type=int, default=30, help="instructions per run")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="faults injected by the dev server")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    config = ServerConfig(latency=0.02, fault_rate=args.fault_rate, slow_seconds=3.0, seed=args.seed)
    totals: dict[str, int] = {}
    started = time.perf_counter()
    with DevServer(config) as server:
        for _ in range(args.trials):
            with tempfile.TemporaryDirectory() as tmp:
                for key, value in trial(Path(tmp), server.base_url, rng, args.kills, args.target).items():
                    totals[key] = totals.get(key, 0) + value
        faults = sum(server.counts.values()) - server.counts["ok"]
        served = sum(server.counts.values())
    elapsed = time.perf_counter() - started
    print(
        f"## Chaos: {args.trials} trials × {args.kills} SIGKILLs, {args.target} instructions each, "
        f"{args.fault_rate:.0%} injected faults\n"
    )
    print("| measure | total |")
    print("|---|---|")
    for key, value in totals.items():
        expected = {"target met": args.trials, "integrity ok": args.trials, "exports complete": args.trials}
        mark = "" if key.startswith(("kills", "killed")) else (" ✓" if value == expected.get(key, 0) else " ✗")
        print(f"| {key} | {value}{mark} |")
    print(f"| HTTP requests served (faults injected) | {served} ({faults}) |")
    print(f"\n{elapsed:.0f} s in all.")


if __name__ == "__main__":
    main()
