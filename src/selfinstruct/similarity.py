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
global order, rarest first; two sets sharing at least `a` >= 2 elements share two among the first |x|-a+2 of
each (two-element prefix filtering: when every word is common, sharing one element says little, sharing two a
lot). So each indexed item posts only its prefix (sized for the smallest overlap any partner could need), a
query probes only with its own prefix, and a candidate must show up twice within positional limits that leave
room for `need` shared elements. Only the surviving candidates get an LCS, in one C++ call. Every item scoring
above t survives the filters, so the result is exact.

The global order is the elements' frequency in the corpus when it is known in advance (`sequential_filter`,
which also screens runs of texts at once); a streaming index (the bootstrap stage) ranks elements by first
sight, later taken as rarer: common words show up early, and any fixed order is correct, only slower.

`top_k` (the neighbours recorded for each accepted instruction) bounds each item's score by its token overlap
and scores only the items whose bound can reach the k-th best.
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


def rouge_l_f1(target: str, response: str) -> float:
    """ROUGE-L F1 of two texts, exactly as rouge_score's RougeScorer(["rougeL"]).score(target, response).fmeasure."""
    return rouge_l(tokenize(target), tokenize(response))


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


_BATCH = 32  # items scored at once by `top_k`, in decreasing order of their bound (later batches double)
_WIDTH = 256  # `_position_table` looks lengths up capped at _WIDTH - 1, which stands for "this long or longer"
_BLOCK = 32  # texts `sequential_filter` screens against the index at once
_DENSE = 1 << 18  # `_candidates` counts pairs in an array up to this many (queries x items), else sorts them
_EMPTY = array("q")
_ROW_STARTS = np.arange(0, 1 << 24, _WIDTH, dtype=np.int64)  # i * _WIDTH for query positions i
_CHARS = 1 << 21  # above every code point: element = character + repeat * _CHARS
_NONE = np.zeros(0, dtype=np.int64)


@lru_cache(maxsize=4096)
def _position_table(m: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """`_candidates`' checks for one length-m query, as a table: indexed by i * _WIDTH + min(n, _WIDTH - 1), the
    last usable position j in a length-n partner's prefix (n - need + 1 where i <= m - need + 1 and n can match at
    all, else -1); and, by capped n, whether need(m, n) is 1."""
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
        self._lengths = np.zeros(1024, dtype=np.int64)  # token counts, for the vectorised filters
        self._needs = np.zeros(0, dtype=np.int64)  # see _need_by_sum
        self._chars: dict[str, str] = {}  # token -> its character in codes
        # Element -> rank; a higher rank is rarer. Without `_prepare_all`, ranks follow first sight (later is taken
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
        try:
            return "".join(map(chars.__getitem__, tokens))  # the usual case: every token seen before
        except KeyError:
            pass
        for t in tokens:
            if t not in chars:
                n = len(chars) + 0x100  # skip the control characters and the surrogate block (room: ~1.1M tokens)
                chars[t] = chr(n if n < 0xD800 else n + 0x800)
        return "".join([chars[t] for t in tokens])

    @staticmethod
    def _elements(code: str) -> list[str]:
        """The text as a set: the k-th repeat of a token is the element char*k (k times the character), so the
        size of the intersection of two element sets is the overlap of the two token multisets. (Order does not
        matter: it is a set.)"""
        distinct = dict.fromkeys(code)  # ordered, so that first-sight ranks do not depend on hashing
        if len(distinct) == len(code):
            return list(code)
        repeats = [c * k for c, n in Counter(code).items() if n > 1 for k in range(2, n + 1)]
        return [*distinct, *repeats]

    def _prepare_all(self, codes: list[str]) -> list[Prepared]:
        """`_prepare` for a whole corpus known in advance (e.g. about to be filtered), on an empty index: elements
        are ranked by their frequency in it (rare elements first make postings short), in a few vectorised passes
        rather than a Python loop per token."""
        assert not self.texts, "the order of an index that holds items cannot change"
        lengths = np.fromiter(map(len, codes), dtype=np.int64, count=len(codes))
        chars = np.frombuffer("".join(codes).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        # Each text's tokens, sorted (a text is a set of elements: order does not matter). The k-th repeat of a
        # token in a text is its own element (see `_elements`): number the repeats.
        pairs = np.sort(np.repeat(np.arange(len(codes)), lengths) * _CHARS + chars)
        starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
        repeat = np.arange(len(pairs)) - np.repeat(starts, np.diff(np.r_[starts, len(pairs)]))
        text = pairs // _CHARS
        elements, inverse, counts = np.unique(pairs % _CHARS + repeat * _CHARS, return_inverse=True, return_counts=True)
        # Rank 0 for the most common element, the highest for the rarest (ties: by element).
        rank_of = np.empty(len(elements), dtype=np.int64)
        rank_of[np.lexsort((elements, -counts))] = np.arange(len(elements))
        self._ranks = {
            chr(e % _CHARS) * (e // _CHARS + 1): r for e, r in zip(elements.tolist(), rank_of.tolist(), strict=True)
        }
        top = len(elements)
        ranks = top - 1 - np.sort(text * top + (top - 1 - rank_of[inverse])) % top  # per text, rarest first
        # Each text's prefix: its ranks, rarest first, as many as `_prepare` keeps.
        sizes = []
        for m in lengths.tolist():
            overlap = _bounds(m, self.threshold)[0]
            sizes.append(min(m, m - overlap + 2) if overlap else 0)
        within = np.arange(len(ranks)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        chosen = ranks[within < np.repeat(sizes, lengths)].tolist()
        bounds = np.cumsum(sizes).tolist()
        return [Prepared(code, chosen[end - size : end]) for code, size, end in zip(codes, sizes, bounds, strict=True)]

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
            try:
                keys = list(map(ranks.__getitem__, elements))  # every element already ranked: no growth
            except KeyError:
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
        if index == len(self._lengths):
            self._lengths = np.resize(self._lengths, 2 * index)
        self._lengths[index] = len(code)
        if self._holders is not None:
            self._hold(index)
        postings, base = self._postings, index << 8
        for position, rank in enumerate(prefix):
            posting = postings.get(rank)
            if posting is None:
                posting = postings[rank] = array("q")
            posting.append(base | min(position, 255))  # a capped position only loosens the bound
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
        prepared = prepared or self.prepare(text, grow=False)
        return self._decision(self._best(prepared.code, self._candidates([prepared])[0]))

    def _decision(self, best: tuple[float, int] | None) -> Decision:
        """Kept without a (score, item) above the threshold; else rejected, naming that item."""
        return Decision(True) if best is None else Decision(False, Neighbour(best[1], self.texts[best[1]], best[0]))

    def _candidates(self, queries: Sequence[Prepared]) -> list[np.ndarray]:
        """For each query, the items that may score above the threshold with it (every one that does is there).

        Vectorised over every (query element at i, posted item with it at j) pair: the length filter, the
        positional filter and the count. Both element lists are sorted by one global order, so a partner with
        `need` >= 2 shared elements has its first two within the first m - need + 2 of the query's and the first
        n - need + 2 of its own: it shows up at least twice, each time within those limits (two-element prefix
        filtering: far fewer candidates than one shared element when every word is common)."""
        postings = self._postings
        hits = [postings.get(rank, _EMPTY) for query in queries for rank in query.prefix]
        entries = b"".join(hits)
        if not entries:
            return [_NONE] * len(queries)
        packed = np.frombuffer(entries, dtype=np.int64)
        items, j = packed >> 8, packed & 255  # a position is stored capped at 255, which only loosens the check
        if len(queries) == 1:  # the streaming case (one candidate at a time): the checks from a cached table
            table, single = _position_table(len(queries[0].code), self.threshold)
            capped = np.minimum(self._lengths[items], _WIDTH - 1)
            rows = np.repeat(_ROW_STARTS[: len(hits)], list(map(len, hits)))
            valid = j <= table[rows + capped]
            items, once = items[valid], single[capped[valid]]
            total = len(self.texts)
            seen = np.bincount(items, minlength=total) + np.bincount(items[once], minlength=total)
            return [np.flatnonzero(seen >= 2)]
        counts = np.fromiter(map(len, hits), dtype=np.int64, count=len(hits))
        sizes = [len(query.prefix) for query in queries]
        # Per entry: its query, the query's length m, the element's position i in the query's prefix.
        owner = np.repeat(np.repeat(np.arange(len(queries)), sizes), counts)
        m = np.repeat(np.repeat([len(query.code) for query in queries], sizes), counts)
        starts = np.cumsum(sizes) - sizes
        i = np.repeat(np.arange(len(hits)) - np.repeat(starts, sizes), counts)
        n = self._lengths[items]
        needed = self._need_by_sum(int(m.max()) + int(n.max()))[m + n]
        # i <= m - need + 1 and j <= n - need + 1, and need <= min(m, n) (the lengths can match at all).
        valid = (np.maximum(i, 1) + needed <= m + 1) & (np.maximum(j, 1) + needed <= n + 1)
        # A (query, item) pair is a candidate with two valid entries, or one where a single shared token suffices.
        keys = owner[valid] * len(self.texts) + items[valid]
        weight = np.where(needed[valid] == 1, 2, 1)
        if len(queries) * len(self.texts) <= _DENSE:  # a count per possible pair: cheaper than sorting
            keys = np.flatnonzero(np.bincount(keys, weights=weight) >= 2)
        else:
            keys, inverse = np.unique(keys, return_inverse=True)
            keys = keys[np.bincount(inverse, weights=weight) >= 2]
        bounds = np.searchsorted(keys, np.arange(len(queries) + 1) * len(self.texts))
        return [keys[bounds[q] : bounds[q + 1]] - q * len(self.texts) for q in range(len(queries))]

    def _need_by_sum(self, longest: int) -> np.ndarray:
        """need(m, n) by m + n (it depends on nothing else), for sums up to at least `longest`."""
        if len(self._needs) <= longest:
            sums = np.arange(max(2 * longest, 512))
            self._needs = np.maximum(1, np.ceil((self.threshold - _MARGIN) * sums / 2)).astype(np.int64)  # `need`
        return self._needs

    def _best(self, code: str, candidates: np.ndarray) -> tuple[float, int] | None:
        """(score, item) of the candidate most similar to `code` (among equals the earliest) if it scores above
        the threshold, else None."""
        if not len(candidates):
            return None
        # One C++ pass finds the candidates near the threshold (Indel similarity is 2·LCS/(m+n), the F1 up to
        # float rounding, hence the margin); only those get the exact score.
        candidates = candidates.tolist()
        m, codes, lengths = len(code), self._codes, self._length_list
        near = process.extract(
            code,
            list(map(codes.__getitem__, candidates)),
            scorer=Indel.normalized_similarity,
            # rapidfuzz turns a normalised cutoff into an integer distance with rounding that can drop a pair
            # exactly at the cutoff (0.8 with cutoff 0.8), so the cutoff sits well below the threshold.
            score_cutoff=max(0.0, self.threshold - 1e-6),
            limit=None,
        )
        if not near:
            return None
        # `near` is sorted best first; only the items within float noise of the best can hold the exact maximum.
        top = near[0][1] - _MARGIN
        exact = sorted(
            (-f1_from_lcs(LCSseq.similarity(code, codes[candidates[k]]), m, lengths[candidates[k]]), candidates[k])
            for _, score, k in near
            if score >= top
        )
        score, c = -exact[0][0], exact[0][1]  # the best; among equals, the earliest item
        return (score, c) if score > self.threshold else None

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
    prepared = index._prepare_all([index._code(index.tokenize(t)) for t in [*against, *texts]])
    for text, p in zip(against, prepared, strict=False):
        index.add(text, p)
    decisions: list[Decision] = []
    texts, prepared = list(texts), prepared[len(against) :]
    for start in range(0, len(texts), _BLOCK):
        decisions += _filter_block(index, texts[start : start + _BLOCK], prepared[start : start + _BLOCK])
    return decisions


def _filter_block(index: SimilarityIndex, texts: list[str], prepared: list[Prepared]) -> list[Decision]:
    """`sequential_filter` for a run of texts: their candidates in the index found in one vectorised pass, their
    scores with each other in one C++ call; then each decided in order, against the index and the texts of the
    run kept before it (which join the index as they are kept, after every item already there)."""
    candidates = index._candidates(prepared)
    codes = [p.code for p in prepared]
    # Pairs near the threshold (Indel similarity is the F1 up to float rounding, see `_best`), then their exact F1.
    near = process.cdist(
        codes, codes, scorer=Indel.normalized_similarity, score_cutoff=max(0.0, index.threshold - 1e-6)
    )
    scores = np.zeros(near.shape)
    for q, r in zip(*np.nonzero(np.tril(near, -1)), strict=True):  # each text against the run's earlier ones
        scores[q, r] = f1_from_lcs(LCSseq.similarity(codes[q], codes[r]), len(codes[q]), len(codes[r]))
    close = scores > index.threshold
    decisions: list[Decision] = []
    kept = np.zeros(len(texts), dtype=bool)
    numbers = np.zeros(len(texts), dtype=np.int64)  # index numbers of the run's kept texts
    for q, (text, p) in enumerate(zip(texts, prepared, strict=True)):
        best = index._best(p.code, candidates[q])
        earlier = np.flatnonzero(close[q, :q] & kept[:q])
        if len(earlier):  # the run's kept texts come after every indexed item: they win only with a higher score
            r = int(earlier[np.argmax(scores[q, earlier])])  # the first of the best
            if best is None or scores[q, r] > best[0]:
                best = (float(scores[q, r]), int(numbers[r]))
        if best is None:
            kept[q], numbers[q] = True, index.add(text, p)
        decisions.append(index._decision(best))
    return decisions
