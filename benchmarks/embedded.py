"""Benchmark: the embedded backend (llama.cpp + SmolLM2-135M) decoding several sequences at once.

    .venv/bin/python benchmarks/embedded.py                  # every row, about 5 minutes on 2 cores
    .venv/bin/python benchmarks/embedded.py --bootstrap-requests 8 --classify-instructions 30 --repeat 1

Real prompts, real sampling parameters (the Config defaults), all requests submitted at once with asyncio.gather,
as the engine does:
- bootstrap: prompts of 8 seed instructions (encode_prompt + sample_prompt_instructions), at several `parallel`;
- classify: the classify prompt over the first seed instructions, with and without prefix reuse.

Prints a markdown table. Wall times exclude loading the model; a one-token warm-up request runs first. Each row
is run --repeat times and the fastest run is kept: on a shared machine other processes only ever slow a run
down (llama.cpp's threads spin on each other, so a busy core can cost far more than its share). "CPU" is this
process's CPU time over wall time and cores: under 90% means the run was disturbed, and it is run again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from dataclasses import dataclass

from selfinstruct.config import Config, Sampling
from selfinstruct.lm import Completion
from selfinstruct.lm.llamacpp import LlamaCppLM
from selfinstruct.seeds import load_seed_tasks
from selfinstruct.stages import bootstrap, classify, load_prompt


@dataclass
class Row:
    stage: str
    parallel: int
    reuse: bool
    requests: int
    wall: float
    first: float  # seconds until the first completion
    generated: int
    evaluated: int  # prompt tokens evaluated
    reused: int  # prompt tokens taken from the cache
    cpu: float
    generation_only: float  # tokens/s in the llama_decode calls that carried no prompt token
    texts: list[str]
    same: str = ""  # how many texts equal those of the same stage at parallel 1

    def cells(self) -> list[str]:
        rest = (self.requests - 1) / (self.wall - self.first) if self.requests > 1 and self.wall > self.first else 0
        return [
            self.stage,
            str(self.parallel),
            "yes" if self.reuse else "no",
            str(self.requests),
            f"{self.wall:.1f}",
            f"{self.generated / self.wall:.0f}",
            f"{(self.generated + self.evaluated) / self.wall:.0f}",
            f"{self.generation_only:.0f}",
            f"{self.requests / self.wall:.2f}",
            f"{rest:.2f}",
            f"{self.evaluated} / {self.reused}",
            self.same,
            f"{self.cpu:.0%}",
        ]


HEADER = [
    "stage",
    "parallel",
    "prefix reuse",
    "requests",
    "wall s",
    "generated tok/s",
    "evaluated + generated tok/s",
    "generation-only tok/s",
    "requests/s",
    "requests/s after the first",
    "prompt tokens evaluated / reused",
    "same text as parallel 1",
    "CPU",
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


def bootstrap_prompts(n: int, seed: int) -> list[str]:
    seeds = [task.instruction for task in load_seed_tasks(None)]
    rng = random.Random(seed)
    return [bootstrap.encode_prompt(bootstrap.sample_prompt_instructions(rng, seeds, [], 8, 2)) for _ in range(n)]


def classify_prompts(n: int) -> list[str]:
    prefix = load_prompt("classify.txt")
    return [classify.encode_prompt(prefix, task.instruction) for task in load_seed_tasks(None)[:n]]


async def run_once(lm: LlamaCppLM, prompts: list[str], sampling: Sampling) -> tuple[float, float, list[Completion]]:
    await lm.complete("Hello", Sampling(max_tokens=1), 0)  # warm-up: graph allocation, first-call costs
    started = time.perf_counter()
    first: list[float] = []

    async def one(i: int, prompt: str) -> Completion:
        completion = await lm.complete(prompt, sampling, i)
        first.append(time.perf_counter() - started)
        return completion

    completions = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    return time.perf_counter() - started, min(first), completions


def measure(
    stage: str, prompts: list[str], sampling: Sampling, parallel: int, reuse: bool, repeat: int, quiet_limit: float
) -> Row:
    best: Row | None = None
    clean = attempts = 0
    # A run during which this process got less than 90% of the cores was disturbed: run again (up to 3x repeat).
    while clean < repeat and attempts < 3 * repeat:
        attempts += 1
        wait_for_quiet(quiet_limit)
        lm = LlamaCppLM(parallel=parallel, reuse_prefix=reuse)
        cpu0, stats0 = os.times(), lm.stats()
        wall, first, completions = asyncio.run(run_once(lm, prompts, sampling))
        cpu1, stats1 = os.times(), lm.stats()
        asyncio.run(lm.aclose())
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (wall * (os.cpu_count() or 1))
        row = Row(
            stage,
            parallel,
            reuse,
            len(prompts),
            wall,
            first,
            sum(c.completion_tokens for c in completions),
            int(stats1["prompt_tokens_evaluated"] - stats0["prompt_tokens_evaluated"]),
            int(stats1["prompt_tokens_reused"] - stats0["prompt_tokens_reused"]),
            cpu,
            (stats1["generation_only_tokens"] - stats0["generation_only_tokens"])
            / max(stats1["generation_only_seconds"] - stats0["generation_only_seconds"], 1e-9),
            [c.text for c in completions],
        )
        if row.cpu >= 0.9:
            clean += 1
        if best is None or (row.cpu >= 0.9, -row.wall) > (best.cpu >= 0.9, -best.wall):
            best = row
    assert best is not None
    print("  " + " | ".join(best.cells()), flush=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-requests", type=int, default=32)
    parser.add_argument("--bootstrap-parallel", default="1,4,8,16")
    parser.add_argument("--classify-instructions", type=int, default=100)
    parser.add_argument("--classify-parallel", default="1,8,16")
    parser.add_argument("--no-reuse-instructions", type=int, default=16, help="fewer: each costs ~3 s")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--wait-quiet", type=float, default=300, help="seconds to wait for an idle CPU before a run")
    args = parser.parse_args()
    config = Config()
    rows = []
    prompts = bootstrap_prompts(args.bootstrap_requests, args.seed)
    for parallel in map(int, args.bootstrap_parallel.split(",")):
        rows.append(
            measure("bootstrap", prompts, config.bootstrap.sampling, parallel, True, args.repeat, args.wait_quiet)
        )
    prompts = classify_prompts(args.classify_instructions)
    for parallel in map(int, args.classify_parallel.split(",")):
        rows.append(
            measure("classify", prompts, config.classify.sampling, parallel, True, args.repeat, args.wait_quiet)
        )
    prompts = prompts[: args.no_reuse_instructions]
    rows.append(measure("classify", prompts, config.classify.sampling, 8, False, 1, args.wait_quiet))

    for row in rows:  # same prompts, seeds and sampling: does batching change the text?
        base = next((r for r in rows if r.stage == row.stage and r.parallel == 1), None)
        if base and row is not base and len(base.texts) >= len(row.texts):
            row.same = f"{sum(a == b for a, b in zip(row.texts, base.texts, strict=False))}/{len(row.texts)}"
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" for _ in HEADER) + "|")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


if __name__ == "__main__":
    main()
