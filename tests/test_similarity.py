"""ROUGE-L must equal rouge_score's rougeL F1 exactly (the novelty filter compares with `>`), and the index."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer
from rouge_score import tokenize as reference_tokenize

from selfinstruct import similarity
from selfinstruct.similarity import SimilarityIndex, f1_from_lcs, need, rouge_l, sequential_filter, tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def reference(a: str, b: str) -> float:
    return SCORER.score(a, b)["rougeL"].fmeasure


def ours(a: str, b: str) -> float:
    return rouge_l(tokenize(a), tokenize(b))


def assert_same_as_reference(a: str, b: str) -> None:
    assert tokenize(a) == reference_tokenize.tokenize(a, None)
    assert tokenize(b) == reference_tokenize.tokenize(b, None)
    assert ours(a, b) == reference(a, b)
    assert ours(b, a) == reference(b, a)


EDGE_CASES = [
    ("", ""),
    ("", "a b c"),
    ("...", "!!! ???"),
    ("a", "a"),
    ("a", "A."),
    ("İ", "i"),  # lower() gives "i" + a combining dot
    ("İstanbul is big", "istanbul is big"),
    ("\u212a", "k"),  # the Kelvin sign lower-cases to an ASCII "k"
    ("\u212aelvin scale", "kelvin scale"),
    ("東京は日本の首都です", "東京 is the capital"),
    ("naïve café résumé", "naive cafe resume"),
    ("the the the the", "the"),
    ("a b a b a b", "b a b a"),
    ("a a a b b b c c c", "c b a c b a c b a"),
    ("x1 y2 z3", "X1,Y2;Z3"),
    ("don't stop", "don t stop"),
    ("Give me 3 examples.", "Give me three examples."),
    ("one two three four five six seven", "seven six five four three two one"),
    ("Write a poem about the sea.", "Write a poem about the sky."),
    ("\t\n  \r", " "),
    ("ǅ ǆ", "dž"),
    ("ΣΑΣ", "σας"),
]


@pytest.mark.parametrize("a, b", EDGE_CASES)
def test_edge_cases_match_rouge_score_exactly(a, b):
    assert_same_as_reference(a, b)


def test_known_values():
    assert ours("", "") == 0.0
    assert ours("!!!", "!!!") == 0.0  # no tokens at all
    assert ours("a b c", "a b c") == 1.0
    assert ours("a b c d", "e f g h") == 0.0
    # LCS 3 of 4 and 6 tokens: P = 3/6, R = 3/4, F1 = 0.6
    assert ours("a b c d", "a x b y c z") == pytest.approx(0.6)


def test_tokenize():
    assert tokenize("Hello, World! It's 2024.") == ["hello", "world", "it", "s", "2024"]
    assert tokenize("naïve") == ["na", "ve"]
    assert tokenize("\u212a") == ["k"]
    assert tokenize("東京") == []


def test_f1_from_lcs_zero_cases():
    assert f1_from_lcs(0, 0, 0) == 0.0
    assert f1_from_lcs(0, 5, 7) == 0.0
    assert f1_from_lcs(2, 2, 2) == 1.0


# A small vocabulary (including case, punctuation and unicode variants) makes overlap and repeats common.
VOCAB = ["the", "a", "cat", "Cat", "dog", "sat", "on", "mat", "write", "poem", "1", "42"]
VOCAB += ["İ", "\u212a", "東京", "-", "?"]  # case folding, unicode and punctuation-only tokens
vocab_text = st.lists(st.sampled_from(VOCAB), max_size=25).map(" ".join)
separators = st.sampled_from([" ", "  ", ", ", ".", "\n", "-", "_", "/"])
mixed_text = st.lists(st.tuples(st.sampled_from(VOCAB), separators), max_size=25).map(
    lambda pairs: "".join(word + sep for word, sep in pairs)
)
any_text = st.text(max_size=80)
texts = st.one_of(any_text, vocab_text, mixed_text)


@settings(max_examples=300, deadline=None)
@given(texts, texts)
def test_rouge_l_equals_rouge_score_exactly(a, b):
    assert_same_as_reference(a, b)


@settings(max_examples=300, deadline=None)
@given(vocab_text, vocab_text)
def test_rouge_l_on_overlapping_texts(a, b):
    assert_same_as_reference(a, b)
    score = ours(a, b)
    assert 0.0 <= score <= 1.0
    assert score == ours(b, a)
    if tokenize(a):
        assert ours(a, a) == 1.0


@settings(max_examples=100, deadline=None)
@given(st.lists(texts, max_size=8), texts)
def test_index_scores_match_rouge_score(pool, query):
    index = SimilarityIndex(pool)
    assert len(index) == len(pool)
    assert index.scores(query) == [reference(query, text) for text in pool]


# --- SimilarityIndex ----------------------------------------------------------------------------


def test_empty_index():
    index = SimilarityIndex()
    assert len(index) == 0
    assert index.scores("anything at all") == []
    assert index.top_k("anything at all", 3) == []
    assert index.nearest("anything at all") is None


def test_top_k_is_best_first_with_ties_in_insertion_order():
    pool = [
        "bake a chocolate cake",  # 0: shares "a" only
        "write a short poem about the sea",  # 1: identical to the query
        "write a poem about the sea",  # 2
        "compose a short poem about the ocean",  # 3
        "write a short poem about the sea",  # 4: a duplicate of 1, ties with it
    ]
    index = SimilarityIndex(pool)
    query = "Write a short poem about the sea."
    scores = index.scores(query)
    assert len(scores) == len(pool)
    assert scores == [reference(query, text) for text in pool]

    top = index.top_k(query, 3)
    assert [n.index for n in top] == [1, 4, 2]
    assert [n.text for n in top] == [pool[1], pool[4], pool[2]]
    assert top[0].score == top[1].score == 1.0
    assert top[1].score >= top[2].score

    everything = index.top_k(query, 10)
    assert len(everything) == len(pool)
    assert [n.score for n in everything] == sorted(scores, reverse=True)
    assert everything[-1].index == 0

    nearest = index.nearest(query)
    assert nearest is not None
    assert (nearest.index, nearest.text, nearest.score) == (1, pool[1], 1.0)


def test_add_returns_the_position_and_updates_scores():
    index = SimilarityIndex(["alpha beta gamma"])
    assert index.add("delta epsilon") == 1
    assert index.texts == ["alpha beta gamma", "delta epsilon"]
    assert index.scores("delta epsilon") == [0.0, 1.0]
    assert index.nearest("delta epsilon zeta").index == 1


WORDS = st.sampled_from("a an the sea poem cake write short about blue red".split())
TEXTS = st.lists(WORDS, min_size=0, max_size=9).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(
    pool=st.lists(TEXTS, min_size=1, max_size=60), queries=st.lists(TEXTS, min_size=1, max_size=4), k=st.integers(1, 12)
)
def test_top_k_equals_the_full_pass_ties_included(pool, queries, k):
    """`top_k` scores only the items whose token overlap could reach the k-th best; it must return exactly what
    scoring every item and sorting (score down, index up) returns. A small vocabulary makes ties common. Here
    every element held by two items gets flags, most of them while items are being added, between queries."""
    index = SimilarityIndex()
    index.FLAG_MIN, index.FLAG_SHARE = 2, 1 << 20
    for text in pool[: len(pool) // 2]:
        index.add(text)
    index.top_k(pool[0], k)  # the next query starts from this one's k-th best
    for text in pool[len(pool) // 2 :]:
        index.add(text)
    for query in queries:
        scores = index.scores(query)
        expected = sorted(range(len(pool)), key=lambda i: (-scores[i], i))[:k]
        top = index.top_k(query, k)
        assert [n.index for n in top] == expected
        assert [n.score for n in top] == [scores[i] for i in expected]
        assert index.nearest(query).index == expected[0]


# A Zipf-like vocabulary (common words in most texts, rare ones in few) and pools large enough that `top_k` reads
# only the rarest elements' postings whole and searches the common ones.
ZIPF_WORDS = st.sampled_from([f"w{i}" for i in range(40)] + ["the"] * 30 + ["a"] * 20 + ["of"] * 10)
ZIPF_TEXTS = st.lists(ZIPF_WORDS, min_size=1, max_size=14).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(
    pool=st.lists(ZIPF_TEXTS, min_size=50, max_size=400),
    queries=st.lists(ZIPF_TEXTS, min_size=1, max_size=5),
    k=st.integers(1, 12),
)
def test_top_k_equals_the_full_pass_on_large_pools(pool, queries, k):
    index = SimilarityIndex(pool)
    for query in queries:
        scores = index.scores(query)
        expected = sorted(range(len(pool)), key=lambda i: (-scores[i], i))[:k]
        top = index.top_k(query, k)
        assert [(n.index, n.score) for n in top] == [(i, scores[i]) for i in expected]


def test_a_growing_index_with_common_words_stays_exact():
    """Past its first room (1,024 items) every per-item array grows, flags included; common words get flags and
    rare ones keep lists. Every decision, nearest item and top 10 must still be the full pass's."""
    rng = random.Random(7)
    common = ["the", "a", "of", "write", "list", "poem"]
    words = [f"w{i}" for i in range(300)]
    texts = [
        " ".join(rng.choice(common) if rng.random() < 0.5 else rng.choice(words) for _ in range(rng.randint(2, 14)))
        for _ in range(2600)
    ]
    index, rejects_checked = SimilarityIndex(), 0
    for i, text in enumerate(texts):
        if i % 13 == 0 and len(index):  # queries along the way, as the bootstrap asks them
            scores = index.scores(text)
            expected = sorted(range(len(index)), key=lambda j: (-scores[j], j))[:10]
            assert [(n.index, n.score) for n in index.top_k(text, 10)] == [(j, scores[j]) for j in expected]
            best = max(range(len(index)), key=lambda j: (scores[j], -j))
            decision = index.find_similar(text)
            assert decision.kept == (scores[best] <= 0.7)
            assert decision.kept or (decision.nearest.index, decision.nearest.score) == (best, scores[best])
            rejects_checked += not decision.kept
        if index.find_similar(text).kept:
            index.add(text)
    assert len(index) > 1024 and {index._chars["the"], index._chars["a"]} <= set(index._flags)
    assert index._holders  # the rare words keep their lists
    assert rejects_checked >= 5


def test_a_word_common_only_among_the_first_items_goes_back_to_a_list():
    """Flags cost a byte per item of the room: an element that was common among the first items and then stops
    showing up becomes a list again when the room grows; the overlaps, hence every answer, stay exact."""
    rng = random.Random(3)
    words = [f"w{i}" for i in range(500)]
    early = [f"alpha {' '.join(rng.sample(words, 6))}" for _ in range(300)]
    late = [" ".join(rng.sample(words, 7)) for _ in range(4000)]
    index = SimilarityIndex()
    index.FLAG_MIN, index.FLAG_SHARE = 4, 4
    for text in early:
        index.add(text)
    alpha = index._chars["alpha"]
    assert alpha in index._flags  # 300 of 1,024 rooms: common
    for text in late:
        index.add(text)
    assert alpha not in index._flags and len(index._holders[alpha]) == 300  # 300 of 8,192: a list again
    for query in ["alpha " + " ".join(rng.sample(words, 6)), early[7], late[3]]:
        scores = index.scores(query)
        expected = sorted(range(len(index)), key=lambda j: (-scores[j], j))[:10]
        assert [(n.index, n.score) for n in index.top_k(query, 10)] == [(j, scores[j]) for j in expected]
        decision = index.find_similar(query)
        assert decision.kept == (scores[expected[0]] <= 0.7)


@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_texts_of_hundreds_of_tokens_stay_exact(threshold):
    """A question of 256 tokens or more counts overlaps in wider integers than a byte; decisions, nearest items and
    the top 5 must still be the full pass's."""
    rng = random.Random(11)
    words = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(150, 400))) for _ in range(60)]
    texts += [" ".join(t.split()[: rng.randint(200, 300)]) for t in texts[:20]]  # near copies: rejects
    index = SimilarityIndex(threshold=threshold)
    index.FLAG_MIN = 8
    decisions = []
    for text in texts:
        if len(index):
            scores = index.scores(text)
            expected = sorted(range(len(index)), key=lambda j: (-scores[j], j))[:5]
            assert [(n.index, n.score) for n in index.top_k(text, 5)] == [(j, scores[j]) for j in expected]
            decision = index.find_similar(text)
            assert decision.kept == (scores[expected[0]] <= threshold)
            assert decision.kept or (decision.nearest.index, decision.nearest.score) == (
                expected[0],
                scores[expected[0]],
            )
            decisions.append(decision.kept)
        if index.find_similar(text).kept:
            index.add(text)
    assert index._flags and max(len(t.split()) for t in texts) >= 256
    assert 0 < sum(decisions) < len(decisions)  # both kinds of decision


@pytest.mark.parametrize("block", [1, 3, 32])
def test_sequential_filter_in_runs_decides_like_one_text_at_a_time(monkeypatch, block):
    """`sequential_filter` screens runs of texts at once (their candidates in one pass, their scores with each
    other in one call); whatever the run length, every decision and nearest neighbour is the streaming index's."""
    rng = random.Random(block)
    words = "the a write poem sea short about story cat dog list three red blue".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(400)]
    against = texts[:5]
    monkeypatch.setattr(similarity, "_BLOCK", block)
    batch = sequential_filter(texts[5:], 0.7, against)
    index = SimilarityIndex(against)
    for text, decision in zip(texts[5:], batch, strict=True):
        streamed = index.find_similar(text)
        assert decision == streamed
        if streamed.kept:
            index.add(text)
    assert 50 < sum(d.kept for d in batch) < 390  # both kinds of decision, many times


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 1.0])
def test_the_vectorised_need_is_need_bit_for_bit(threshold):
    # The filters look `need` up by m + n in a table computed with numpy; a single different entry would drop a
    # pair the reference rejects, or waste a check.
    table = SimilarityIndex(threshold=threshold)._need_by_sum(700)
    assert all(table[m + n] == need(m, n, threshold) for m in range(350) for n in range(0, 350, 7))
