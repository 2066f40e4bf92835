"""Exact, fast ROUGE-L novelty filtering: the same decisions as `rouge_score`, without its quadratic cost.

Scores. rouge_score's rougeL F1 (default tokenizer, no stemming) of token sequences of lengths m and n with
longest common subsequence L is 2·P·R/(P+R), P = L/n, R = L/m. We compute L exactly (rapidfuzz's bit-parallel
LCS, on strings in which every distinct token is one character) and then evaluate the reference's own float
formula (`f1_from_lcs`), so every score equals the reference's bit for bit, and `score > threshold` can never
decide differently, ties included.

Speed. A pair can only score above threshold t if L >= need(m, n), the smallest integer with 2L >= t(m+n)
(less a margin of 1e-9, so that every float tie stays a candidate). Since L <= min(m, n), that bounds the
lengths a query can match. Since L is at most the overlap of the two token multisets, prefix filtering applies:
view each text as a set of elements (the k-th repeat of a token is its own element), sort the elements by one
global order, rarest first; two sets sharing at least `a` elements share one among the first |x|-a+1 of each.
So each indexed item posts only its prefix (sized for the smallest overlap any partner could need), a query
probes only with its own prefix, and a positional filter drops pairs whose first shared element comes too late
to leave room for `need` shared elements. Only the surviving candidates get an LCS, all in one C++ call. Every
item scoring above t survives the filters, so the result is exact.

The global order is the elements' frequency in the corpus when it is known in advance (`sequential_filter`);
a streaming index (the bootstrap stage) ranks elements by first sight, later taken as rarer: common words show
up early, and any fixed order is correct, only slower.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Indel, LCSseq

_ALNUM_RUN = re.compile(r"[a-z0-9]+")
# CJK ideographs, kana and Hangul are one token per character; other Unicode letters and digits form words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNICODE_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")
_MARGIN = 1e-9
_LONGEST = 1 << 20  # in tokens: a bound on lengths for thresholds so low that any length could match


def tokenize(text: str) -> list[str]:
    """rouge_score's default tokenizer without stemming: lower-case, split on anything not [a-z0-9].

    Text in non-Latin scripts yields no tokens at all, so it scores 0 against everything (see
    `tokenize_unicode`)."""
    return _ALNUM_RUN.findall(text.lower())  # the same tokens as its sub("[^a-z0-9]+", " ").split()


def tokenize_unicode(text: str) -> list[str]:
    """Opt-in multilingual tokenizer: Unicode words, and each CJK character as a token. Identical to
    `tokenize` on ASCII text apart from "_", which rouge_score treats as a separator and so does this."""
    return _UNICODE_TOKEN.findall(text.lower())


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"rouge": tokenize, "unicode": tokenize_unicode}


def f1_from_lcs(lcs: int, m: int, n: int) -> float:
    """rouge_score's `fmeasure(precision, recall)` evaluated exactly as it does, in floats."""
    if lcs == 0:  # also covers empty token lists, which the reference scores 0
        return 0.0
    precision = lcs / n
    recall = lcs / m
    return 2 * precision * recall / (precision + recall)


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 between two token sequences (symmetric)."""
    if not a or not b:
        return 0.0
    return f1_from_lcs(LCSseq.similarity(a, b), len(a), len(b))


@lru_cache(maxsize=1 << 16)
def need(m: int, n: int, threshold: float) -> int:
    """The smallest LCS with which lengths m and n could score above `threshold` (at least 1)."""
    return max(1, math.ceil((threshold - _MARGIN) * (m + n) / 2))


@lru_cache(maxsize=65536)
def _bounds(m: int, threshold: float) -> tuple[int, int, int]:
    """For a sequence of length m: the smallest overlap any partner needs (0: no partner can score above
    threshold) and the range of partner lengths that can (lo, hi)."""
    if m == 0 or need(m, m, threshold) > m:
        return 0, 1, 0
    lo = m
    while lo > 1 and need(m, lo - 1, threshold) <= lo - 1:
        lo -= 1
    # The largest n with need(m, n) <= m is about 2m/t - m (unbounded as t nears 0); settle it exactly.
    t = threshold - _MARGIN
    hi = _LONGEST if t <= 0 else min(_LONGEST, max(m, int(2 * m / t) - m + 1))
    while hi > m and need(m, hi, threshold) > m:
        hi -= 1
    return need(m, lo, threshold), lo, hi


_WIDTH = 256  # lengths are looked up capped at _WIDTH - 1, which stands for "this long or longer"
_BATCH = 32  # items scored at once by `top_k`, in decreasing order of their bound (later batches double)


_EMPTY = array("q")
_ROW_STARTS = np.arange(0, 1 << 24, _WIDTH, dtype=np.int64)  # i * _WIDTH for query positions i


@lru_cache(maxsize=4096)
def _position_table(m: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """For a length-m query: a flat table indexed by i * _WIDTH + min(n, _WIDTH - 1), the last position j in a
    length-n partner's prefix at which a shared element, at position i of the query's, can still be one of the
    first two shared elements of a pair with need(m, n) shared elements (i <= m - need + 1, j <= n - need + 1);
    -1 where none can, or n is not feasible. And, by capped n, whether need(m, n) is 1 (one shared element
    suffices, so one posting entry makes a candidate)."""
    _, lo, hi = _bounds(m, threshold)
    table = np.full((m, _WIDTH), -1, dtype=np.int64)
    single = np.zeros(_WIDTH, dtype=bool)
    for n in range(lo, min(hi, _WIDTH - 2) + 1):
        needed = need(m, n, threshold)
        table[: max(0, m - needed + 2), n] = n - needed + 1
        single[n] = needed == 1
    if hi >= _WIDTH - 1:
        table[:, _WIDTH - 1] = 1 << 20  # capped lengths: always a candidate (the exact check decides)
        single[_WIDTH - 1] = need(m, _WIDTH - 1, threshold) == 1
    return table.ravel(), single


@dataclass(frozen=True)
class Neighbour:
    index: int  # position in the index (insertion order)
    text: str
    score: float


@dataclass(frozen=True)
class Decision:
    kept: bool
    nearest: Neighbour | None = None  # for a reject: the most similar item, with its score


class Prepared(NamedTuple):
    """A text ready for the index: its code (one character per distinct token, so LCS over codes is LCS over
    tokens), and its prefix: the ranks of its rarest elements, rarest first."""

    code: str
    prefix: list[int]


class SimilarityIndex:
    """Texts compared by ROUGE-L F1, with an exact and fast `find_similar(text)` for a fixed threshold."""

    def __init__(self, texts: Iterable[str] = (), threshold: float = 0.7, tokenizer: str = "rouge") -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
        self.threshold = threshold
        self.tokenize = TOKENIZERS[tokenizer]
        self.texts: list[str] = []
        self._codes: list[str] = []
        self._length_list: list[int] = []
        self._capped_lengths = np.zeros(1024, dtype=np.int64)  # for the vectorised filter
        self._lengths = np.zeros(1024, dtype=np.float64)  # token counts, for `top_k`
        self._chars: dict[str, str] = {}  # token -> its character in codes
        # Element -> rank; a higher rank is rarer. Without `_fix_order`, ranks follow first sight (later is taken
        # as rarer: common words show up early, so that approximates the frequency order).
        self._ranks: dict[str, int] = {}
        # Element rank -> packed (item << 8 | position of the element in the item's prefix).
        self._postings: dict[int, array[int]] = {}
        # Every element (not only the prefix) -> the items holding it: the token overlap that bounds a score, for
        # `top_k` without a pass over the whole index. Built at the first `top_k` (the novelty filter alone never
        # needs it), then kept up to date.
        self._holders: dict[str, array[int]] | None = None
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self.texts)

    def _code(self, tokens: list[str]) -> str:
        chars = self._chars
        for t in tokens:
            if t not in chars:
                n = len(chars) + 0x100  # skip the control characters and the surrogate block (room: ~1.1M tokens)
                chars[t] = chr(n if n < 0xD800 else n + 0x800)
        return "".join([chars[t] for t in tokens])

    @staticmethod
    def _elements(code: str) -> list[str]:
        """The text as a set: the k-th repeat of a token is the element char*k (k times the
        character), so the size of the intersection
        of two element sets is the overlap of the two token multisets. (Order does not matter: it is a set.)"""
        if len(set(code)) == len(code):
            return list(code)
        seen: dict[str, int] = {}
        elements = []
        for c in code:
            k = seen.get(c, 0) + 1
            seen[c] = k
            elements.append(c * k)
        return elements

    def _fix_order(self, element_lists: Iterable[list[str]]) -> None:
        """Rank elements by their frequency in `element_lists` (e.g. a whole corpus about to be filtered): rare
        elements first make postings short. Only on an empty index."""
        assert not self.texts, "the order of an index that holds items cannot change"
        counts = Counter(e for elements in element_lists for e in elements)
        self._ranks = {element: rank for rank, (element, _) in enumerate(counts.most_common())}

    def prepare(self, text: str, grow: bool = True) -> Prepared:
        """`grow`: give elements never seen fresh ranks (needed to index the text; a query without it is
        cheaper on a streaming index, and unseen elements cannot match anyway)."""
        code = self._code(self.tokenize(text))
        return self._prepare(code, self._elements(code), grow)

    def _prepare(self, code: str, elements: list[str], grow: bool) -> Prepared:
        overlap = _bounds(len(code), self.threshold)[0]
        if not overlap:  # no partner can score above the threshold: nothing to post or probe
            return Prepared(code, [])
        ranks = self._ranks
        if grow:
            keys = [ranks.setdefault(e, len(ranks)) for e in elements]
        else:
            unseen = len(ranks)  # rarer than anything indexed
            keys = [ranks.get(e, unseen) for e in elements]
        keys.sort(reverse=True)
        return Prepared(code, keys[: len(keys) - overlap + 2])

    def add(self, text: str, prepared: Prepared | None = None) -> int:
        code, prefix = prepared or self.prepare(text)
        index = len(self.texts)
        self.texts.append(text)
        self._codes.append(code)
        self._length_list.append(len(code))
        if index == len(self._capped_lengths):
            self._capped_lengths = np.resize(self._capped_lengths, 2 * index)
            self._lengths = np.resize(self._lengths, 2 * index)
        self._capped_lengths[index] = min(len(code), _WIDTH - 1)
        self._lengths[index] = len(code)
        if self._holders is not None:
            self._hold(index)
        postings = self._postings
        for position, rank in enumerate(prefix):
            if rank not in postings:
                postings[rank] = array("q")
            postings[rank].append(index << 8 | min(position, 255))  # a capped position only loosens the bound
        return index

    def _hold(self, index: int) -> None:
        holders = self._holders
        assert holders is not None
        for element in self._elements(self._codes[index]):
            if element not in holders:
                holders[element] = array("q")
            holders[element].append(index)

    def find_similar(self, text: str, prepared: Prepared | None = None) -> Decision:
        """Whether `text` scores above the threshold against any item, and if so the most similar one."""
        code, prefix = prepared or self.prepare(text, grow=False)
        postings = self._postings
        hits = [postings.get(rank, _EMPTY) for rank in prefix]
        entries = b"".join(hits)
        if not entries:
            return Decision(True)
        # Vectorised over every (query element at i, posted item with it at j) pair: the length filter, the
        # positional filter and the count. Both element lists are sorted by one global order, so a partner with
        # `need` >= 2 shared elements has its first two within the first m - need + 2 of the query's and the first
        # n - need + 2 of its own: it shows up at least twice, each time within those limits (two-element prefix
        # filtering: far fewer candidates than one shared element when every word is common).
        packed = np.frombuffer(entries, dtype=np.int64)
        items = packed >> 8
        rows = np.repeat(_ROW_STARTS[: len(hits)], list(map(len, hits)))
        table, single = _position_table(len(code), self.threshold)
        capped = self._capped_lengths[items]
        valid = (packed & 255) <= table[rows + capped]
        items, capped = items[valid], capped[valid]
        enough = np.bincount(items)[items] >= 2
        candidates = list(set(items[enough | single[capped]].tolist()))
        if not candidates:
            return Decision(True)
        # One C++ pass finds the candidates near the threshold (Indel similarity is 2·LCS/(m+n), the F1 up to
        # float rounding, hence the margin); only those get the exact score.
        m, codes, lengths = len(code), self._codes, self._length_list
        near = process.extract(
            code,
            [codes[c] for c in candidates],
            scorer=Indel.normalized_similarity,
            # rapidfuzz turns a normalised cutoff into an integer distance with rounding that can drop a pair
            # exactly at the cutoff (0.8 with cutoff 0.8), so the cutoff sits well below the threshold.
            score_cutoff=max(0.0, self.threshold - 1e-6),
            limit=None,
        )
        if not near:
            return Decision(True)
        # `near` is sorted best first; only the items within float noise of the best can hold the exact maximum.
        top = near[0][1] - _MARGIN
        exact = sorted(
            (-f1_from_lcs(LCSseq.similarity(code, codes[candidates[k]]), m, lengths[candidates[k]]), candidates[k])
            for _, score, k in near
            if score >= top
        )
        score, c = -exact[0][0], exact[0][1]  # the best; among equals, the earliest item
        if score > self.threshold:
            return Decision(False, Neighbour(c, self.texts[c], score))
        return Decision(True)

    def _scores(self, text: str) -> np.ndarray:
        code = self._code(self.tokenize(text))
        if not code or not self._codes:
            return np.zeros(len(self._codes))
        lcs = process.cdist([code], self._codes, scorer=LCSseq.similarity, dtype=np.int64)[0]
        return _f1(lcs, len(code), np.asarray(self._length_list, dtype=np.float64))

    def scores(self, text: str) -> list[float]:
        """The exact score against every item, in insertion order (one C++ pass over the index)."""
        return self._scores(text).tolist()

    def top_k(self, text: str, k: int) -> list[Neighbour]:
        """The k most similar items, best first (ties: earlier item first); exactly what a full pass gives.

        Without scoring every item: an item's LCS with the query is at most their token overlap o, so its F1 is
        at most 2·o/(m+n). The overlaps come from the postings of every element (one `bincount`). The items with
        the largest bounds are scored first (a partial sort), which gives a k-th best score s; then only the items
        whose bound can still reach s (one vectorised comparison), in decreasing order of the bound, in growing
        batches, until no bound left can reach the k-th best. Items sharing no token score 0 and fill the list in
        index order, as in the full pass."""
        total = len(self.texts)
        if not total or k <= 0:
            return []
        if self._holders is None:
            self._holders = {}
            for index in range(total):
                self._hold(index)
        code = self._code(self.tokenize(text))
        m = len(code)
        hits = [self._holders[e] for e in self._elements(code) if e in self._holders]
        if not hits:
            return [Neighbour(i, self.texts[i], 0.0) for i in range(min(k, total))]
        overlap = np.bincount(np.frombuffer(b"".join(hits), dtype=np.int64), minlength=total)
        lengths = self._lengths[:total]
        best: list[tuple[float, int]] = []  # (-score, index), sorted: the k best so far

        def score(chosen: np.ndarray) -> None:
            nonlocal best
            codes = self._codes
            lcs = process.cdist([code], [codes[i] for i in chosen.tolist()], scorer=LCSseq.similarity, dtype=np.int64)
            scores = _f1(lcs[0], m, lengths[chosen])
            best = sorted(best + list(zip((-scores).tolist(), chosen.tolist(), strict=True)))[:k]

        # The items with the largest bounds (a partial sort, no sort of the pool) give a first k-th best score.
        bounds = 2 * overlap / (m + lengths) + _MARGIN
        first = min(total, max(k, _BATCH))
        top = np.argpartition(-bounds, first - 1)[:first] if first < total else np.arange(total)
        top = top[overlap[top] > 0]
        score(top)
        # Then every other item whose bound reaches the k-th best, in decreasing order of bound (ties: index order).
        reach = (bounds >= (-best[-1][0] if len(best) == k else 0.0)) & (overlap > 0)
        reach[top] = False
        candidates = np.flatnonzero(reach)
        order = candidates[np.lexsort((candidates, -bounds[candidates]))]
        start, size = 0, _BATCH
        while start < len(order):
            if len(best) == k and bounds[order[start]] < -best[-1][0]:
                break  # no item left can reach the k-th best (ties need an equal bound, kept above)
            score(order[start : start + size])
            start, size = start + size, 2 * size
        if len(best) < k:  # fewer than k items share a token, all scored above: the others score 0, in index order
            zero = np.flatnonzero(overlap == 0)[: k - len(best)]
            best = sorted(best + [(0.0, int(i)) for i in zero])
        return [Neighbour(i, self.texts[i], -score if score else 0.0) for score, i in best]

    def nearest(self, text: str) -> Neighbour | None:
        top = self.top_k(text, 1)
        return top[0] if top else None


def _f1(lcs: np.ndarray, m: int, n: np.ndarray) -> np.ndarray:
    """`f1_from_lcs` elementwise; numpy's IEEE double arithmetic gives the same bits as Python's. Where lcs is 0
    (which covers empty texts) the score is 0; the guards below only keep those entries from dividing by zero."""
    precision = lcs / np.maximum(n, 1)
    recall = lcs / max(m, 1)
    total = precision + recall
    f1 = 2 * precision * recall / np.where(total > 0, total, 1.0)
    return np.where(lcs > 0, f1, 0.0)


def sequential_filter(
    texts: Sequence[str], threshold: float = 0.7, against: Sequence[str] = (), tokenizer: str = "rouge"
) -> list[Decision]:
    """The Self-Instruct novelty filter: each text, in order, is kept when its ROUGE-L F1 to every `against`
    text and to every text kept before it is at most `threshold`. One decision per text, in order."""
    index = SimilarityIndex((), threshold, tokenizer)
    codes = [index._code(index.tokenize(t)) for t in [*against, *texts]]
    elements = [index._elements(code) for code in codes]
    index._fix_order(elements)
    prepared = [index._prepare(code, e, grow=True) for code, e in zip(codes, elements, strict=True)]
    for text, p in zip(against, prepared, strict=False):
        index.add(text, p)
    decisions = []
    for text, p in zip(texts, prepared[len(against) :], strict=True):
        decision = index.find_similar(text, p)
        if decision.kept:
            index.add(text, p)
        decisions.append(decision)
    return decisions
