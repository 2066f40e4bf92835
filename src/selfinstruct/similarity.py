"""Exact, fast ROUGE-L novelty filtering: the same decisions as `rouge_score`, without its quadratic cost.

Scores. rouge_score's rougeL F1 (default tokenizer, no stemming) of token sequences of lengths m and n with
longest common subsequence L is 2·P·R/(P+R), P = L/n, R = L/m. We compute L exactly (rapidfuzz's bit-parallel
LCS, on strings in which every distinct token is one character) and then evaluate the reference's own float
formula (`f1_from_lcs`), so every score equals the reference's bit for bit, and `score > threshold` can never
decide differently, ties included.

Speed. A pair can only score above threshold t if L >= need(m, n), the smallest integer with 2L >= t(m+n)
(less a margin of 1e-9, so that every float tie stays a candidate), and L is at most the overlap of the two
token multisets. View each text as a set of elements (the k-th repeat of a token is its own element): the overlap
is the size of the intersection. Every item scoring above t passes the filters below, and only the survivors get
an LCS, in one C++ call, so the result is exact. Two indexes, for two ways of asking:

- One text at a time, the pool growing between questions (`SimilarityIndex`, the bootstrap stage): each item's
  exact overlap with the query, counted from the holders of the query's elements (a list of items for a rare
  element, a byte per item for a common one: adding a few arrays of bytes costs less than reading long lists).
  The novelty filter scores the items with overlap >= need(m, n); `top_k` (the neighbours recorded for an
  accepted instruction) bounds each score by 2·overlap/(m+n) and scores only the items whose bound can reach the
  k-th best. The cost per question still grows with the pool, but by a pass over bytes, not a score per item.
- A corpus known in advance (`sequential_filter`, e.g. `selfinstruct dedup`): prefix filtering. Sort the
  elements by their frequency in the corpus, rarest first; two sets sharing at least `a` >= 2 elements share two
  among the first |x|-a+2 of each (two-element prefix filtering: when every word is common, sharing one element
  says little, sharing two a lot). So each indexed item posts only its prefix (sized for the smallest overlap any
  partner could need), a query probes only with its own prefix, and a candidate must show up twice within
  positional limits that leave room for `need` shared elements. Runs of texts are screened at once.
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter, defaultdict
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


_BATCH = 64  # items `top_k` scores in its first call, in decreasing order of their bound (later calls: 4x more)
_BLOCK = 32  # texts `sequential_filter` screens against the index at once
_DENSE = 1 << 18  # `_candidates` counts pairs in an array up to this many (queries x items), else sorts them
_EMPTY = array("q")
_CHARS = 1 << 21  # above every code point: element = character + repeat * _CHARS
_NONE = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Neighbour:
    index: int  # position in the index (insertion order)
    text: str
    score: float


@dataclass(frozen=True)
class Decision:
    kept: bool
    nearest: Neighbour | None = None  # for a reject: the most similar item, with its score


class _Pool:
    """The texts of an index as codes (one character per distinct token, so LCS over codes is LCS over tokens),
    and the exact scoring both indexes share."""

    def __init__(self, threshold: float, tokenizer: str) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
        self.threshold = threshold
        self.tokenize = TOKENIZERS[tokenizer]
        self.texts: list[str] = []
        self._codes = np.empty(1024, dtype=object)  # by index; an array, to gather many at once
        self._lengths = np.zeros(1024, dtype=np.int64)  # token counts, for the vectorised filters
        self._needs = np.zeros(0, dtype=np.int64)  # see _need_by_sum
        self._chars: dict[str, str] = {}  # token -> its character in codes

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
        distinct = dict.fromkeys(code)  # ordered, so that the elements' order does not depend on hashing
        if len(distinct) == len(code):
            return list(code)
        repeats = [c * k for c, n in Counter(code).items() if n > 1 for k in range(2, n + 1)]
        return [*distinct, *repeats]

    def _append(self, text: str, code: str) -> int:
        index = len(self.texts)
        if index == len(self._lengths):
            self._grow(2 * index)
        self.texts.append(text)
        self._codes[index] = code
        self._lengths[index] = len(code)
        return index

    def _grow(self, capacity: int) -> None:
        """Room for `capacity` items in every per-item array."""
        codes = np.empty(capacity, dtype=object)
        codes[: len(self._codes)] = self._codes
        self._codes = codes
        self._lengths = np.resize(self._lengths, capacity)

    def _need_by_sum(self, longest: int) -> np.ndarray:
        """need(m, n) by m + n (it depends on nothing else), for sums up to at least `longest`."""
        if len(self._needs) <= longest:
            sums = np.arange(max(2 * longest, 512))
            self._needs = np.maximum(1, np.ceil((self.threshold - _MARGIN) * sums / 2)).astype(np.int64)  # `need`
        return self._needs

    def _decision(self, best: tuple[float, int] | None) -> Decision:
        """Kept without a (score, item) above the threshold; else rejected, naming that item."""
        return Decision(True) if best is None else Decision(False, Neighbour(best[1], self.texts[best[1]], best[0]))

    def _best(self, code: str, candidates: np.ndarray) -> tuple[float, int] | None:
        """(score, item) of the candidate most similar to `code` (among equals the earliest) if it scores above
        the threshold, else None."""
        if not len(candidates):
            return None
        # One C++ pass finds the candidates near the threshold (Indel similarity is 2·LCS/(m+n), the F1 up to
        # float rounding, hence the margin); only those get the exact score.
        codes = self._codes[candidates].tolist()
        near = process.extract(
            code,
            codes,
            scorer=Indel.normalized_similarity,
            # rapidfuzz turns a normalised cutoff into an integer distance with rounding that can drop a pair
            # exactly at the cutoff (0.8 with cutoff 0.8), so the cutoff sits well below the threshold.
            score_cutoff=max(0.0, self.threshold - 1e-6),
            limit=None,
        )
        if not near:
            return None
        # `near` is sorted best first; only the items within float noise of the best can hold the exact maximum.
        top, m = near[0][1] - _MARGIN, len(code)
        exact = sorted(
            (-f1_from_lcs(LCSseq.similarity(code, codes[k]), m, len(codes[k])), int(candidates[k]))
            for _, score, k in near
            if score >= top
        )
        score, c = -exact[0][0], exact[0][1]  # the best; among equals, the earliest item
        return (score, c) if score > self.threshold else None


class SimilarityIndex(_Pool):
    """Texts compared by ROUGE-L F1, one at a time: an exact and fast `find_similar(text)` for a fixed threshold
    (the novelty filter), and `top_k` (the neighbours recorded for an accepted instruction).

    Both start from each item's token overlap with the query, an upper bound on their LCS, counted from the
    holders of the query's elements: a list of items for an element few items hold, one flag per item (a byte)
    for a common one, which is cheaper to add up than a long list to read."""

    FLAG_SHARE = 32  # an element gets flags once more than 1/FLAG_SHARE of the items' room holds it, and at
    FLAG_MIN = 64  # least FLAG_MIN items; back to a list when the room grows and less than a quarter of that holds it

    def __init__(self, texts: Iterable[str] = (), threshold: float = 0.7, tokenizer: str = "rouge") -> None:
        super().__init__(threshold, tokenizer)
        self._holders: dict[str, array[int]] = {}  # element -> the items holding it (uncommon elements)
        self._flags: dict[str, np.ndarray] = {}  # element -> 1 for each item holding it (common elements)
        self._lengths32 = np.zeros(len(self._lengths), dtype=np.float32)  # the lengths again, for `_reaching`
        self._scratch = np.zeros(len(self._lengths), dtype=np.float32)
        self._seen = np.zeros(len(self._lengths), dtype=bool)  # all False between uses, see `top_k`
        self._floors: dict[int, float] = {}  # k -> where `top_k` starts looking (see there)
        self._last: tuple[str, int, np.ndarray] | None = None  # the last overlap computed: (code, items, overlap)
        for text in texts:
            self.add(text)

    def add(self, text: str) -> int:
        code = self._code(self.tokenize(text))
        index = self._append(text, code)
        self._lengths32[index] = len(code)
        holders, flags = self._holders, self._flags
        for element in self._elements(code):
            flagged = flags.get(element)
            if flagged is not None:
                flagged[index] = 1
                continue
            held = holders.get(element)
            if held is None:
                held = holders[element] = array("q")
            held.append(index)
            if len(held) >= self.FLAG_MIN and len(held) * self.FLAG_SHARE > len(self._lengths):
                flagged = flags[element] = np.zeros(len(self._lengths), dtype=np.uint8)
                flagged[np.frombuffer(held, dtype=np.int64)] = 1
                del holders[element]
        return index

    def _grow(self, capacity: int) -> None:
        super()._grow(capacity)
        self._lengths32 = np.resize(self._lengths32, capacity)
        self._scratch = np.zeros(capacity, dtype=np.float32)
        self._seen = np.zeros(capacity, dtype=bool)
        for element, flagged in list(self._flags.items()):
            held = np.flatnonzero(flagged)
            if len(held) * 4 * self.FLAG_SHARE < capacity:  # no longer common (a word of the first items only):
                self._holders[element] = array("q", held.tolist())  # a list again, so flags stay few
                del self._flags[element]
            else:
                self._flags[element] = np.concatenate([flagged, np.zeros(capacity - len(flagged), dtype=np.uint8)])

    def _overlap(self, code: str) -> np.ndarray:
        """Each item's token overlap with `code` (the size of the intersection of the two token multisets)."""
        total = len(self.texts)
        if self._last is not None and self._last[0] == code and self._last[1] == total:
            return self._last[2]  # the judge asks `find_similar` and then `top_k` about the same text
        overlap = np.zeros(total, dtype=np.uint8 if len(code) < 256 else np.int64)
        for element in self._elements(code):
            flagged = self._flags.get(element)
            if flagged is not None:
                np.add(overlap, flagged[:total], out=overlap)
            elif element in self._holders:
                overlap[np.frombuffer(self._holders[element], dtype=np.int64)] += 1  # no item twice in one list
        self._last = (code, total, overlap)
        return overlap

    def _reaching(self, overlap: np.ndarray, m: int, score: float) -> np.ndarray:
        """The items whose bound 2·o/(m+n) is at least `score` (o: overlap, n: length), and perhaps a few more:
        o >= score·(m+n)/2, in float32 with a relative slack on the safe side (far above float32's rounding), in
        place in a scratch array."""
        total = len(overlap)
        half = score / 2 * (1 - 1e-5)
        scaled = np.multiply(self._lengths32[:total], np.float32(half), out=self._scratch[:total])
        np.add(scaled, np.float32(half * m), out=scaled)
        return np.flatnonzero(overlap >= scaled)

    def find_similar(self, text: str) -> Decision:
        """Whether `text` scores above the threshold against any item, and if so the most similar one. An item
        scoring above it has an LCS, hence an overlap o, of at least need(m, n), and n >= o: so o >= c·m/(1-c)
        with c = (threshold - margin)/2 (one comparison with a number, selective at the threshold), then
        o >= need(m, n) exactly on those. Only the items left get a score."""
        code = self._code(self.tokenize(text))
        m = len(code)
        if not self.texts or not m:
            return Decision(True)
        overlap = self._overlap(code)
        c = (self.threshold - _MARGIN) / 2
        least = max(1, math.ceil(c * m / (1 - c) - 1e-6)) if c < 1 else m  # slack: a float bound, on the safe side
        candidates = np.flatnonzero(overlap >= least)
        lengths = self._lengths[candidates]
        candidates = candidates[overlap[candidates] >= self._need_by_sum(m + int(lengths.max(initial=0)))[m + lengths]]
        return self._decision(self._best(code, candidates))

    def _scores(self, text: str) -> np.ndarray:
        code = self._code(self.tokenize(text))
        total = len(self.texts)
        if not code or not total:
            return np.zeros(total)
        lcs = process.cdist([code], self._codes[:total].tolist(), scorer=LCSseq.similarity, dtype=np.int64)[0]
        return _f1(lcs, len(code), self._lengths[:total].astype(np.float64))

    def scores(self, text: str) -> list[float]:
        """The exact score against every item, in insertion order (one C++ pass over the index)."""
        return self._scores(text).tolist()

    def top_k(self, text: str, k: int) -> list[Neighbour]:
        """The k most similar items, best first (ties: earlier item first); exactly what a full pass gives.

        Without scoring every item: an item's LCS with the query is at most their token overlap o, so its F1 is
        at most the bound 2·o/(m+n). Every item whose bound reaches a floor f is scored, in decreasing order of the
        bound, until no bound left can reach the k-th best; if the k-th best is then at least f, no other item can
        reach it (even a tie needs an equal bound). Otherwise f drops to that k-th best (with fewer than k scored,
        by a factor) and the items this adds are scored. f starts at the previous query's k-th best, which only
        saves work: the result is the same from any f. Items sharing no token score 0 and fill the list in index
        order, as in the full pass."""
        total = len(self.texts)
        if not total or k <= 0:
            return []
        code = self._code(self.tokenize(text))
        m = len(code)
        if not m:  # no token: every item scores 0
            return [Neighbour(i, self.texts[i], 0.0) for i in range(min(k, total))]
        overlap = self._overlap(code)
        lengths = self._lengths[:total]
        best, best_scores = _NONE, np.zeros(0)  # the k best so far, best first (ties: index order), and scores
        scored = []  # the items scored by earlier rounds
        floor = self._floors.get(k, 0.5)
        while True:
            reach = self._reaching(overlap, m, floor - _MARGIN) if floor else np.flatnonzero(overlap)
            if scored:  # without the items scored already
                seen = self._seen[:total]
                done = np.concatenate(scored)
                seen[done] = True
                reach = reach[~seen[reach]]
                seen[done] = False
            minus_bounds = -(2 * overlap[reach] / (m + lengths[reach]) + _MARGIN)
            order = reach[np.lexsort((reach, minus_bounds))]  # decreasing bound, ties in index order
            minus_bounds.sort()
            start, size = 0, _BATCH
            while start < len(order) and (len(best) < k or -minus_bounds[start] >= best_scores[-1]):
                # The next `size` items, and any others of the same bound: in one call, a grammar of common words
                # (every bound alike) scores its whole reach at once.
                last = minus_bounds[min(len(order), start + size) - 1]
                end = int(np.searchsorted(minus_bounds, last, side="right"))
                chosen = order[start:end]
                lcs = process.cdist([code], self._codes[chosen].tolist(), scorer=LCSseq.similarity, dtype=np.int64)
                items, scores = (
                    np.concatenate([best, chosen]),
                    np.concatenate([best_scores, _f1(lcs[0], m, lengths[chosen])]),
                )
                keep = np.lexsort((items, -scores))[:k]
                best, best_scores = items[keep], scores[keep]
                start, size = end, 4 * size
            if not floor or (len(best) == k and best_scores[-1] >= floor):
                break
            scored.append(reach)
            # The k-th best so far is a floor for the final one; with fewer than k scored, look lower.
            floor = float(best_scores[-1]) if len(best) == k else 0.7 * floor if floor > 0.05 else 0.0
        if len(best) == k:
            self._floors[k] = float(best_scores[-1])
        else:  # fewer than k items share a token, all scored above: the others score 0, in index order
            zero = np.flatnonzero(overlap == 0)[: k - len(best)]
            best, best_scores = np.concatenate([best, zero]), np.concatenate([best_scores, np.zeros(len(zero))])
        return [Neighbour(i, self.texts[i], s) for i, s in zip(best.tolist(), best_scores.tolist(), strict=True)]

    def nearest(self, text: str) -> Neighbour | None:
        top = self.top_k(text, 1)
        return top[0] if top else None


class Prepared(NamedTuple):
    """A text ready for `_PrefixIndex`: its code, and its prefix: the ranks of its rarest elements, rarest
    first."""

    code: str
    prefix: list[int]


class _PrefixIndex(_Pool):
    """`sequential_filter`'s index, for a corpus known in advance: prefix filtering (see the module's docstring),
    over elements ranked by their frequency in the corpus."""

    def __init__(self, threshold: float, tokenizer: str) -> None:
        super().__init__(threshold, tokenizer)
        # Element rank -> packed (item << 8 | position of the element in the item's prefix).
        self._postings: defaultdict[int, array[int]] = defaultdict(lambda: array("q"))

    def _prepare_all(self, codes: list[str]) -> list[Prepared]:
        """Each text's code and prefix, for a whole corpus known in advance (about to be filtered), on an empty
        index: elements are ranked by their frequency in it (rare elements first make postings short), in a few
        vectorised passes rather than a Python loop per token."""
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
        top = len(elements)
        ranks = top - 1 - np.sort(text * top + (top - 1 - rank_of[inverse])) % top  # per text, rarest first
        # Each text's prefix: its ranks, rarest first, m - (the smallest overlap any partner needs) + 2 of them.
        sizes = []
        for m in lengths.tolist():
            overlap = _bounds(m, self.threshold)[0]
            sizes.append(min(m, m - overlap + 2) if overlap else 0)
        within = np.arange(len(ranks)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        chosen = ranks[within < np.repeat(sizes, lengths)].tolist()
        bounds = np.cumsum(sizes).tolist()
        return [Prepared(code, chosen[end - size : end]) for code, size, end in zip(codes, sizes, bounds, strict=True)]

    def add(self, text: str, prepared: Prepared) -> int:
        code, prefix = prepared
        index = self._append(text, code)
        postings, base = self._postings, index << 8
        for position, rank in enumerate(prefix):
            postings[rank].append(base | (position if position < 256 else 255))  # a capped one only loosens it
        return index

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
    index = _PrefixIndex(threshold, tokenizer)
    prepared = index._prepare_all([index._code(index.tokenize(t)) for t in [*against, *texts]])
    for text, p in zip(against, prepared, strict=False):
        index.add(text, p)
    decisions: list[Decision] = []
    texts, prepared = list(texts), prepared[len(against) :]
    for start in range(0, len(texts), _BLOCK):
        decisions += _filter_block(index, texts[start : start + _BLOCK], prepared[start : start + _BLOCK])
    return decisions


def _filter_block(index: _PrefixIndex, texts: list[str], prepared: list[Prepared]) -> list[Decision]:
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
