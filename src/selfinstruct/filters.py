"""Filters of the paper's §2.3, each one small function returning (keep, reason).

A dropped item keeps its reason in the run store, so every rejection can be explained.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

Verdict = tuple[bool, str]
KEEP: Verdict = (True, "")

# Words a text-only model cannot act on (the paper's list); whole words, case-insensitive.
BLOCKED_KEYWORDS = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
)
_BLOCKED = re.compile(r"\b(" + "|".join(re.escape(k) for k in BLOCKED_KEYWORDS) + r")\b", re.IGNORECASE)


# --- instructions -------------------------------------------------------------------------------


def word_count(min_words: int, max_words: int) -> Callable[[str], Verdict]:
    def check(instruction: str) -> Verdict:
        n = len(instruction.split())
        if n < min_words:
            return False, f"too_short ({n} words < {min_words})"
        if n > max_words:
            return False, f"too_long ({n} words > {max_words})"
        return KEEP

    return check


def blocked_keyword(instruction: str) -> Verdict:
    match = _BLOCKED.search(instruction)
    return (False, f"keyword ({match.group(1).lower()})") if match else KEEP


def write_a_program(instruction: str) -> Verdict:
    # The paper: such tasks are hard to follow for the model and to check; they are usually too broad. Its
    # str.capitalize() lower-cased the rest first, so "Write A Program" was caught too: case-insensitive.
    return (False, "starts_with_write_a_program") if instruction.lower().startswith("write a program") else KEEP


def first_character(instruction: str) -> Verdict:
    first = instruction[:1]
    if first in string.punctuation:
        return False, "starts_with_punctuation"
    if not first.isascii():
        return False, "starts_with_non_ascii"
    return KEEP


def instruction_filters(min_words: int, max_words: int) -> list[Callable[[str], Verdict]]:
    """The cheap text filters, applied before the (costlier) novelty filter."""
    return [word_count(min_words, max_words), blocked_keyword, write_a_program, first_character]


def check_instruction(instruction: str, filters: list[Callable[[str], Verdict]]) -> Verdict:
    for check in filters:
        keep, reason = check(instruction)
        if not keep:
            return keep, reason
    return KEEP


# --- instances ----------------------------------------------------------------------------------


def check_instance(input_text: str, output_text: str) -> Verdict:
    if not output_text.strip():
        return False, "empty_output"
    if input_text.strip() == output_text.strip():
        return False, "input_equals_output"
    if input_text.strip().endswith(":"):
        return False, "input_ends_with_colon"
    if output_text.strip().endswith(":"):
        return False, "output_ends_with_colon"
    return KEEP
