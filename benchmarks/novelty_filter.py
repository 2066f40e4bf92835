"""Benchmark: the exact novelty filter against rouge_score (the reference) and a rapidfuzz brute-force scan.

    .venv/bin/python benchmarks/novelty_filter.py            # everything (the agreement check takes ~10 min)
    .venv/bin/python benchmarks/novelty_filter.py --agreement-items 2000   # a quicker partial check

Reads ../shared/data/real-instructions/*.json (field `instruction`, files in sorted order) and prints markdown
tables: decision agreement with the reference on every item, wall times, scaling, and memory.

How the reference is checked on every item without its half-hour sequential run: our decisions are verified
item by item with rouge_score's own tokenizer and LCS scorer, in parallel: a kept item must score <= threshold
against every item kept before it, a rejected one > threshold against its reported nearest neighbour. If every
item passes, the reference's sequential run makes the same decisions (by induction on the items).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
import tracemalloc
from multiprocessing import Pool
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import Indel
from rouge_score import rouge_scorer

from selfinstruct.similarity import SimilarityIndex, sequential_filter

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-instructions"
THRESHOLD = 0.7
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def load_corpus() -> list[str]:
    files = sorted(CORPUS.glob("*.json"))
    if not files:
        sys.exit(f"no corpus at {CORPUS}: this benchmark needs ../shared beside the repository")
    return [row["instruction"] for path in files for row in json.loads(path.read_text())]


def timed(function, *args, repeat: int = 1):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def reference_tokens(texts: list[str]) -> list[list[str]]:
    return [SCORER._tokenizer.tokenize(t) for t in texts]


def reference_prefix_time(tokens: list[list[str]], n: int) -> tuple[float, int]:
    """The Alpaca-style loop (rouge_score's _score_lcs against every kept item) on the first n items."""
    kept: list[list[str]] = []
    pairs = 0
    started = time.perf_counter()
    for new in tokens[:n]:
        scores = [rouge_scorer._score_lcs(new, old).fmeasure for old in kept]
        pairs += len(scores)
        if max(scores, default=0.0) <= THRESHOLD:
            kept.append(new)
    return time.perf_counter() - started, pairs


def brute_force(tokens: list) -> list[bool]:
    """A rapidfuzz brute-force scan: extractOne over every kept item (Indel similarity = 2·LCS/(m+n)). Items
    are token lists, or strings with one character per token (the encoding our index uses)."""
    kept: list = []
    decisions = []
    for new in tokens:
        best = (
            process.extractOne(new, kept, scorer=Indel.normalized_similarity, processor=None, score_cutoff=THRESHOLD)
            if new and kept
            else None
        )
        keep = best is None or best[1] <= THRESHOLD
        decisions.append(keep)
        if keep and new:
            kept.append(new)
    return decisions


_shared: dict = {}


def _init(tokens, kept, nearest) -> None:
    _shared.update(tokens=tokens, kept=kept, nearest=nearest)


def _verify(indices: list[int]) -> list[int]:
    """Items whose decision the reference would not make (see the module docstring)."""
    tokens, kept, nearest = _shared["tokens"], _shared["kept"], _shared["nearest"]
    kept_before = [i for i, k in enumerate(kept) if k]
    wrong = []
    for i in indices:
        if kept[i]:
            earlier = (j for j in kept_before if j < i)
            if any(rouge_scorer._score_lcs(tokens[j], tokens[i]).fmeasure > THRESHOLD for j in earlier):
                wrong.append(i)
        elif not rouge_scorer._score_lcs(tokens[nearest[i]], tokens[i]).fmeasure > THRESHOLD:
            wrong.append(i)
    return wrong


def agreement(texts: list[str], decisions, items: int) -> tuple[int, int]:
    tokens = reference_tokens(texts[:items])
    kept = [d.kept for d in decisions[:items]]
    nearest = [d.nearest.index if d.nearest else -1 for d in decisions[:items]]
    # The index numbers kept items in order; map them back to corpus positions.
    kept_positions = [i for i, d in enumerate(decisions) if d.kept]
    nearest = [kept_positions[n] if n >= 0 else -1 for n in nearest]
    chunks = [list(range(start, items, 64)) for start in range(64)]
    with Pool(2, initializer=_init, initargs=(tokens, kept, nearest)) as pool:
        wrong = [i for part in pool.imap_unordered(_verify, chunks) for i in part]
    return items - len(wrong), items


def synthetic(texts: list[str], n: int, seed: int = 0) -> list[str]:
    """n instruction-like texts: real ones with about half their words swapped for other corpus words."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts for w in t.split()})
    out = []
    for _ in range(n):
        words = rng.choice(texts).split()
        out.append(" ".join(rng.choice(vocabulary) if rng.random() < 0.5 else w for w in words))
    return out


def index_memory(texts: list[str]) -> float:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = SimilarityIndex()
    for text in texts:
        index.add(text)
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del index
    return size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agreement-items", type=int, default=None, help="check the first N items only")
    parser.add_argument("--reference-prefix", type=int, default=1500, help="items to time the reference on")
    parser.add_argument("--synthetic", type=int, default=100_000, help="instructions for the memory check")
    args = parser.parse_args()

    texts = load_corpus()
    n = len(texts)
    # Our timings first, while nothing else has run: the machine is noisy, so each is a median of 7.
    ours_time, decisions = timed(sequential_filter, texts, THRESHOLD, repeat=7)
    kept = sum(d.kept for d in decisions)
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    scaling = [
        (
            size,
            timed(sequential_filter, texts[:size], THRESHOLD, repeat=7)[0],
            timed(sequential_filter, shuffled[:size], THRESHOLD, repeat=7)[0],
        )
        for size in (1000, 2000, 4000)
    ]
    scaling.append((n, ours_time, timed(sequential_filter, shuffled, THRESHOLD, repeat=7)[0]))
    tokens = reference_tokens(texts)

    # The reference's cost: time per scored pair on a prefix, times the pairs the full run scores.
    prefix = min(args.reference_prefix, n)
    prefix_time, prefix_pairs = reference_prefix_time(tokens, prefix)
    kept_so_far, total_pairs = 0, 0
    for d in decisions:
        total_pairs += kept_so_far
        kept_so_far += d.kept
    reference_time = prefix_time / prefix_pairs * total_pairs

    brute_time, brute = timed(brute_force, tokens)
    encoder = SimilarityIndex()
    codes = [encoder._code(t) for t in tokens]
    coded_time, coded = timed(brute_force, codes)
    items = min(args.agreement_items or n, n)
    started = time.perf_counter()
    agree, checked = agreement(texts, decisions, items)
    check_time = time.perf_counter() - started
    brute_agree = sum(b == d.kept for b, d in zip(brute, decisions, strict=True))

    print(f"## Novelty filter on {n:,} real instructions (threshold {THRESHOLD}, {kept:,} kept)\n")
    print("| method | wall time | kept | decisions equal to the reference |")
    print("|---|---|---|---|")
    print(
        f"| rouge_score, Alpaca-style loop (reference) | {reference_time:,.0f} s (extrapolated from "
        f"{prefix_time:.1f} s for the first {prefix:,} items) | | |"
    )
    print(
        f"| rapidfuzz `process.extractOne` brute-force scan over token lists | {brute_time:.2f} s | {sum(brute):,} "
        f"| {brute_agree:,} / {n:,} |"
    )
    coded_agree = sum(b == d.kept for b, d in zip(coded, decisions, strict=True))
    print(
        f"| the same scan over one-character-per-token strings | {coded_time:.2f} s | {sum(coded):,} "
        f"| {coded_agree:,} / {n:,} |"
    )
    print(
        f"| selfinstruct `sequential_filter` (median of 7) | **{ours_time:.3f} s** | {kept:,} | "
        f"**{agree:,} / {checked:,}** (checked with rouge_score in {check_time:.0f} s) |"
    )
    print(
        f"\nSpeed-up: {reference_time / ours_time:,.0f}x over the reference, {coded_time / ours_time:.1f}x over "
        "the fastest brute-force scan.\n"
    )

    print("### Scaling (median of 7): the first N instructions, in file order and shuffled\n")
    print("| instructions | wall time | µs per instruction | shuffled: wall time | µs per instruction |")
    print("|---|---|---|---|---|")
    for size, t, t_shuffled in scaling:
        print(f"| {size:,} | {t:.3f} s | {t / size * 1e6:.0f} | {t_shuffled:.3f} s | {t_shuffled / size * 1e6:.0f} |")
    first, last = scaling[0], scaling[-1]
    exponent = math.log(last[2] / first[2]) / math.log(last[0] / first[0])
    print(f"\nShuffled, time grows as N^{exponent:.2f} from {first[0]:,} to {last[0]:,} (1 = linear, 2 = quadratic).")

    tracemalloc.start()
    sequential_filter(texts, THRESHOLD)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    many = synthetic(texts, args.synthetic)
    big_time, big = timed(sequential_filter, many, THRESHOLD)
    memory = index_memory(many)
    print("\n### Memory and a larger corpus\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| peak memory of `sequential_filter` on {n:,} real instructions (tracemalloc) | {peak:.1f} MB |")
    print(f"| index holding {args.synthetic:,} synthetic instructions (tracemalloc) | {memory:.1f} MB |")
    print(f"| `sequential_filter` on those {args.synthetic:,} ({sum(d.kept for d in big):,} kept) | {big_time:.2f} s |")


if __name__ == "__main__":
    main()
