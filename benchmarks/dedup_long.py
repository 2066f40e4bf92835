"""Benchmark: `selfinstruct dedup` on long texts, end to end, against a brute-force rapidfuzz scan.

    .venv/bin/python benchmarks/dedup_long.py

Long texts, as in word problems and tool-use prompts: each row of ../shared/data/real-instructions/*.json as
instruction + input + the start of its output, cut to its first 40-60 words (rows shorter than 40 words are left
out). Many function words are shared, and the rare words are few among many: the hard case for prefix filtering.

The CLI runs in a fresh process (start-up, reading, writing included), median of 5. The brute-force scan is the
fastest one in benchmarks/novelty_filter.py: rapidfuzz `extractOne` over one-character-per-token strings, against
every kept text, timed alone (no start-up, no reading). Both must keep exactly the same rows.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from novelty_filter import CORPUS, THRESHOLD, brute_force  # noqa: E402

from selfinstruct.similarity import SimilarityIndex, tokenize  # noqa: E402


def long_texts() -> list[str]:
    files = sorted(CORPUS.glob("*.json"))
    if not files:
        sys.exit(f"no corpus at {CORPUS}: this benchmark needs ../shared beside the repository")
    rng = random.Random(0)
    texts = []
    for path in files:
        for row in json.loads(path.read_text()):
            parts = [row["instruction"], row.get("input") or "", row.get("output") or row.get("response") or ""]
            words = " ".join(parts).split()
            if len(words) >= 40:
                texts.append(" ".join(words[: rng.randint(40, 60)]))
    return texts


def main() -> None:
    texts = long_texts()
    lengths = [len(tokenize(t)) for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "long.jsonl", Path(tmp) / "kept.jsonl"
        source.write_text("".join(json.dumps({"instruction": t}) + "\n" for t in texts))
        command = [sys.executable, "-m", "selfinstruct", "dedup", str(source), "--output", str(out)]
        times = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        startup = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "selfinstruct", "dedup", "--help"], check=True, capture_output=True)
            startup.append(time.perf_counter() - started)
        kept = [json.loads(line)["instruction"] for line in out.read_text().splitlines()]
    encoder = SimilarityIndex()
    codes = [encoder._code(tokenize(t)) for t in texts]
    brute_times = []
    for _ in range(3):
        started = time.perf_counter()
        decisions = brute_force(codes)
        brute_times.append(time.perf_counter() - started)
    brute_kept = [t for t, keep in zip(texts, decisions, strict=True) if keep]
    ours, brute = statistics.median(times), statistics.median(brute_times)
    print(
        f"## `selfinstruct dedup` on {len(texts):,} long texts ({min(lengths)}-{max(lengths)} tokens, median "
        f"{statistics.median(lengths):.0f}; threshold {THRESHOLD})\n"
    )
    print("| method | wall time | kept |")
    print("|---|---:|---:|")
    print(f"| rapidfuzz `extractOne` brute-force scan (median of 3, scan only) | {brute:.2f} s | {len(brute_kept):,} |")
    print(f"| `selfinstruct dedup`, end to end (median of 5) | **{ours:.2f} s** | {len(kept):,} |")
    print(f"| of which the CLI's start-up (`dedup --help`, median of 5) | {statistics.median(startup):.2f} s | |")
    print(f"\nSpeed-up: **{brute / ours:.1f}x** over the brute-force scan; same rows kept: {kept == brute_kept}.")


if __name__ == "__main__":
    main()
