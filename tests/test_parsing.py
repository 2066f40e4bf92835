"""Prompt building and response parsing of the bootstrap, classify and prepare stages (no LM involved)."""

from __future__ import annotations

import random

import pytest

from selfinstruct.lm import Completion
from selfinstruct.stages.bootstrap import clean_instruction, encoder, parse_instructions, sample_prompt_instructions
from selfinstruct.stages.classify import parse_answer
from selfinstruct.stages.prepare import judge_instances, parse_instances
from selfinstruct.stages.prompts import load as load_prompts

encode_prompt = encoder(load_prompts(), chat=False)


def completion(text: str, finish_reason: str = "stop") -> Completion:
    return Completion(text, finish_reason, 0, 0)


# --- bootstrap: the prompt ----------------------------------------------------------------------


def test_encode_prompt_numbers_the_instructions_and_opens_the_next_item():
    instructions = [f"Instruction number {i}." for i in range(1, 9)]
    prompt = encode_prompt(instructions)
    lines = prompt.split("\n")
    assert lines[0] == "Come up with a series of tasks:"
    assert lines[1:9] == [f"{i}. Instruction number {i}." for i in range(1, 9)]
    assert lines[9] == "9."
    assert len(lines) == 10
    assert prompt.endswith("\n8. Instruction number 8.\n9.")


def test_encode_prompt_collapses_whitespace_and_strips_a_trailing_colon():
    prompt = encode_prompt(["  Rewrite the\nsentence\t in  the passive voice:  ", "Answer the question:"])
    assert prompt == (
        "Come up with a series of tasks:\n1. Rewrite the sentence in the passive voice\n2. Answer the question\n3."
    )


# --- bootstrap: sampling the in-context instructions --------------------------------------------

SEEDS = [f"seed instruction {i}" for i in range(175)]
MACHINE = [f"machine instruction {i}" for i in range(30)]


def test_sample_takes_two_machine_and_six_seed_instructions():
    shown = sample_prompt_instructions(random.Random(1), SEEDS, MACHINE)
    assert len(shown) == 8
    assert len(set(shown)) == 8
    assert sum(s in MACHINE for s in shown) == 2
    assert sum(s in SEEDS for s in shown) == 6


def test_sample_takes_eight_seeds_when_there_is_no_machine_instruction():
    shown = sample_prompt_instructions(random.Random(1), SEEDS, [])
    assert len(shown) == 8
    assert len(set(shown)) == 8
    assert set(shown) <= set(SEEDS)


def test_sample_fills_with_seeds_when_the_machine_pool_is_small():
    shown = sample_prompt_instructions(random.Random(1), SEEDS, MACHINE[:1])
    assert len(shown) == 8
    assert sum(s in MACHINE for s in shown) == 1
    assert sum(s in SEEDS for s in shown) == 7


def test_sample_respects_custom_counts():
    shown = sample_prompt_instructions(random.Random(3), SEEDS, MACHINE, total=5, from_machine=3)
    assert (sum(s in MACHINE for s in shown), sum(s in SEEDS for s in shown)) == (3, 2)


def test_sample_is_reproducible_for_the_same_seed():
    first = sample_prompt_instructions(random.Random("42:bootstrap:0"), SEEDS, MACHINE)
    again = sample_prompt_instructions(random.Random("42:bootstrap:0"), SEEDS, MACHINE)
    assert first == again
    others = {tuple(sample_prompt_instructions(random.Random(seed), SEEDS, MACHINE)) for seed in range(5)}
    assert len(others) > 1  # the sample does depend on the seed


def test_sample_from_the_first_pool_size_items_draws_what_a_copy_of_them_draws():
    # Ordered mode samples from the pool as it was when the prompt's request was launched: without copying it.
    pool = [f"machine instruction {i}" for i in range(5000)]
    for size in (0, 1, 2, 3, 21, 22, 30, 1000, 5000):
        for seed in range(20):
            view = sample_prompt_instructions(random.Random(f"{seed}:{size}"), SEEDS, pool, pool_size=size)
            copy = sample_prompt_instructions(random.Random(f"{seed}:{size}"), SEEDS, pool[:size])
            assert view == copy
            assert all(int(s.split()[-1]) < size for s in view if s in pool)


def test_sample_shuffles_machine_instructions_among_seeds():
    positions = set()
    for seed in range(50):
        shown = sample_prompt_instructions(random.Random(seed), SEEDS, MACHINE)
        positions |= {i for i, s in enumerate(shown) if s in MACHINE}
    assert positions == set(range(8))


# --- bootstrap: parsing the response ------------------------------------------------------------

RESPONSE = " First task here.\n10. Second task here.\n11. Third"


def items(text: str, finish_reason: str = "stop") -> list[str]:
    return [item for item, problem in parse_instructions(completion(text, finish_reason)) if not problem]


def test_parse_instructions_splits_numbered_items():
    assert items(RESPONSE) == ["First task here.", "Second task here.", "Third"]


def test_parse_instructions_marks_only_the_last_item_when_cut_off():
    assert parse_instructions(completion(RESPONSE, "length")) == [
        ("First task here.", ""),
        ("Second task here.", ""),
        ("Third", "truncated"),
    ]
    assert parse_instructions(completion(" Only one unfinished item", "length")) == [
        ("Only one unfinished item", "truncated")
    ]


def test_parse_instructions_cleans_items_and_skips_empty_ones():
    text = " classify the\n  sentence as formal or informal.\n10. \n11.  summarize the   article in two lines.\n"
    assert items(text) == [
        "Classify the sentence as formal or informal.",
        "Summarize the article in two lines.",
    ]


def test_parse_instructions_does_not_split_on_numbers_inside_items():
    text = " List 3. things\nabout 10 dogs.\n10. Add 2 and 2."
    assert items(text) == ["List 3. things about 10 dogs.", "Add 2 and 2."]


def test_parse_instructions_empty_response():
    assert parse_instructions(completion("")) == []
    assert parse_instructions(completion("   \n ", "length")) == []


def test_clean_instruction_upper_cases_only_the_first_letter():
    assert clean_instruction("compare the iPhone with a NASA computer.") == "Compare the iPhone with a NASA computer."
    assert clean_instruction("  iPhone  apps\nfor kids ") == "IPhone apps for kids"
    assert clean_instruction("NASA missions to Mars") == "NASA missions to Mars"
    assert clean_instruction("") == ""


# --- classify: the yes/no answer ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (" Yes", "yes"),
        ("no.", "no"),
        ("YES", "yes"),
        (" No, it is not.", "no"),
        ("\n yes\n", "yes"),
        ("Nope", "no"),
        ("Yep", "yes"),
        ("True", "yes"),
        ("False.", "no"),
        ("Not really. It asks for open-ended text.", "no"),
        ("Absolutely not.", "no"),
        ("No labels are involved at first sight, but the output is one of two. So my answer is: Yes.", "yes"),
        ("Is it a classification task? Yes", "yes"),
        ('{"is_classification": false}', "no"),
        ('```json\n{"answer": true}\n```', "yes"),
        ("", None),
        ("The answer", None),
        ("The answer is yes", "yes"),
        ("Yesterday", None),
        ("Not sure", None),
        ("Yes/No", None),
        ("No or yes", None),
        ("yes, yes", "yes"),
    ],
)
def test_parse_answer(text, expected):
    assert parse_answer(text) == expected


# --- prepare: parsing instances -----------------------------------------------------------------


def test_input_first_examples():
    text = (
        "Example 1\nInput: Give me the report now.\nOutput: Could you send me the report, please?\n"
        "Example 2\nInput: Move.\nOutput: Would you mind moving a little?\n"
    )
    assert parse_instances(completion(text), classification=False) == [
        ("Give me the report now.", "Could you send me the report, please?", ""),
        ("Move.", "Would you mind moving a little?", ""),
    ]


def test_markers_are_case_insensitive():
    text = "example 1\ninput: 2 + 2\nOUTPUT: 4\nEXAMPLE 2:\n  Input :3 + 4\nOutput:7"
    assert parse_instances(completion(text), classification=False) == [("2 + 2", "4", ""), ("3 + 4", "7", "")]


def test_example_inside_content_does_not_split():
    text = (
        "Example 1\nInput: How many apples are left?\nOutput: For example 3 apples.\n"
        "Example 3 of this is given below.\n"
        "Example 2\nInput: input: is a word here\nOutput: Take this example 4: it works."
    )
    assert parse_instances(completion(text), classification=False) == [
        ("How many apples are left?", "For example 3 apples.\nExample 3 of this is given below.", ""),
        # A field that itself starts with a marker is ambiguous: the safety net drops it.
        ("input: is a word here", "Take this example 4: it works.", "marker_in_text"),
    ]


def test_no_input_response():
    text = "Output: def add(a, b):\n    return a + b\n"
    assert parse_instances(completion(text), classification=False) == [("", "def add(a, b):\n    return a + b", "")]


def test_multiline_input_and_output_are_kept():
    text = "Example 1\nInput: line one\nline two\nOutput: first\nsecond"
    assert parse_instances(completion(text), classification=False) == [("line one\nline two", "first\nsecond", "")]


def test_input_first_problems():
    # An input without an output: parsed, then dropped as empty_output.
    assert parse_instances(completion("Example 1\nInput: just an input"), classification=False) == [
        ("just an input", "", "")
    ]
    # Text before "Output:" without an "Input:" marker is the input (the paper's rule).
    assert parse_instances(completion("Some text.\nOutput: answer"), classification=False) == [
        ("Some text.", "answer", "")
    ]
    assert parse_instances(completion("No marker anywhere."), classification=False) == [("", "", "no_output_marker")]
    assert parse_instances(completion(""), classification=False) == []
    assert parse_instances(completion("", "length"), classification=False) == []


def test_output_first_classification_blocks():
    text = (
        "Class label: Positive\nInput: The acting was superb.\n"
        "class label: Negative\nINPUT: Every joke fell flat.\n"
        "Class label: Neutral\n"
    )
    assert parse_instances(completion(text), classification=True) == [
        ("The acting was superb.", "Positive", ""),
        ("Every joke fell flat.", "Negative", ""),
        ("", "Neutral", ""),
    ]


def test_classification_without_any_label():
    assert parse_instances(completion("Input: something"), classification=True) == [("", "", "no_class_label_marker")]
    assert parse_instances(completion("  \n"), classification=True) == []


def test_truncated_response_marks_the_last_instance():
    text = "Example 1\nInput: a\nOutput: b\nExample 2\nInput: c\nOutput: d is cut o"
    assert parse_instances(completion(text, "length"), classification=False) == [
        ("a", "b", ""),
        ("c", "d is cut o", "truncated"),
    ]
    text = "Class label: Yes\nInput: x\nClass label: No\nInput: y is cut"
    assert parse_instances(completion(text, "length"), classification=True) == [
        ("x", "Yes", ""),
        ("y is cut", "No", "truncated"),
    ]


# --- prepare: judging the instances of one task -------------------------------------------------


def test_judge_keeps_clean_distinct_instances():
    parsed = [("a", "1", ""), ("b", "2", ""), ("", "3", "")]
    assert judge_instances(parsed, 5) == [
        ("a", "1", "kept", ""),
        ("b", "2", "kept", ""),
        ("", "3", "kept", ""),
    ]


def test_judge_drops_duplicates_after_the_first():
    parsed = [("a", "1", ""), ("a", "1", ""), ("b", "2", ""), ("a", "1", "")]
    assert [(v, r) for *_, v, r in judge_instances(parsed, 5)] == [
        ("kept", ""),
        ("dropped", "duplicate"),
        ("kept", ""),
        ("dropped", "duplicate"),
    ]


def test_judge_in_pair_mode_drops_only_the_instances_whose_input_has_different_outputs():
    parsed = [("q", "yes", ""), ("r", "ok", ""), ("q", "no", ""), ("", "x", ""), ("", "y", "")]
    assert [(v, r) for *_, v, r in judge_instances(parsed, 5, conflicts="pair")] == [
        ("dropped", "same_input_different_output"),
        ("kept", ""),
        ("dropped", "same_input_different_output"),
        ("kept", ""),  # an empty input may have many outputs
        ("kept", ""),
    ]


def test_judge_ignores_broken_instances_when_comparing_outputs():
    # The truncated last instance must not make the complete one with the same input conflict.
    parsed = [("q", "a full answer", ""), ("q", "a full ans", "truncated")]
    assert judge_instances(parsed, 5) == [
        ("q", "a full answer", "kept", ""),
        ("q", "a full ans", "dropped", "truncated"),
    ]


def test_judge_limits_the_number_of_kept_instances():
    parsed = [(f"in {i}", f"out {i}", "") for i in range(6)]
    verdicts = judge_instances(parsed, 4, random.Random(5))
    assert sorted(v for _, _, v, _ in verdicts) == ["dropped"] * 2 + ["kept"] * 4
    assert {r for *_, v, r in verdicts if v == "dropped"} == {"over_instance_limit"}


def test_judge_limit_counts_only_kept_instances():
    parsed = [("a", "", ""), ("b", "b", ""), ("c", "1", ""), ("d", "2", ""), ("e", "3", "")]
    verdicts = judge_instances(parsed, 2, random.Random(0))
    assert verdicts[:2] == [("a", "", "dropped", "empty_output"), ("b", "b", "dropped", "input_equals_output")]
    assert sorted((v, r) for *_, v, r in verdicts[2:]) == [
        ("dropped", "over_instance_limit"),
        ("kept", ""),
        ("kept", ""),
    ]


def test_judge_propagates_the_parse_problem_as_the_reason():
    parsed = [("", "", "no_output_marker"), ("x", "y", "truncated"), ("list:", "a", "")]
    assert judge_instances(parsed, 5) == [
        ("", "", "dropped", "no_output_marker"),
        ("x", "y", "dropped", "truncated"),
        ("list:", "a", "dropped", "input_ends_with_colon"),
    ]


def test_parse_then_judge_end_to_end():
    text = (
        "Example 1\nInput: 2 + 2\nOutput: 4\n"
        "Example 2\nInput: 2 + 2\nOutput: 4\n"
        "Example 3\nInput: 3 + 3\nOutput: 6\n"
        "Example 4\nInput: 5 + 5\nOutput: 1"
    )
    verdicts = judge_instances(parse_instances(completion(text, "length"), classification=False), 5)
    assert [(i, o, v, r) for i, o, v, r in verdicts] == [
        ("2 + 2", "4", "kept", ""),
        ("2 + 2", "4", "dropped", "duplicate"),
        ("3 + 3", "6", "kept", ""),
        ("5 + 5", "1", "dropped", "truncated"),
    ]


def test_input_first_without_example_lines_splits_at_each_input() -> None:
    from selfinstruct.lm import Completion
    from selfinstruct.stages.prepare import parse_instances

    parsed = parse_instances(Completion("Input: a\nOutput: b\nInput: c\nOutput: d", "stop", 0, 0), False)
    assert parsed == [("a", "b", ""), ("c", "d", "")]


# --- prepare: answer shapes a completion model writes ---------------------------------------------

SHAPES = [
    # (name, text, classification task?, instances expected: (input, output, problem))
    (
        "few-shot layout",
        "Example 1\nInput: a\nOutput: b\n\nExample 2\nInput: c\nOutput: d",
        False,
        [("a", "b", ""), ("c", "d", "")],
    ),
    ("no input", "Output: A poem\nabout rain.", False, [("", "A poem\nabout rain.", "")]),
    ("heading with colon", "Example 1:\nInput: x\nOutput: y", False, [("x", "y", "")]),
    ("heading with dot", "Example 1.\nInput: x\nOutput: y", False, [("x", "y", "")]),
    (
        "heading with hash",
        "Example #1\nInput: x\nOutput: y\nExample #2\nInput: z\nOutput: w",
        False,
        [("x", "y", ""), ("z", "w", "")],
    ),
    ("heading and input on one line", "Example 1: Input: x\nOutput: y", False, [("x", "y", "")]),
    ("everything on one line", "Example 1 Input: x Output: y", False, [("x", "y", "")]),
    ("heading without number", "Example:\nInput: a\nOutput: b", False, [("a", "b", "")]),
    ("numbered markers", "Input 1: a\nOutput 1: b\nInput 2: c\nOutput 2: d", False, [("a", "b", ""), ("c", "d", "")]),
    ("upper case", "EXAMPLE 1\nINPUT: a\nOUTPUT: b", False, [("a", "b", "")]),
    ("indented markers", "  Input: a\n  Output: b", False, [("a", "b", "")]),
    ("windows line ends", "Input: a\r\nOutput: b\r\n", False, [("a", "b", "")]),
    ("values on their own lines", "Input:\n\nHello there\n\nOutput:\n\nHi!", False, [("Hello there", "Hi!", "")]),
    ("code output", "Output:\ndef f():\n    return 1", False, [("", "def f():\n    return 1", "")]),
    (
        "marker word inside content",
        "Input: Fill in the form.\nOutput: Type it in the Input: box.",
        False,
        [("Fill in the form.", "Type it in the Input: box.", "")],
    ),
    ("no input, said so", "Input: N/A\nOutput: b", False, [("", "b", "")]),
    ("output repeated", "Input: Recipe\nOutput: Recipe card\nOutput: Recipe", False, [("Recipe", "Recipe card", "")]),
    ("pairs without headings", "Input: x\nOutput: y\nInput: z\nOutput: w", False, [("x", "y", ""), ("z", "w", "")]),
    ("output then the next task", "Output: Done.\nTask: Write another poem.", False, [("", "Done.", "")]),
    ("a marker inside the data", "Input: Input: hello\nOutput: hi", False, [("Input: hello", "hi", "marker_in_text")]),
    ("markdown markers", "**Input:** a\n**Output:** b\n**Input:** c", False, [("a", "b", ""), ("c", "", "")]),
    ("a task line inside an input", "Input: a\nTask: b\nOutput: c", False, [("a\nTask: b", "c", "marker_in_text")]),
    (
        "cut off",
        "Example 1\nInput: a\nOutput: b\nExample 2\nInput: c\nOutput: d wa",
        False,
        [("a", "b", ""), ("c", "d wa", "truncated")],
    ),
    (
        "labels and inputs",
        "Class label: Positive\nInput: I loved it.\nClass label: Negative\nInput: Awful.",
        True,
        [("I loved it.", "Positive", ""), ("Awful.", "Negative", "")],
    ),
    (
        "the task's own field name",
        "Class label: Spam\nEmail: Win a prize now\nClass label: Not spam\nEmail: Lunch at 1?",
        True,
        [("Email: Win a prize now", "Spam", ""), ("Email: Lunch at 1?", "Not spam", "")],
    ),
    ("labels only", "Class label: Yes\nClass label: No", True, [("", "Yes", ""), ("", "No", "")]),
    (
        "multi-line input",
        "Class label: Positive\nInput: Line one.\nLine two.",
        True,
        [("Line one.\nLine two.", "Positive", "")],
    ),
    (
        "numbered labels",
        "Class label 1: A\nInput: x\nClass label 2: B\nInput: y",
        True,
        [("x", "A", ""), ("y", "B", "")],
    ),
    ("label and input on one line", "Class label: Odd Input: 127", True, [("127", "Odd", "")]),
    (
        "blank lines between",
        "Class Label: Odd\n\nInput: 127\n\nClass Label: Even\n\nInput: 48",
        True,
        [("127", "Odd", ""), ("48", "Even", "")],
    ),
    ("no label at all", "Input: 48\nOutput: Even", True, [("", "", "no_class_label_marker")]),
]


@pytest.mark.parametrize("name, text, classification, expected", SHAPES, ids=[s[0] for s in SHAPES])
def test_answer_shapes(name, text, classification, expected):
    finish = "length" if name == "cut off" else "stop"
    assert parse_instances(completion(text, finish), classification) == expected
