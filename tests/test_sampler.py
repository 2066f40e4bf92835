"""The embedded backend's sampler (lm/sampler.py): OpenAI's penalties, temperature and nucleus, exactly.

A brute-force reference (the whole vocabulary sorted) given the same random draw must pick the same token; the
sampler's shortcut only looks at the likeliest tokens first."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from selfinstruct.config import Sampling
from selfinstruct.lm.sampler import Sampler


def reference(logits: np.ndarray, sampling: Sampling, counts: dict[int, int], draw: float) -> int:
    """The whole vocabulary sorted by probability; float32 weights and float64 sums, as the sampler."""
    z = logits.copy()
    for token, n in counts.items():
        z[token] -= np.float32(sampling.presence_penalty + sampling.frequency_penalty * n)
    if sampling.temperature <= 0 or sampling.top_p <= 0:  # greedy; top_p 0 is a nucleus of one
        return int(np.argmax(z))
    weights = np.exp((z - z.max()) / np.float32(sampling.temperature))
    # Without a nucleus, the draw walks the vocabulary in order; with one, by decreasing probability.
    order = np.argsort(-weights, kind="stable") if 0 < sampling.top_p < 1 else np.arange(len(weights))
    cumulative = np.cumsum(weights[order], dtype=np.float64)
    if 0 < sampling.top_p < 1:
        size = int(np.searchsorted(cumulative, sampling.top_p * weights.sum(dtype=np.float64))) + 1
        order, cumulative = order[:size], cumulative[:size]
    index = min(int(np.searchsorted(cumulative, draw * cumulative[-1], side="right")), len(order) - 1)
    return int(order[index])


@settings(max_examples=300, deadline=None)
@given(
    logits=arrays(np.float32, st.integers(2, 400), elements=st.floats(-30, 30, width=32)),
    temperature=st.sampled_from([0.0, 0.3, 0.7, 1.0, 1.7]),
    top_p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
    presence=st.sampled_from([0.0, 2.0]),
    frequency=st.sampled_from([0.0, 0.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_picks_what_a_full_sort_picks(logits, temperature, top_p, presence, frequency, seed) -> None:
    sampling = Sampling(temperature=temperature, top_p=top_p, presence_penalty=presence, frequency_penalty=frequency)
    sampler = Sampler(sampling, seed)
    twin = np.random.default_rng(seed)  # the same stream of draws
    for _ in range(5):
        before = dict(sampler.counts)
        token = sampler.sample(logits)
        draw = twin.random() if temperature > 0 and top_p > 0 else 0.0
        assert token == reference(logits, sampling, before, draw)


def test_the_logits_are_left_unchanged() -> None:
    logits = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    sampler = Sampler(Sampling(presence_penalty=2.0), 0)
    assert [sampler.sample(logits) for _ in range(3)] == [2, 1, 0]  # greedy, each pick penalised afterwards
    assert logits.tolist() == [1.0, 2.0, 3.0]


def test_frequency_penalty_grows_with_each_use() -> None:
    logits = np.array([0.0, 1.2], dtype=np.float32)
    sampler = Sampler(Sampling(frequency_penalty=0.5), 0)
    assert [sampler.sample(logits) for _ in range(4)] == [1, 1, 1, 0]  # 1.2, 0.7, 0.2, then -0.3 < 0


def test_the_nucleus_is_found_when_it_needs_many_unlikely_tokens() -> None:
    # One token at weight 1 and 99,999 at e^-8 (below the first cut of 1e-3) that hold 97% of the mass: the
    # nucleus of 0.5 is the likely token plus the first ~49,000 unlikely ones, ties kept in vocabulary order.
    logits = np.full(100_000, -8.0, dtype=np.float32)
    logits[0] = 0.0
    sampler = Sampler(Sampling(temperature=1.0, top_p=0.5), 7)
    picks = Counter(sampler.sample(logits) for _ in range(4000))
    sampler.counts.clear()
    total = 1 + 99_999 * np.exp(-8.0)
    size = int(np.ceil((0.5 * total - 1) / np.exp(-8.0)))  # unlikely tokens needed to reach top_p
    assert max(picks) <= size < 60_000
    assert picks[0] / 4000 == pytest.approx(1 / (1 + size * np.exp(-8.0)), abs=0.015)


def test_frequencies_follow_the_tempered_nucleus() -> None:
    logits = np.log(np.array([0.4, 0.3, 0.2, 0.1], dtype=np.float32))
    sampler = Sampler(Sampling(temperature=1.0, top_p=0.65), 3)
    picks = Counter(sampler.sample(logits) for _ in range(20_000))
    assert set(picks) == {0, 1}  # 0.4 + 0.3 reaches 0.65
    assert picks[0] / 20_000 == pytest.approx(0.4 / 0.7, abs=0.015)


def test_the_same_seed_gives_the_same_tokens() -> None:
    logits = np.random.default_rng(0).normal(size=5000).astype(np.float32)
    sampling = Sampling(temperature=0.7, top_p=0.9)

    def tokens(seed: int) -> list[int]:
        sampler = Sampler(sampling, seed)
        return [sampler.sample(logits) for _ in range(50)]

    assert tokens(1) == tokens(1) != tokens(2)
    assert tokens(-1) == tokens(2**64 - 1)  # any integer is a seed
