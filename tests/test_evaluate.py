"""`selfinstruct evaluate`: ROUGE-L scoring equal to rouge_score, generation over HTTP, the judge, comparison."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SHARED

from selfinstruct.cli import cli
from selfinstruct.devserver import DevServer
from selfinstruct.evaluate import load_eval_set, parse_rating, prompt_for
from selfinstruct.similarity import rouge_l_f1


def write_predictions(path: Path, pairs: list[tuple[str, str]]) -> None:
    rows = [
        {"prompt": "p", "instruction": "i", "input": "", "response": response, "target": target}
        for target, response in pairs
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def texts() -> list[str]:
    corpus = sorted(SHARED.glob("data/real-instructions/*.json"))
    if corpus:
        rows = json.loads(corpus[0].read_text())
        return [str(r.get("output") or r.get("response") or "") for r in rows[:400]]
    rng = random.Random(0)
    words = "the a cat dog sat on mat quickly runs jumps over lazy fox 42 3.5 don't e-mail".split()
    return [" ".join(rng.choices(words, k=rng.randint(0, 30))) for _ in range(400)]


def test_predictions_are_scored_exactly_as_rouge_score(tmp_path: Path) -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    outputs = texts()
    rng = random.Random(1)
    files = []
    for name in ("base", "tuned"):
        pairs = [(t, rng.choice(outputs)) for t in outputs]
        pairs += [(t, t[: len(t) // 2]) for t in outputs[:50]]  # partial overlaps, not only unrelated pairs
        write_predictions(tmp_path / f"{name}.jsonl", pairs)
        files.append((tmp_path / f"{name}.jsonl", pairs))
    result = CliRunner().invoke(
        cli, ["evaluate", "--predictions", str(files[0][0]), str(files[1][0]), "--output", str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    for path, pairs in files:
        expected = sum(scorer.score(t, r)["rougeL"].fmeasure for t, r in pairs) / len(pairs)
        assert scores[str(path)]["n"] == len(pairs)
        assert round(scores[str(path)]["rougeL"], 4) == round(expected, 4)
        assert scores[str(path)]["rougeL"] == pytest.approx(expected, abs=1e-12)
        assert f"{expected:.4f}" in result.output


def test_a_bad_prediction_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "x", "target": "y"}\n{"response": "only a response"}\n')
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: a prediction needs string fields target" in result.output


def test_usage_errors_are_clear(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["evaluate"])
    assert result.exit_code == 2 and "give either --predictions FILE... or --model MODEL" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--model", "x.gguf"])
    assert result.exit_code == 2 and "--model and --judge need --out DIR" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 2 and "no such model file or directory" in result.output


def test_ratings_are_parsed_from_capital_letters_only() -> None:
    assert parse_rating(" B") == "B"
    assert parse_rating("Rating: C, because") == "C"
    assert parse_rating("a good answer") is None
    assert parse_rating("A response like this deserves D") == "D"  # the article "A" is not a rating
    assert parse_rating("A") == "A"
    assert parse_rating("A: valid and satisfying") == "A"
    assert parse_rating("I would rate it A.") == "A"
    assert parse_rating("A good response overall. B") == "B"


def test_eval_set_prompts_use_the_fine_tuning_template() -> None:
    items = load_eval_set()
    assert len(items) == 50
    with_input = next(i for i in items if i.input)
    assert prompt_for(with_input) == f"{with_input.instruction.strip()}\n\nInput: {with_input.input.strip()}\n\nOutput:"


def test_two_models_over_http_with_a_judge(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    with DevServer() as server:
        args = ["evaluate", "--model", "base", "--model", "tuned", "--base-url", server.base_url, "--out", str(out)]
        result = CliRunner().invoke(
            cli, [*args, "--judge", "openai", "--judge-model", "judge", "--judge-base-url", server.base_url]
        )
        assert result.exit_code == 0, result.output
        served = server.counts["ok"]
        # Run again: every answer comes from the evaluation's journal, nothing is sent.
        result = CliRunner().invoke(
            cli, [*args, "--judge", "openai", "--judge-model", "judge", "--judge-base-url", server.base_url]
        )
        assert result.exit_code == 0, result.output
        assert server.counts["ok"] == served
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores["models"]) == {"base", "tuned"}
    for label, entry in scores["models"].items():
        rows = [json.loads(line) for line in (out / f"predictions-{label}.jsonl").read_text().splitlines()]
        assert len(rows) == entry["n"] == 50
        assert set(rows[0]) >= {"prompt", "instruction", "input", "response", "target"}
        mean = sum(rouge_l_f1(r["target"], r["response"]) for r in rows) / len(rows)
        assert entry["rougeL"] == pytest.approx(mean)
        judged = entry["judge"]
        assert sum(judged[r] for r in "ABCD") + judged["unparsed"] == 50 and judged["unparsed"] == 0
        verdicts = [json.loads(line) for line in (out / f"judgements-{label}.jsonl").read_text().splitlines()]
        assert all(v["raw"] and v["rating"] in "ABCD" for v in verdicts)  # the raw answers are kept
    c = scores["comparison"]
    assert c["wins"] + c["ties"] + c["losses"] == 50
    html = (out / "report.html").read_text()
    assert "Side by side" in html and html.count("<tr>") > 50 and "<script>" not in html
