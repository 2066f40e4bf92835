"""Chat answers written blind to the parsers: helpers that never read the parsing code wrote answers the way real
chat models answer the three prompts (numbered, lettered and bulleted lists, sub-bullets and "Category:" notes
under a task, tables and tab-separated rows, JSON and YAML in and out of fences, XML tags, emoji, verdicts after
reasoning or in one word, inputs before labels, "Q:"/"A:" fields, code blocks, asides), each with what a careful
human would extract. One test per answer, from tests/data/blind_chat_answers*.jsonl:

- blind_chat_answers.jsonl (150 answers), blind_chat_answers_2.jsonl (120, favouring rarer shapes) and
  blind_chat_answers_3.jsonl (90, everyday shapes, held out until both rounds of fixes were done): each was
  measured before the parsers were fixed for it (docs/chat-models.md has the numbers), then kept here.

Three expectations follow the paper's parsing rule instead of their writer's (their `note` field says which).
benchmarks/chat_shapes.py runs the whole pipeline on the shapes of selfinstruct.chatshapes; these are the shapes
no one wrote the parser for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfinstruct.lm import Completion
from selfinstruct.stages.bootstrap import parse_instructions
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import parse_instances

CORPORA = sorted((Path(__file__).parent / "data").glob("blind_chat_answers*.jsonl"))
ANSWERS = [
    {**json.loads(line), "file": path.stem, "line": number}
    for path in CORPORA
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
    if line.strip()
]


def _id(case: dict) -> str:
    return f"{case['file']}:{case['line']}-{case['model']}"


def test_the_corpora_cover_every_stage_and_both_instance_kinds():
    assert len(CORPORA) >= 2
    for path in CORPORA:
        cases = [case for case in ANSWERS if case["file"] == path.stem]
        assert {case["stage"] for case in cases} == {"bootstrap", "classify", "instances"}
        assert {case["kind"] for case in cases if case["stage"] == "instances"} == {"generation", "classification"}
        assert {case["expected"] for case in cases if case["stage"] == "classify"} == {"yes", "no"}


@pytest.mark.parametrize("case", [c for c in ANSWERS if c["stage"] == "bootstrap"], ids=_id)
def test_bootstrap_answer(case):
    parsed = parse_instructions(Completion(case["answer"], "stop", 0, 0), chat=True)
    assert [text for text, problem in parsed if not problem] == case["expected"]


@pytest.mark.parametrize("case", [c for c in ANSWERS if c["stage"] == "classify"], ids=_id)
def test_classify_answer(case):
    assert parse_answer(case["answer"]) == case["expected"]


@pytest.mark.parametrize("case", [c for c in ANSWERS if c["stage"] == "instances"], ids=_id)
def test_instances_answer(case):
    parsed = parse_instances(Completion(case["answer"], "stop", 0, 0), case["kind"] == "classification")
    assert [(i, o) for i, o, problem in parsed if not problem] == [tuple(pair) for pair in case["expected"]]
