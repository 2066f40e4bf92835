"""Seed tasks: the project's default set, the paper's file, the flat formats and the error messages."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest

from selfinstruct.filters import check_instruction, instruction_filters
from selfinstruct.records import InputError
from selfinstruct.seeds import DEFAULT_SEED_TASKS, Instance, load_seed_tasks
from selfinstruct.similarity import SimilarityIndex, rouge_l, tokenize

PAPER_SEEDS = Path(__file__).parents[1].parent / "shared/data/original-format/seed_tasks.jsonl"


def paper_row(i: int, instruction: str, **extra: object) -> dict:
    row = {
        "id": f"seed_task_{i}",
        "name": f"task_{i}",
        "instruction": instruction,
        "instances": [{"input": "", "output": "An answer."}],
        "is_classification": False,
    }
    row.update(extra)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_seed_tasks(path)
    return str(info.value)


# --- the project's default seed set -------------------------------------------------------------


@pytest.fixture(scope="module")
def default_seeds():
    return load_seed_tasks()


def test_default_seed_set_has_175_tasks_with_unique_ids(default_seeds):
    assert load_seed_tasks(DEFAULT_SEED_TASKS) == default_seeds
    assert len(default_seeds) == 175
    assert len({task.id for task in default_seeds}) == 175
    assert all(task.instances for task in default_seeds)
    assert all(task.is_classification is not None for task in default_seeds)


def test_default_seed_set_mix_of_task_kinds(default_seeds):
    classification = sum(task.is_classification for task in default_seeds)
    no_input = sum(all(not inst.input for inst in task.instances) for task in default_seeds)
    assert 20 <= classification <= 30
    assert 40 <= no_input <= 60


def test_default_seed_instructions_pass_the_instruction_filters(default_seeds):
    filters = instruction_filters(4, 150)
    failures = {task.id: check_instruction(task.instruction, filters) for task in default_seeds}
    assert {k: v for k, v in failures.items() if not v[0]} == {}


def test_default_seed_instructions_are_mutually_novel(default_seeds):
    index = SimilarityIndex()
    too_similar = []
    for task in default_seeds:
        nearest = index.nearest(task.instruction)
        if nearest is not None and nearest.score > 0.7:
            too_similar.append((task.instruction, nearest.text, nearest.score))
        index.add(task.instruction)
    assert too_similar == []
    # The same check pairwise, from the other direction (ROUGE-L F1 is symmetric).
    tokens = [tokenize(task.instruction) for task in default_seeds]
    assert max(rouge_l(a, b) for a, b in combinations(tokens, 2)) <= 0.7


def test_paper_seed_file_loads():
    if not PAPER_SEEDS.is_file():
        pytest.skip(f"{PAPER_SEEDS} is not present")
    tasks = load_seed_tasks(PAPER_SEEDS)
    assert len(tasks) == 175
    assert len({task.id for task in tasks}) == 175
    assert all(task.is_classification in (True, False) for task in tasks)


# --- accepted formats ---------------------------------------------------------------------------


def test_paper_format_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "seeds.jsonl",
        [
            paper_row(0, "  Give three synonyms for the word.  ", instances=[{"input": "happy", "output": "glad"}]),
            paper_row(
                1,
                "Is the number even or odd?",
                instances=[{"input": "4", "output": "Even"}, {"input": "7", "output": "Odd"}],
                is_classification=True,
            ),
        ],
    )
    first, second = load_seed_tasks(path)
    assert (first.id, first.name, first.instruction) == ("seed_task_0", "task_0", "Give three synonyms for the word.")
    assert first.instances == (Instance("happy", "glad"),)
    assert first.is_classification is False
    assert second.instances == (Instance("4", "Even"), Instance("7", "Odd"))
    assert second.is_classification is True


def test_flat_json_list(tmp_path):
    path = tmp_path / "seeds.json"
    rows = [
        {"instruction": "Translate the sentence to French.", "input": "Good morning", "output": "Bonjour"},
        {"instruction": "Name a primary color.", "output": "Red"},
    ]
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    tasks = load_seed_tasks(path)
    assert [t.instruction for t in tasks] == ["Translate the sentence to French.", "Name a primary color."]
    assert tasks[0].instances == (Instance("Good morning", "Bonjour"),)
    assert tasks[1].instances == (Instance("", "Red"),)  # a missing input is an empty input
    assert [t.id for t in tasks] == ["seed_task_0", "seed_task_1"]
    assert all(t.is_classification is None for t in tasks)


def test_flat_jsonl_with_blank_lines(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        '{"instruction": "Sort the numbers in ascending order.", "input": "3, 1, 2", "output": "1, 2, 3"}\n'
        "\n"
        '{"instruction": "Tell a short joke about cats.", "input": "", "output": "Purr-haps."}\n',
        encoding="utf-8",
    )
    tasks = load_seed_tasks(path)
    assert [t.instances for t in tasks] == [(Instance("3, 1, 2", "1, 2, 3"),), (Instance("", "Purr-haps."),)]


def test_flat_row_with_response_instead_of_output(tmp_path):
    path = write_jsonl(
        tmp_path / "alpaca.jsonl",
        [{"instruction": "Give a synonym for the word.", "input": "big", "response": "large"}],
    )
    (task,) = load_seed_tasks(path)
    assert task.instances == (Instance("big", "large"),)


def test_flat_csv_with_classification_strings(tmp_path):
    path = tmp_path / "seeds.csv"
    path.write_text(
        "instruction,input,output,is_classification\n"
        'Is the review positive or negative?,"I loved it, truly.",Positive,true\n'
        "Write a limerick about a frog.,,There once was a frog...,no\n"
        "Name the capital of the country.,France,Paris,\n",
        encoding="utf-8",
    )
    tasks = load_seed_tasks(path)
    assert [t.instances for t in tasks] == [
        (Instance("I loved it, truly.", "Positive"),),
        (Instance("", "There once was a frog..."),),
        (Instance("France", "Paris"),),
    ]
    assert [t.is_classification for t in tasks] == [True, False, None]


def test_utf8_bom_is_ignored(tmp_path):
    row = {"instruction": "Summarize the paragraph in one sentence.", "input": "Text.", "output": "Summary."}
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps(row).encode() + b"\n")
    csv_file = tmp_path / "bom.csv"
    csv_file.write_bytes(
        b"\xef\xbb\xbfinstruction,input,output\nSummarize the paragraph in one sentence.,Text.,Summary.\n"
    )
    for path in (jsonl, csv_file):
        (task,) = load_seed_tasks(path)
        assert task.instruction == "Summarize the paragraph in one sentence."
        assert task.instances == (Instance("Text.", "Summary."),)


# --- errors name the file and the line ----------------------------------------------------------


def test_invalid_json_on_line_3(tmp_path):
    path = tmp_path / "seeds.jsonl"
    good = json.dumps(paper_row(0, "Give an example of a prime number."))
    other = json.dumps(paper_row(1, "Give an example of an even number."))
    path.write_text(f"{good}\n{other}\n{{not json\n", encoding="utf-8")
    message = load_error(path)
    assert f"{path}:3:" in message
    assert "invalid JSON" in message


def test_missing_instruction(tmp_path):
    path = write_jsonl(
        tmp_path / "seeds.jsonl",
        [paper_row(0, "Give an example of a prime number."), {"id": "x", "instances": [{"input": "", "output": "y"}]}],
    )
    message = load_error(path)
    assert f"{path}:2:" in message
    assert "missing field 'instruction'" in message


def test_instruction_of_the_wrong_type(tmp_path):
    path = write_jsonl(tmp_path / "seeds.jsonl", [paper_row(0, 42)])  # type: ignore[arg-type]
    message = load_error(path)
    assert f"{path}:1:" in message
    assert "'instruction' must be a string, got int" in message


def test_empty_instruction(tmp_path):
    path = write_jsonl(tmp_path / "seeds.jsonl", [paper_row(0, "   ")])
    message = load_error(path)
    assert f"{path}:1:" in message
    assert "'instruction' is empty" in message


@pytest.mark.parametrize("name, content", [("empty.jsonl", ""), ("blank.jsonl", "\n\n  \n"), ("empty.json", "[]")])
def test_empty_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    message = load_error(path)
    assert str(path) in message
    assert "empty" in message


def test_empty_csv_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    message = load_error(path)
    assert str(path) in message
    assert "empty" in message


def test_duplicate_ids(tmp_path):
    path = write_jsonl(
        tmp_path / "seeds.jsonl",
        [
            paper_row(0, "Give an example of a prime number."),
            paper_row(1, "Give an example of an even number."),
            paper_row(0, "Give an example of an odd number."),
        ],
    )
    message = load_error(path)
    assert f"{path}:3:" in message
    assert "duplicate seed id 'seed_task_0'" in message
    assert f"{path}:1" in message  # where the first one is


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "seeds.jsonl"
    good = json.dumps(paper_row(0, "Give an example of a prime number.")).encode()
    path.write_bytes(good + b"\n" + b'{"instruction": "Caf\xe9 menu"}\n')  # Latin-1 e-acute
    message = load_error(path)
    assert f"{path}:2:" in message
    assert "UTF-8" in message


def test_empty_instances_list(tmp_path):
    path = write_jsonl(tmp_path / "seeds.jsonl", [paper_row(0, "Give an example of a prime number.", instances=[])])
    message = load_error(path)
    assert f"{path}:1:" in message
    assert "'instances' must be a non-empty list" in message


def test_instance_without_output(tmp_path):
    path = write_jsonl(
        tmp_path / "seeds.jsonl", [paper_row(0, "Give an example of a prime number.", instances=[{"input": "x"}])]
    )
    message = load_error(path)
    assert f"{path}:1:" in message
    assert "instances[0]" in message and "missing field 'output'" in message


def test_bad_is_classification_value_in_csv(tmp_path):
    path = tmp_path / "seeds.csv"
    path.write_text("instruction,output,is_classification\nIs the sky blue today?,Yes,maybe\n", encoding="utf-8")
    message = load_error(path)
    assert f"{path}:2:" in message
    assert "is_classification" in message and "'maybe'" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    message = load_error(path)
    assert str(path) in message and "not found" in message


# --- formerly bugs: line separators inside JSON strings, line breaks inside CSV fields ----------------


def test_jsonl_with_a_raw_line_separator_inside_a_string(tmp_path):
    path = tmp_path / "seeds.jsonl"
    row = {"instruction": "Greet the user\u2028politely.", "input": "", "output": "Hello!"}
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")  # valid JSON Lines
    (task,) = load_seed_tasks(path)
    assert task.instruction == "Greet the user\u2028politely."


def test_csv_multiline_quoted_output_keeps_its_newline(tmp_path):
    path = tmp_path / "seeds.csv"
    path.write_text('instruction,input,output\nWrite a two-line poem about rain.,,"Line one\nLine two"\n')
    (task,) = load_seed_tasks(path)
    assert task.instances == (Instance("", "Line one\nLine two"),)
