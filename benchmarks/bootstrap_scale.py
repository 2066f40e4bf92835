"""Benchmark: the bootstrap stage as the pool grows, against a zero-latency endpoint (the client sets the pace).

    .venv/bin/python benchmarks/bootstrap_scale.py                         # to 5,000 and 10,000 instructions
    .venv/bin/python benchmarks/bootstrap_scale.py --sizes 5000,10000,25000,52445

The dev server runs in its own process on 127.0.0.1 and answers bootstrap prompts at once with its synthetic
grammar (7 random words from a small vocabulary: the shared words make it the harder case for the filter). One
run directory grows from size to size; for each segment this process's CPU time per accepted instruction is
reported, and where it went: the novelty decision (`find_similar`), the recorded neighbours (`top_k`, and
`nearest` for text-filter rejects) and the run store.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from throughput import endpoints  # noqa: E402

from selfinstruct.pipeline import Run  # noqa: E402
from selfinstruct.similarity import SimilarityIndex  # noqa: E402
from selfinstruct.store import Store  # noqa: E402

SPENT: Counter[str] = Counter()
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-instructions"


def timed(owner: type, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            SPENT[label] += time.process_time() - start

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5000,10000")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer (0.25: 256/s ideal)")
    parser.add_argument(
        "--real",
        action="store_true",
        help="answer with the 8,475 real instructions of ../shared/data/real-instructions (unique ones run out past "
        "about 8,000 accepted)",
    )
    args = parser.parse_args()
    timed(SimilarityIndex, "find_similar", "novelty filter")
    timed(SimilarityIndex, "top_k", "neighbours")
    timed(Store, "add_candidate", "store")
    rows = []
    server = ["--latency", str(args.latency)]
    if args.real:
        files = sorted(str(p) for p in SHARED.glob("*.json"))
        if not files:
            sys.exit(f"no real instructions in {SHARED}: the --real table needs ../shared beside the repository")
        server += ["--instructions", *files]
    with endpoints(server) as (url,), tempfile.TemporaryDirectory() as tmp:
        before, done = 0, 0
        for size in map(int, args.sizes.split(",")):
            settings = {
                "num_instructions": size,
                "lm": {"backend": "openai", "model": "scripted", "base_url": url, "concurrency": 64},
            }
            SPENT.clear()
            with Run.open(Path(tmp) / "run", settings, allow_config_change=True) as run:
                sent = run.store.next_sample_index("bootstrap")
                wall, cpu = time.perf_counter(), time.process_time()
                run.bootstrap()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                done = len(run.store.accepted("machine"))
                sent = run.store.next_sample_index("bootstrap") - sent
            accepted = done - before
            rows.append((size, accepted, wall, cpu, dict(SPENT), sent / wall))
            before = done
    text = "real instructions" if args.real else "the synthetic grammar"
    print(f"endpoint latency {args.latency * 1000:.0f} ms, concurrency 64, {text}\n")
    print(
        "| pool reached | accepted in segment | wall s | completions/s | CPU ms per accepted | filter | neighbours |",
        end="",
    )
    print(" store |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, accepted, wall, cpu, spent, rate in rows:
        parts = [
            f"{1000 * spent.get(label, 0.0) / max(1, accepted):.2f}"
            for label in ("novelty filter", "neighbours", "store")
        ]
        print(
            f"| {size:,} | {accepted:,} | {wall:.1f} | {rate:.1f} | {1000 * cpu / max(1, accepted):.2f} | "
            + " | ".join(parts)
            + " |"
        )


if __name__ == "__main__":
    main()
