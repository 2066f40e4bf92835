"""The paper's §2.3 filters: each keeps what it should, rejects what it should, and says why."""

from __future__ import annotations

import pytest

from selfinstruct.filters import (
    blocked_keyword,
    check_instance,
    check_instruction,
    first_character,
    instruction_filters,
    word_count,
    write_a_program,
)

KEEP = (True, "")


# --- word count ---------------------------------------------------------------------------------


def test_word_count_bounds():
    check = word_count(4, 150)
    assert check("Name three fruits") == (False, "too_short (3 words < 4)")
    assert check("Name three red fruits") == KEEP
    assert check(" ".join(["word"] * 150)) == KEEP
    assert check(" ".join(["word"] * 151)) == (False, "too_long (151 words > 150)")


def test_word_count_splits_on_any_whitespace():
    check = word_count(4, 150)
    assert check("  Name\tthree\n\nred   fruits  ") == KEEP
    assert check("") == (False, "too_short (0 words < 4)")


# --- blocked keywords ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction, keyword",
    [
        ("Draw a cat sitting on a mat.", "draw"),
        ("Please DRAW the outline of a house.", "draw"),
        ("Go to the store and buy some milk.", "go to"),
        ("Describe the image in one sentence.", "image"),
        ("Summarize the attached files for me.", "files"),
        ("Plot the sales numbers by month.", "plot"),
        ("Explain the graph, briefly and clearly.", "graph"),
    ],
)
def test_blocked_keyword_rejects_whole_words_case_insensitively(instruction, keyword):
    keep, reason = blocked_keyword(instruction)
    assert not keep
    assert reason == f"keyword ({keyword})"


@pytest.mark.parametrize(
    "instruction",
    [
        "Describe what you keep in a kitchen drawer.",
        "Write a short profile of a famous scientist.",
        "Explain what a plotline is in a novel.",
        "Tell me about a good book to read.",
        "List the steps of photosynthesis in order.",
    ],
)
def test_blocked_keyword_ignores_words_that_merely_contain_a_keyword(instruction):
    assert blocked_keyword(instruction) == KEEP


# --- "Write a program" --------------------------------------------------------------------------


def test_write_a_program_prefix():
    assert write_a_program("Write a program that prints the primes below 100.") == (
        False,
        "starts_with_write_a_program",
    )
    assert write_a_program("Write a poem about the sea and the sky.") == KEEP
    assert write_a_program("Explain how to write a program that sorts a list.") == KEEP


# --- first character ----------------------------------------------------------------------------


@pytest.mark.parametrize("instruction", ['"Quote the famous line from Hamlet."', "-dash separated list of items"])
def test_first_character_punctuation(instruction):
    assert first_character(instruction) == (False, "starts_with_punctuation")


def test_first_character_non_ascii():
    assert first_character("Écrire une phrase sur le chat.") == (False, "starts_with_non_ascii")


@pytest.mark.parametrize(
    "instruction", ["Explain the rules of chess.", "3 reasons to learn Python.", "iPhone tips for new users."]
)
def test_first_character_keeps_letters_and_digits(instruction):
    assert first_character(instruction) == KEEP


# --- the chain: the first failing filter gives the reason ---------------------------------------


def test_check_instruction_reports_the_first_failing_filter():
    filters = instruction_filters(4, 150)
    assert check_instruction("Explain the rules of chess to a beginner.", filters) == KEEP
    assert check_instruction("Draw it", filters) == (False, "too_short (2 words < 4)")
    assert check_instruction("Draw a picture of a cat.", filters) == (False, "keyword (draw)")
    assert check_instruction("Write a program that adds two numbers.", filters) == (
        False,
        "starts_with_write_a_program",
    )
    assert check_instruction("- List four kinds of trees.", filters) == (False, "starts_with_punctuation")
    assert check_instruction("Écrivez une phrase sur le chat.", filters) == (False, "starts_with_non_ascii")


# --- instances ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "input_text, output_text, reason",
    [
        ("some input", "", "empty_output"),
        ("some input", "  \n ", "empty_output"),
        ("same text", "same text", "input_equals_output"),
        ("  same text\n", "same text", "input_equals_output"),
        ("List the following items:", "apples, pears", "input_ends_with_colon"),
        ("Paris", "The capital is:", "output_ends_with_colon"),
        ("Paris", "The capital is:  \n", "output_ends_with_colon"),
    ],
)
def test_check_instance_rejections(input_text, output_text, reason):
    assert check_instance(input_text, output_text) == (False, reason)


@pytest.mark.parametrize(
    "input_text, output_text",
    [("", "A complete answer."), ("2 + 2", "4"), ("Time: 10:30", "Half past ten"), ("", "Ratio 3:2")],
)
def test_check_instance_keeps_valid_instances(input_text, output_text):
    assert check_instance(input_text, output_text) == KEEP
