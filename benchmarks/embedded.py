"""Benchmark: the embedded backend (llama.cpp + SmolLM2-135M) in the real bootstrap and classify stages.

    .venv/bin/python benchmarks/embedded.py                       # every row, about 15 minutes on 2 idle cores
    .venv/bin/python benchmarks/embedded.py --num-instructions 100 --rows q8_0:16:4

A row is `weights:parallel:samples_per_prompt` (lm.weights, lm.parallel, bootstrap.samples_per_prompt) and a
fresh run directory: `Run.bootstrap()` until --num-instructions machine instructions are accepted, then
`Run.classify()` over all of them. That is the pipeline's own code (engine, SQLite journal with
synchronous=FULL, filters, novelty index), so the rates are the stages' rates: "generated tok/s" is the
bootstrap stage's completion tokens over its wall time, prompt evaluation and everything else included.
Loading the model is not timed.

The machine must be otherwise idle: llama.cpp's two threads wait on each other, so another process on one core
slows a run far more than its share. Each row waits for an idle CPU first, and is run again (up to twice) when
this process got less than 90% of the cores ("CPU" column).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass

from selfinstruct.pipeline import Run

DEFAULT_ROWS = "original:8:1,q8_0:8:1,q8_0:16:1,q8_0:16:2,q8_0:16:4,q8_0:16:8"
HEADER = [
    "weights",
    "parallel",
    "samples per prompt",
    "bootstrap s",
    "requests",
    "generated tok/s",
    "prompt tokens evaluated / reused",
    "accepted (kept)",
    "accepted/s",
    "classify s",
    "classified/s",
    "CPU",
]


@dataclass
class Row:
    weights: str
    parallel: int
    samples: int
    bootstrap_seconds: float
    requests: int
    generated: int
    evaluated: float
    reused: float
    accepted: int
    candidates: int
    classify_seconds: float
    cpu: float

    def cells(self) -> list[str]:
        return [
            self.weights,
            str(self.parallel),
            str(self.samples),
            f"{self.bootstrap_seconds:.1f}",
            str(self.requests),
            f"{self.generated / self.bootstrap_seconds:.0f}",
            f"{self.evaluated:,.0f} / {self.reused:,.0f}",
            f"{self.accepted} ({self.accepted / max(self.candidates, 1):.0%})",
            f"{self.accepted / self.bootstrap_seconds:.2f}",
            f"{self.classify_seconds:.1f}",
            f"{self.accepted / self.classify_seconds:.1f}",  # the classify stage asks about every accepted one
            f"{self.cpu:.0%}",
        ]


def cpu_idle(seconds: float = 2.0) -> float:
    """The share of CPU time the whole machine spent idle over the next `seconds` (Linux /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(limit: float) -> None:
    """Wait (at most `limit` seconds) until other processes leave the CPU idle: they would slow every row."""
    deadline = time.monotonic() + limit
    while (idle := cpu_idle()) < 0.9:
        if time.monotonic() > deadline:
            print(f"  (the machine is busy: {idle:.0%} idle; measuring anyway)", flush=True)
            return


def measure_once(weights: str, parallel: int, samples: int, num_instructions: int, seed: int) -> Row:
    overrides = {
        "num_instructions": num_instructions,
        "seed": seed,
        "lm": {"weights": weights, "parallel": parallel},
        "bootstrap": {"samples_per_prompt": samples},
    }
    with tempfile.TemporaryDirectory() as out, Run.open(out, overrides) as run:
        engine = run.engine  # loads the model (and converts its weights, the first time): not timed
        (lm,) = run.lm  # type: ignore[misc]
        before, cpu0, started = lm.stats(), os.times(), time.perf_counter()
        run.bootstrap()
        bootstrap_seconds, after = time.perf_counter() - started, lm.stats()
        usage = engine.usage["bootstrap"]
        accepted, candidates = len(run.store.accepted("machine")), run.store.candidate_count()
        started = time.perf_counter()
        run.classify()
        classify_seconds, cpu1 = time.perf_counter() - started, os.times()
    cpu_seconds = cpu1.user + cpu1.system - cpu0.user - cpu0.system
    return Row(
        weights,
        parallel,
        samples,
        bootstrap_seconds,
        usage.requests,
        usage.completion_tokens,
        after["prompt_tokens_evaluated"] - before["prompt_tokens_evaluated"],
        after["prompt_tokens_reused"] - before["prompt_tokens_reused"],
        accepted,
        candidates,
        classify_seconds,
        cpu_seconds / ((bootstrap_seconds + classify_seconds) * (os.cpu_count() or 1)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="weights:parallel:samples_per_prompt, comma-separated")
    parser.add_argument("--num-instructions", type=int, default=500)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--wait-quiet", type=float, default=300, help="seconds to wait for an idle CPU before a row")
    args = parser.parse_args()
    rows = []
    for spec in args.rows.split(","):
        weights, parallel, samples = spec.split(":")
        for _ in range(3):
            wait_for_quiet(args.wait_quiet)
            row = measure_once(weights, int(parallel), int(samples), args.num_instructions, args.seed)
            print("  " + " | ".join(row.cells()), flush=True)
            if row.cpu >= 0.9:
                break
        rows.append(row)
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


if __name__ == "__main__":
    main()
