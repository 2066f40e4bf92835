"""The fast novelty filter decides exactly as rouge_score does, on random corpora built to collide."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

from selfinstruct.cli import cli
from selfinstruct.devserver import DevServer, ServerConfig
from selfinstruct.pipeline import Run
from selfinstruct.similarity import SimilarityIndex, sequential_filter, tokenize_unicode

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
REAL = sorted((SHARED / "data" / "real-instructions").glob("*.json"))


def reference_filter(texts: list[str], threshold: float, against: list[str] = ()) -> list[tuple[bool, float]]:
    """The paper's / Alpaca's loop: score against every kept text with rouge_score, reject when max > threshold."""
    pool, out = list(against), []
    for text in texts:
        best = max((SCORER.score(p, text)["rougeL"].fmeasure for p in pool), default=0.0)
        kept = best <= threshold
        out.append((kept, best))
        if kept:
            pool.append(text)
    return out


# Few words, repeated tokens and varied lengths: many pairs land near and exactly on the threshold.
words = st.sampled_from(["the", "a", "cat", "dog", "sat", "on", "mat", "red", "big", "run", "x1", "Tea!"])
texts = st.lists(words, min_size=0, max_size=14).map(" ".join)
corpora = st.lists(texts, min_size=1, max_size=40)
thresholds = st.sampled_from([0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 1.0])


@settings(max_examples=1000, deadline=None)
@given(corpus=corpora, against=st.lists(texts, max_size=5), threshold=thresholds)
def test_sequential_filter_decides_like_rouge_score(corpus: list[str], against: list[str], threshold: float) -> None:
    ours = sequential_filter(corpus, threshold, against)
    reference = reference_filter(corpus, threshold, against)
    assert [d.kept for d in ours] == [kept for kept, _ in reference]
    for decision, (kept, best) in zip(ours, reference, strict=True):
        if not kept:  # a reject names its nearest neighbour with the reference's exact score
            assert decision.nearest is not None and decision.nearest.score == best


@settings(max_examples=200, deadline=None)
@given(corpus=corpora, threshold=thresholds)
def test_streaming_index_decides_like_the_batch_filter(corpus: list[str], threshold: float) -> None:
    # The bootstrap stage adds to an index as it goes, with no global order known in advance.
    index = SimilarityIndex(threshold=threshold)
    streamed = []
    for text in corpus:
        decision = index.find_similar(text)
        if decision.kept:
            index.add(text)
        streamed.append(decision)
    assert streamed == sequential_filter(corpus, threshold)


def test_exact_tie_is_decided_like_the_reference() -> None:
    # 7 of 10 tokens in common at lengths 10 and 10: F1 is 0.7 in exact arithmetic.
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven x y z"
    reference = SCORER.score(a, b)["rougeL"].fmeasure
    assert sequential_filter([a, b], 0.7)[1].kept == (reference <= 0.7)
    assert sequential_filter([a, b], reference)[1].kept  # equal to the threshold: kept
    assert not sequential_filter([a, b], reference - 1e-12)[1].kept


def test_score_exactly_at_a_cutoff_is_not_lost() -> None:
    # Found by hypothesis: rapidfuzz's own cutoff rounding dropped a pair scoring exactly the threshold, whose
    # reference float score (0.8000000000000002) is above it.
    assert SCORER.score("the the the the a", "the the the the the")["rougeL"].fmeasure > 0.8
    assert not sequential_filter(["the the the the the"], 0.8, ["the the the the a"])[0].kept


def test_unicode_tokenizer_deduplicates_cjk_and_other_scripts() -> None:
    chinese = ["请写一首关于春天的诗", "请写一首关于春天的短诗"]
    arabic = ["اكتب قصيدة عن الربيع", "اكتب قصيدة عن الربيع الجميل"]
    # rouge_score's tokenizer sees no tokens in either: nothing is ever a duplicate.
    assert all(d.kept for d in sequential_filter(chinese + arabic, 0.7))
    kept = [d.kept for d in sequential_filter(chinese + arabic, 0.7, tokenizer="unicode")]
    assert kept == [True, False, True, False]
    assert tokenize_unicode("Hello, 世界! Ünïcode_words 42") == ["hello", "世", "界", "ünïcode", "words", "42"]


def test_top_k_and_nearest_are_exact() -> None:
    pool = ["write a poem about the sea", "write a story about the sea", "list three colours", ""]
    index = SimilarityIndex(pool)
    top = index.top_k("write a poem about a sea", 3)
    expected = sorted(
        ((SCORER.score(p, "write a poem about a sea")["rougeL"].fmeasure, -i) for i, p in enumerate(pool)), reverse=True
    )[:3]
    assert [(n.score, -n.index) for n in top] == expected
    assert index.nearest("list three colours").text == "list three colours"


# --- the dedup command --------------------------------------------------------------------------


def run_dedup(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["dedup", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_dedup_command_formats(tmp_path: Path, suffix: str) -> None:
    rows = [
        {"instruction": "Write a poem about the sea.", "id": "1"},
        {"instruction": "Write a poem about the sea!", "id": "2"},
        {"instruction": "List three primary colours.", "id": "3"},
    ]
    source = tmp_path / "rows.json"
    source.write_text(json.dumps(rows))
    out, rejects = tmp_path / f"kept{suffix}", tmp_path / "rejects.jsonl"
    code, output = run_dedup(str(source), "--output", str(out), "--rejects", str(rejects))
    assert code == 0, output
    assert "kept 2 of 3 rows" in output
    code, _ = run_dedup(str(out), "--output", str(tmp_path / "again.json"))  # the output reads back
    assert code == 0
    assert [r["id"] for r in json.loads((tmp_path / "again.json").read_text())] == ["1", "3"]
    (rejected,) = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert rejected["id"] == "2" and rejected["max_rouge"] == 1.0
    assert rejected["nearest"] == "Write a poem about the sea."


def test_dedup_against_seeds_and_stdout(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"instruction": "List three primary colours."}) + "\n")
    source = tmp_path / "rows.csv"
    source.write_text("instruction,input\nList the three primary colours.,\nName a mammal that flies.,\n")
    code, output = run_dedup(str(source), "--against", str(seeds))
    assert code == 0
    assert json.loads(output.splitlines()[0]) == {"instruction": "Name a mammal that flies.", "input": ""}


def test_dedup_errors(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text('{"instruction": "a b c"}\n{"prompt": "x"}\n')
    code, output = run_dedup(str(source), "--output", str(tmp_path / "out.jsonl"))
    assert code == 2 and "rows.jsonl:2: no field 'instruction' (fields here: prompt); choose one with --field" in output
    assert not (tmp_path / "out.jsonl").exists()
    source.write_text('{"instruction": "a b c"}\n{"instruction": \n')
    code, output = run_dedup(str(source))
    assert code == 2 and "rows.jsonl:2: invalid JSON" in output
    code, output = run_dedup(str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json: file not found" in output


@pytest.mark.skipif(not REAL, reason="../shared is not present")
@pytest.mark.parametrize("path", REAL, ids=[p.name for p in REAL])
def test_dedup_on_the_shared_corpora(tmp_path: Path, path: Path) -> None:
    code, output = run_dedup(
        str(path), "--output", str(tmp_path / "kept.json"), "--rejects", str(tmp_path / "rejects.jsonl")
    )
    assert code == 0, output
    kept = json.loads((tmp_path / "kept.json").read_text())
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejects) == len(json.loads(path.read_text()))
    kept_texts = {row["instruction"] for row in kept}
    for row in rejects[:200]:  # each reject really is too close to a kept row, by the reference's own score
        assert row["nearest"] in kept_texts
        assert SCORER.score(row["nearest"], row["instruction"])["rougeL"].fmeasure == row["max_rouge"] > 0.7


# Real-looking instructions that share many words: spliced by the dev server, they collide often.
OVERLAPPING = [
    "Write a short poem about the sea at night.",
    "Write a short story about a dog who learns to swim.",
    "Write a product description for a waterproof phone case.",
    "Summarize the following news article in two sentences.",
    "Summarize the main argument of the following essay.",
    "Translate the following sentence into French.",
    "Translate the following paragraph into plain English.",
    "Classify the sentiment of the following review as positive or negative.",
    "Classify the following email as spam or not spam.",
    "List five ways to save water at home.",
    "List three benefits of regular exercise for older adults.",
    "Explain how a refrigerator keeps food cold.",
    "Explain the difference between weather and climate to a child.",
    "Give three tips for writing a clear cover letter.",
    "Give an example of a sentence that uses a metaphor.",
    "Rewrite the following sentence in the passive voice.",
    "Rewrite the following paragraph to make it more formal.",
    "Find the grammatical error in the following sentence.",
    "Suggest a name for a bakery that sells vegan cakes.",
    "Suggest three questions to ask at the end of a job interview.",
]


def test_an_ordered_bootstrap_records_exactly_what_full_passes_give(tmp_path: Path) -> None:
    """The novelty filter and the neighbours read only part of the pool; candidate by candidate, in the order they
    were judged, the verdict, the nearest instruction, the scores and the ten neighbours recorded must be exactly
    what scoring the whole pool gives (ties: the earlier pool instruction first)."""
    with DevServer(ServerConfig(instructions=tuple(OVERLAPPING), splice=True)) as server:
        lm = {"backend": "openai", "model": "tiny", "base_url": server.base_url, "ordered": True, "concurrency": 8}
        with Run.open(tmp_path, {"num_instructions": 120, "lm": lm}) as run:
            run.bootstrap()
            rows = run.store._db.execute(
                "SELECT origin, text, verdict, reason, max_rouge, nearest, neighbours, mean_rouge FROM instructions"
                " ORDER BY id"
            ).fetchall()
    pool = SimilarityIndex()
    reasons = Counter()
    for origin, text, verdict, reason, max_rouge, nearest, neighbours, mean_rouge in rows:
        if origin == "seed":
            pool.add(text)
            continue
        scores = pool.scores(text)
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        best = ranked[0]
        reasons[reason.split(" (")[0]] += 1
        assert (max_rouge, nearest) == (scores[best], pool.texts[best]), text
        if verdict == "accepted":
            assert scores[best] <= 0.7
            top = [[pool.texts[i], scores[i]] for i in ranked[:10]]
            assert json.loads(neighbours) == top
            assert mean_rouge == sum(s for _, s in top) / 10
            pool.add(text)
        elif reason.startswith("too_similar"):
            assert scores[best] > 0.7
    assert reasons["too_similar"] >= 20 and reasons[""] >= 120, reasons  # both kinds of verdict, many times
