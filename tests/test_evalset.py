"""The project's own user-oriented evaluation set: shape, ids, balance across apps, and no near-duplicates."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib.resources import files
from itertools import combinations

import pytest

from selfinstruct.similarity import rouge_l, tokenize

KEYS = {"id", "motivation_app", "instruction", "instances"}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    text = files("selfinstruct").joinpath("evalsets", "user_oriented.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_fifty_items_with_exact_keys(items: list[dict]) -> None:
    assert len(items) == 50
    for item in items:
        assert set(item) == KEYS, item.get("id")
        assert isinstance(item["motivation_app"], str) and item["motivation_app"].strip()
        assert isinstance(item["instruction"], str) and item["instruction"].strip()


def test_ids_unique_and_in_pattern(items: list[dict]) -> None:
    ids = [item["id"] for item in items]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"user_oriented_task_(0|[1-9][0-9]*)", i) for i in ids)
    assert ids == [f"user_oriented_task_{n}" for n in range(len(items))]


def test_one_instance_each_with_input_and_output(items: list[dict]) -> None:
    for item in items:
        assert len(item["instances"]) == 1, item["id"]
        instance = item["instances"][0]
        assert "input" in instance and isinstance(instance["input"], str), item["id"]
        assert isinstance(instance.get("output"), str) and instance["output"].strip(), item["id"]


def test_apps_balanced(items: list[dict]) -> None:
    counts = Counter(item["motivation_app"] for item in items)
    assert max(counts.values()) <= 4, counts.most_common(3)


def test_share_of_empty_inputs(items: list[dict]) -> None:
    empty = sum(item["instances"][0]["input"] == "" for item in items)
    assert 10 <= empty <= 25


def test_no_near_duplicate_instructions(items: list[dict]) -> None:
    tokens = [(item["id"], tokenize(item["instruction"])) for item in items]
    for (id_a, a), (id_b, b) in combinations(tokens, 2):
        assert rouge_l(a, b) <= 0.7, (id_a, id_b)
