"""Chat answers written blind to the parsers: a helper that never read the parsing code wrote 150 answers the way
real chat models answer the three prompts (numbered and bulleted lists, sub-bullets and "Category:" notes under
a task, tables, JSON in and out of fences, verdicts after reasoning, inputs before labels, code blocks, asides),
each with what a careful human would extract. tests/data/blind_chat_answers.jsonl; one test per answer. One
expectation follows the paper's parsing rule instead of its writer's (its `note` field says which).
benchmarks/chat_shapes.py runs the pipeline on the shapes of selfinstruct.chatshapes; these are the shapes no one
wrote the parser for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfinstruct.lm import Completion
from selfinstruct.stages.bootstrap import parse_instructions
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import parse_instances

CORPUS = Path(__file__).parent / "data" / "blind_chat_answers.jsonl"
ANSWERS = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _id(case: dict) -> str:
    return f"{case['stage']}-{case['model']}"


def test_the_corpus_covers_every_stage_and_both_instance_kinds():
    stages = [case["stage"] for case in ANSWERS]
    assert {stage: stages.count(stage) for stage in set(stages)} == {"bootstrap": 50, "classify": 50, "instances": 50}
    assert {case["kind"] for case in ANSWERS if case["stage"] == "instances"} == {"generation", "classification"}


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
