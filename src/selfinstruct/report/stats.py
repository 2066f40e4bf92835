"""The paper's analyses of a run (§3.2): Table 1, the filter funnel, length and similarity distributions,
verb-noun diversity, and request statistics. Pure functions of the run store, shared by `selfinstruct stats`,
the HTML report and the dataset card."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from selfinstruct.lmtypes import Prices
from selfinstruct.similarity import SimilarityIndex
from selfinstruct.store import Store

EXAMPLES_PER_REASON = 3


def words(text: str) -> int:
    return len(text.split())


def _mean(values: list[int]) -> float:
    return statistics.fmean(values) if values else 0.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Funnel:
    total: int
    kept: int
    dropped: dict[str, int]  # reason -> count, largest first
    examples: dict[str, list[str]]  # reason -> a few dropped texts


@dataclass
class RunStats:
    table1: dict[str, float]
    instruction_funnel: Funnel
    instance_funnel: Funnel
    seed_similarity: list[float]  # each accepted instruction's highest ROUGE-L against the seeds
    instruction_lengths: list[int]
    input_lengths: list[int]  # non-empty inputs
    output_lengths: list[int]
    requests: list[dict[str, Any]] = field(default_factory=list)
    replicas: list[dict[str, Any]] = field(default_factory=list)  # per replica that answered or failed a request


def _funnel(rows: list[dict[str, Any]], kept_value: str, text_key: str, always: tuple[str, ...] = ()) -> Funnel:
    """Counts per drop reason, largest first; the reasons in `always` are listed even at 0."""
    dropped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for row in rows:
        if row["verdict"] == kept_value:
            continue
        reason = (row["reason"] or "unknown").split(" (")[0]
        dropped[reason] += 1
        if len(examples.setdefault(reason, [])) < EXAMPLES_PER_REASON:
            examples[reason].append(row[text_key])
    kept = sum(1 for row in rows if row["verdict"] == kept_value)
    counts = dict(dropped.most_common())
    counts.update({reason: 0 for reason in always if reason not in counts})
    return Funnel(len(rows), kept, counts, examples)


def request_stats(store: Store) -> list[dict[str, Any]]:
    """Per stage: the journal's counts and tokens, latency percentiles, answered requests per second of the
    stage's span (first request to last answer), and the cost at the run's configured prices (None if unset)."""
    latencies = store.latencies()
    lm = json.loads(store.get_meta("config") or "{}").get("lm", {})
    prices = Prices(lm.get("price_input") or 0.0, lm.get("price_output") or 0.0)
    priced = bool(prices.input or prices.output)
    rows = []
    for r in store.request_stats():
        seconds = latencies.get(r["stage"], [])
        span = r["span"] or 0.0
        rows.append(
            {
                **r,
                "p50": percentile(seconds, 50),
                "p90": percentile(seconds, 90),
                "p99": percentile(seconds, 99),
                "per_second": r["ok"] / span if span > 0 else 0.0,
                "cost": prices.cost(r["prompt_tokens"], r["completion_tokens"]) if priced else None,
            }
        )
    return rows


def replica_stats(store: Store) -> list[dict[str, Any]]:
    """Per replica (a --base-url endpoint, a Ray actor, the in-process model): answered and failed requests,
    tokens, latency percentiles and its share of the answers."""
    latencies = store.latencies(by="replica")
    rows = store.replica_stats()
    answered = sum(r["ok"] for r in rows) or 1
    return [
        {
            **r,
            "share": r["ok"] / answered,
            "p50": percentile(latencies.get(r["replica"], []), 50),
            "p90": percentile(latencies.get(r["replica"], []), 90),
        }
        for r in rows
    ]


def compute(store: Store) -> RunStats:
    machine = store.accepted("machine")
    instances = [r for r in store.instances() if r["origin"] == "machine"]
    kept = [r for r in instances if r["verdict"] == "kept"]
    table1 = {
        "instructions": len(machine),
        "classification instructions": sum(1 for i in machine if i.classification == "yes"),
        "non-classification instructions": sum(1 for i in machine if i.classification == "no"),
        "instructions with unknown classification": sum(1 for i in machine if i.classification == "unknown"),
        "instances": len(kept),
        "instances with empty input": sum(1 for r in kept if not r["input"].strip()),
        "mean instruction length (words)": _mean([words(i.text) for i in machine]),
        "mean non-empty input length (words)": _mean([words(r["input"]) for r in kept if r["input"].strip()]),
        "mean output length (words)": _mean([words(r["output"]) for r in kept]),
    }
    seeds = SimilarityIndex(i.text for i in store.accepted("seed"))
    seed_similarity = [(seeds.nearest(i.text).score if len(seeds) else 0.0) for i in machine]
    return RunStats(
        table1=table1,
        instruction_funnel=_funnel(store.candidate_rows(), "accepted", "text"),
        # The format-marker safety net is always shown: 0 is the figure to see.
        instance_funnel=_funnel(instances, "kept", "output", always=("marker_in_text",)),
        seed_similarity=seed_similarity,
        instruction_lengths=[words(i.text) for i in machine],
        input_lengths=[words(r["input"]) for r in kept if r["input"].strip()],
        output_lengths=[words(r["output"]) for r in kept],
        requests=request_stats(store),
        replicas=replica_stats(store),
    )


def steering(config: dict[str, Any]) -> list[tuple[str, str]]:
    """What steered a run's data, from its stored config, for the report and the dataset card."""
    prompts = config.get("prompts") or {}
    digest = prompts.get("hash") or "?"
    if prompts.get("dir"):
        source = f"the package's, with the files of {prompts['dir']} in their place (hash {digest})"
    else:
        source = f"the package's defaults (hash {digest})"
    lines = [("Prompt files", source)]
    for stage in ("bootstrap", "instances"):
        if guidance := (config.get(stage) or {}).get("guidance"):
            lines.append((f"Guidance ({stage})", guidance))
    return lines
