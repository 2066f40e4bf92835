"""Benchmark: the bootstrap stage as the pool grows, against a zero-latency endpoint (the client sets the pace).

    .venv/bin/python benchmarks/bootstrap_scale.py                         # to 5,000 and 10,000 instructions
    .venv/bin/python benchmarks/bootstrap_scale.py --sizes 5000,10000,25000,52445

The dev server runs in its own process on 127.0.0.1 and answers bootstrap prompts at once with its synthetic
grammar (7 random words from a small vocabulary: the shared words make it the harder case for the filter), or with
`--real` with real instructions, mostly spliced (see `python -m selfinstruct.devserver --splice`). One
run directory grows from size to size; for each segment this process's CPU time per accepted instruction is
reported, and where it went: the novelty decision (`find_similar`), the recorded neighbours (`top_k`, and
`nearest` for text-filter rejects) and the run store.

`--replay` runs the stage twice in ordered mode (the same requests, answers and decisions both times): the second
run's similarity index plays back the first run's answers instead of computing them, so its CPU is the client's
with a free novelty filter and free neighbours: the floor any filter could reach on these answers.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import aiohttp  # noqa: E402
from throughput import endpoints  # noqa: E402

from selfinstruct.pipeline import Run  # noqa: E402
from selfinstruct.similarity import SimilarityIndex  # noqa: E402
from selfinstruct.stages.bootstrap import encoder  # noqa: E402
from selfinstruct.stages.prompts import load as load_prompts  # noqa: E402
from selfinstruct.store import Store  # noqa: E402

SPENT: Counter[str] = Counter()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-instructions"


def timed(owner: type, name: str, label: str) -> None:
    original = getattr(owner, name)

    # Wall time inside the call (these calls are CPU-bound and synchronous, so it is their CPU time): reading the
    # process's CPU clock is a system call, whose cost at four calls per candidate showed up in the totals.
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - start

    setattr(owner, name, wrapper)


class Replay:
    """The similarity index's answers, recorded in call order by one run and played back to another (ordered
    mode makes both runs ask the same questions in the same order; each is checked)."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, tuple, object]] = []
        self.playing = False
        self.position = 0

    def wrap(self, name: str) -> None:
        original = getattr(SimilarityIndex, name)

        @functools.wraps(original)
        def wrapper(index, *args):
            if not self.playing:
                answer = original(index, *args)
                self.answers.append((name, args, answer))
                return answer
            asked, asked_args, answer = self.answers[self.position]
            if (asked, asked_args) != (name, args):
                sys.exit(f"replay diverged at call {self.position}: {name}{args} instead of {asked}{asked_args}")
            self.position += 1
            return answer

        setattr(SimilarityIndex, name, wrapper)

    def play(self) -> None:
        self.playing, self.position = True, 0
        SimilarityIndex.add = lambda index, text: 0  # the pool is not needed: every answer is known


def bootstrap_segments(url: str, sizes: list[int], root: Path, ordered: bool) -> tuple[list[tuple], int]:
    """Grow one run directory from size to size; per segment: (size, accepted, candidates per accepted, wall s,
    CPU s, time in each timed part, completions/s). Also the number of requests of the last segment."""
    rows = []
    before, done, judged_before, sent = 0, 0, 0, 0
    for size in sizes:
        settings = {
            "num_instructions": size,
            "lm": {"backend": "openai", "model": "scripted", "base_url": url, "concurrency": 64, "ordered": ordered},
        }
        SPENT.clear()
        with Run.open(root / "run", settings, allow_config_change=True) as run:
            sent = run.store.next_sample_index("bootstrap")
            wall, cpu = time.perf_counter(), time.process_time()
            run.bootstrap()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            done = len(run.store.accepted("machine"))
            judged = done + sum(run.store.reject_reasons().values())
            sent = run.store.next_sample_index("bootstrap") - sent
        accepted = done - before
        rows.append((size, accepted, (judged - judged_before) / max(1, accepted), wall, cpu, dict(SPENT), sent / wall))
        before, judged_before = done, judged
    return rows, sent


def print_table(rows: list[tuple]) -> None:
    print("| pool reached | accepted in segment | candidates per accepted | wall s | completions/s |", end="")
    print(" CPU ms per accepted | filter | neighbours | store | CPU ms per candidate |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, accepted, per_accepted, wall, cpu, spent, rate in rows:
        candidates = per_accepted * max(1, accepted)
        parts = [
            f"{1000 * spent.get(label, 0.0) / max(1, accepted):.2f}"
            for label in ("novelty filter", "neighbours", "store")
        ]
        print(
            f"| {size:,} | {accepted:,} | {per_accepted:.2f} | {wall:.1f} | {rate:.1f} | "
            f"{1000 * cpu / max(1, accepted):.2f} | "
            + " | ".join(parts)
            + f" | {1000 * cpu / max(1, candidates):.2f} |"
        )
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        growth = (last[4] / max(1, last[1])) / (first[4] / max(1, first[1]))
        print(f"\nCPU per accepted instruction, {last[0]:,} against {first[0]:,}: {growth:.2f}x")


async def _no_op_client(url: str, requests: int, concurrency: int = 64) -> float:
    """Completions/s of a client that does nothing but send bootstrap prompts and read the answers: the most any
    client gets from this server on this machine (the server and the machine add their own latency)."""
    prompt = encoder(load_prompts(), chat=False)([f"Describe the thing number {i}." for i in range(8)])
    body = {"model": "scripted", "prompt": prompt, "max_tokens": 1024, "temperature": 0.7, "top_p": 0.5}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        slots = asyncio.Semaphore(concurrency)

        async def one(seed: int) -> None:
            async with slots, session.post(url + "/completions", json={**body, "seed": seed}) as response:
                await response.json()

        started = time.perf_counter()
        await asyncio.gather(*(one(seed) for seed in range(requests)))
        return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer (0.25: 256/s ideal)")
    parser.add_argument(
        "--real",
        action="store_true",
        help="answer with real text: the 8,475 instructions of ../shared/data/real-instructions, most of them spliced "
        "(the head of one joined to the tail of another: real word frequencies, and new text never runs out)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="ordered mode, twice: the second run replays the similarity index's answers (a free filter: the floor)",
    )
    args = parser.parse_args()
    replay = Replay()
    if args.replay:
        for name in ("find_similar", "top_k"):  # `nearest` asks `top_k`
            replay.wrap(name)
    timed(SimilarityIndex, "find_similar", "novelty filter")
    timed(SimilarityIndex, "top_k", "neighbours")
    timed(Store, "add_candidate", "store")
    server = ["--latency", str(args.latency)]
    if args.real:
        files = sorted(str(p) for p in SHARED.glob("*.json"))
        if not files:
            sys.exit(f"no real instructions in {SHARED}: the --real table needs ../shared beside the repository")
        server += ["--splice", "--instructions", *files]
    sizes = [int(size) for size in args.sizes.split(",")]
    with endpoints(server) as (url,), tempfile.TemporaryDirectory() as tmp:
        rows, sent = bootstrap_segments(url, sizes, Path(tmp) / "computed", args.replay)
        if args.replay:
            replay.play()
            replayed, _ = bootstrap_segments(url, sizes, Path(tmp) / "replayed", True)
            if replay.position != len(replay.answers):
                sys.exit(f"replay asked {replay.position} of {len(replay.answers)} recorded questions")
        ceiling = asyncio.run(_no_op_client(url, sent)) if args.latency else None
    text = "real instructions" if args.real else "the synthetic grammar"
    mode = ", ordered" if args.replay else ""
    print(f"endpoint latency {args.latency * 1000:.0f} ms, concurrency 64{mode}, {text}\n")
    print_table(rows)
    if args.replay:
        print("\nThe same run again, the similarity index's answers replayed (a free novelty filter and neighbours):\n")
        print_table(replayed)
    if ceiling:
        ideal = 64 / args.latency
        size, rate = rows[-1][0], rows[-1][-1]
        print(
            f"\nTo {size:,}: {rate:.1f} completions/s, {rate / ideal:.0%} of the ideal {ideal:.0f}/s. A client that "
            f"only sends and reads ({sent:,} requests, same server, same concurrency) gets {ceiling:.1f}/s "
            f"({ceiling / ideal:.0%} of the ideal): the bootstrap reaches {rate / ceiling:.0%} of what any client "
            "gets here."
        )


if __name__ == "__main__":
    main()
