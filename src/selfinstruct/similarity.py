"""ROUGE-L similarity with the same scores as `rouge_score` (rougeL, default tokenizer, no stemming).

Scores are bit-for-bit the reference's: the longest common subsequence is an exact integer (rapidfuzz's
bit-parallel LCS over token sequences) and the F1 is then computed with the reference's own float formula,
so the `> threshold` decision can never differ from rouge_score's, ties included.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import LCSseq

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """rouge_score's default tokenizer without stemming: lower-case, split on anything not [a-z0-9]."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def f1_from_lcs(lcs: int, m: int, n: int) -> float:
    """rouge_score's `fmeasure(precision, recall)` evaluated exactly as it does, in floats."""
    if lcs == 0:  # also covers empty token lists, which the reference scores 0
        return 0.0
    precision = lcs / n
    recall = lcs / m
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """ROUGE-L F1 between two token sequences (symmetric)."""
    if not a or not b:
        return 0.0
    return f1_from_lcs(LCSseq.similarity(a, b), len(a), len(b))


@dataclass(frozen=True)
class Neighbour:
    index: int  # position in the index (insertion order)
    text: str
    score: float


class SimilarityIndex:
    """The pool of instructions a candidate is compared against."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.texts: list[str] = []
        self._tokens: list[list[str]] = []
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str) -> int:
        self.texts.append(text)
        self._tokens.append(tokenize(text))
        return len(self.texts) - 1

    def scores(self, text: str) -> list[float]:
        query = tokenize(text)
        return [rouge_l(query, tokens) for tokens in self._tokens]

    def top_k(self, text: str, k: int) -> list[Neighbour]:
        """The k most similar items, best first (ties: earlier item first)."""
        best = heapq.nlargest(k, enumerate(self.scores(text)), key=lambda item: (item[1], -item[0]))
        return [Neighbour(i, self.texts[i], s) for i, s in best]

    def nearest(self, text: str) -> Neighbour | None:
        top = self.top_k(text, 1)
        return top[0] if top else None
