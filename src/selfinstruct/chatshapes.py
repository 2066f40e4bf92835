"""Scripted chat answers in the shapes chat models really write, for the dev server and the chat benchmark.

For a chat request of a Self-Instruct stage, `chat_answer` decides what the model means to say (the intended
items: tasks, a verdict, instances), deterministically from the request's last message and seed, and writes it
in one of the shapes of its stage: with a preamble, in markdown, as bullets, under headings, after a reasoning
block, with a closing remark... `intended` recomputes the items and the shape from a stored request, so a
benchmark can tell what share of each shape the parsers recovered.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from selfinstruct.lmtypes import Message

_VOCAB = [
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "ze")
    for b in ("bar", "cen", "dor", "fis", "gol", "hun", "jat", "kem", "lup", "mox", "nid", "pav", "qor", "ruz")
]
_VERBS = ["Describe", "Explain", "Summarize", "List", "Compare", "Suggest", "Rewrite", "Classify"]
PREAMBLES = [
    "Sure! Here are some more tasks:",
    "Certainly! Here are additional tasks that are different from the examples:",
    "Here are 5 new tasks:",
    "Of course. Below are some new tasks for you.",
]
CLOSINGS = [
    "I hope these tasks are helpful!",
    "Let me know if you would like more tasks.",
    "Feel free to ask for more examples.",
]
THINK = (
    "<think>\nThe user wants new items. Let me think about what is different from the examples... yes, no, maybe."
    "\n</think>\n\n"
)


@dataclass(frozen=True)
class Intended:
    stage: str  # bootstrap | classify | instances | instances_classification
    shape: str
    items: tuple  # tasks (str), or one verdict ("yes" | "no"), or (input, output) / (label, input) pairs


def _rng(text: str, seed: int) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{text}{seed}".encode()).hexdigest()[:12], 16))


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(_VOCAB, n))


def stage_of(messages: list[Message]) -> str | None:
    """Which stage's chat prompt this is, from its system message (None: not one of ours)."""
    system = next((m["content"] for m in messages if m["role"] == "system"), messages[0]["content"])
    for start, stage in (
        ("You write instructions for tasks", "bootstrap"),
        ("You decide whether a task is a classification task", "classify"),
        ("You write examples for a classification task", "instances_classification"),
        ("You write examples for a task", "instances"),
    ):
        if start in system:
            return stage
    return None


# --- shapes -----------------------------------------------------------------------------------------------------


def _numbered(items: list[str], rng: random.Random) -> str:
    return "\n".join(f"{n}. {t}" for n, t in enumerate(items, 1))


BOOTSTRAP_SHAPES: dict[str, Callable[[list[str], random.Random], str]] = {
    "plain list": _numbered,
    "preamble": lambda items, rng: f"{rng.choice(PREAMBLES)}\n\n{_numbered(items, rng)}",
    "closing remark": lambda items, rng: f"{_numbered(items, rng)}\n\n{rng.choice(CLOSINGS)}",
    "dash bullets": lambda items, rng: "\n".join(f"- {t}" for t in items),
    "star bullets": lambda items, rng: "\n".join(f"* {t}" for t in items),
    "bold Task N headings": lambda items, rng: "\n".join(f"**Task {n}:** {t}" for n, t in enumerate(items, 9)),
    "heading lines": lambda items, rng: "\n\n".join(f"### Task {n}\n{t}" for n, t in enumerate(items, 1)),
    "bold titles": lambda items, rng: "\n".join(
        f"{n}. **{_words(rng, 2).title()}:** {t}" for n, t in enumerate(items, 1)
    ),
    "N) numbering": lambda items, rng: "\n".join(f"{n}) {t}" for n, t in enumerate(items, 1)),
    "think block": lambda items, rng: THINK + _numbered(items, rng),
    "lists restarting at 1.": lambda items, rng: (
        "**Writing**\n"
        + _numbered(items[: len(items) // 2], rng)
        + "\n\n**Reasoning**\n"
        + _numbered(items[len(items) // 2 :], rng)
    ),
    "one per line, preamble": lambda items, rng: f"{rng.choice(PREAMBLES)}\n" + "\n".join(items),
    "bold items": lambda items, rng: "\n".join(f"{n}. **{t}**" for n, t in enumerate(items, 1)),
    "quoted items": lambda items, rng: "\n".join(f'{n}. "{t}"' for n, t in enumerate(items, 1)),
    "blank lines between": lambda items, rng: "\n\n".join(f"{n}. {t}" for n, t in enumerate(items, 1)),
    "markdown title and closing": lambda items, rng: (
        f"## New Tasks\n\n{_numbered(items, rng)}\n\n" + rng.choice(CLOSINGS)
    ),
}

CLASSIFY_SHAPES: dict[str, Callable[[str, random.Random], str]] = {
    "one word": lambda v, rng: v.title(),
    "one word and a dot": lambda v, rng: f"{v.title()}.",
    "Answer: label": lambda v, rng: f"Answer: {v.title()}",
    "bold Answer: label": lambda v, rng: f"**Answer:** {v.title()}",
    "verdict then reason": lambda v, rng: (
        f"{v.title()}, because the output " + ("is one of a few labels." if v == "yes" else "is free text.")
    ),
    "sentence": lambda v, rng: "This is a classification task." if v == "yes" else "This is not a classification task.",
    "based on the examples": lambda v, rng: f"Based on the examples, {v}.",
    "think block": lambda v, rng: f"{THINK}{v.title()}",
    "bold word": lambda v, rng: f"**{v.title()}**",
    "the task is ... as it": lambda v, rng: (
        "The task is a classification task, as it asks for one label."
        if v == "yes"
        else "The task is not a classification task, as it asks for free text."
    ),
    "No, it isn't / Yes, it is": lambda v, rng: "Yes, it is." if v == "yes" else "No, it isn't.",
}


def _examples(pairs: list[tuple[str, str]], heading: Callable[[int], str], field: Callable[[str], str]) -> str:
    return "\n".join(f"{heading(n)}\n{field('Input')} {i}\n{field('Output')} {o}" for n, (i, o) in enumerate(pairs, 1))


INSTANCE_SHAPES: dict[str, Callable[[list[tuple[str, str]], random.Random], str]] = {
    "plain layout": lambda p, rng: _examples(p, lambda n: f"Example {n}", lambda f: f"{f}:"),
    "bold markers": lambda p, rng: _examples(p, lambda n: f"**Example {n}**", lambda f: f"**{f}:**"),
    "bulleted markers": lambda p, rng: _examples(p, lambda n: f"Example {n}:", lambda f: f"- {f}:"),
    "heading and bold": lambda p, rng: _examples(p, lambda n: f"### Example {n}", lambda f: f"**{f}:**"),
    "preamble and closing": lambda p, rng: (
        "Here are two examples for this task:\n\n"
        + _examples(p, lambda n: f"Example {n}", lambda f: f"{f}:")
        + f"\n\n{rng.choice(CLOSINGS)}"
    ),
    "task restated": lambda p, rng: (
        "Task: as given above.\n\n" + _examples(p, lambda n: f"Example {n}", lambda f: f"{f}:")
    ),
    "think block": lambda p, rng: THINK + _examples(p, lambda n: f"Example {n}", lambda f: f"{f}:"),
    "no headings": lambda p, rng: "\n\n".join(f"Input: {i}\nOutput: {o}" for i, o in p),
    "bold values": lambda p, rng: "\n".join(
        f"Example {n}\nInput: **{i}**\nOutput: **{o}**" for n, (i, o) in enumerate(p, 1)
    ),
    "numbered examples": lambda p, rng: "\n".join(f"{n}. Input: {i}\n   Output: {o}" for n, (i, o) in enumerate(p, 1)),
}

LABEL_SHAPES: dict[str, Callable[[list[tuple[str, str]], random.Random], str]] = {
    "plain layout": lambda p, rng: "\n".join(f"Class label: {label}\nInput: {i}" for label, i in p),
    "bold markers": lambda p, rng: "\n".join(f"**Class label:** {label}\n**Input:** {i}" for label, i in p),
    "Label:": lambda p, rng: "\n".join(f"Label: {label}\nInput: {i}" for label, i in p),
    "bulleted bold Label:": lambda p, rng: "\n".join(f"- **Label:** {label}\n  **Input:** {i}" for label, i in p),
    "preamble and closing": lambda p, rng: (
        "Sure! Here are examples for each label:\n\n"
        + "\n\n".join(f"Class label: {label}\nInput: {i}" for label, i in p)
        + f"\n\n{rng.choice(CLOSINGS)}"
    ),
    "task restated": lambda p, rng: (
        "**Task:** as given above.\n\n" + "\n".join(f"Class label: {label}\nInput: {i}" for label, i in p)
    ),
    "think block": lambda p, rng: THINK + "\n".join(f"Class label: {label}\nInput: {i}" for label, i in p),
}

SHAPES = {
    "bootstrap": BOOTSTRAP_SHAPES,
    "classify": CLASSIFY_SHAPES,
    "instances": INSTANCE_SHAPES,
    "instances_classification": LABEL_SHAPES,
}


# --- answers ----------------------------------------------------------------------------------------------------


def intended(messages: list[Message], seed: int, shapes: tuple[str, ...] = ()) -> Intended | None:
    """What the scripted chat model means to answer to these messages, and in which shape (one of `shapes`, when
    given and known to the stage; else any of the stage's)."""
    stage = stage_of(messages)
    if stage is None:
        return None
    rng = _rng(messages[-1]["content"], seed)
    names = [s for s in SHAPES[stage] if s in shapes] or list(SHAPES[stage])
    shape = rng.choice(names)
    if stage == "bootstrap":
        items: tuple = tuple(f"{rng.choice(_VERBS)} the {_words(rng, 7)}." for _ in range(rng.randint(3, 6)))
    elif stage == "classify":
        items = (rng.choice(["yes", "no", "no"]),)
    elif stage == "instances":
        items = tuple((f"the {_words(rng, 4)}", f"A {_words(rng, 5)}.") for _ in range(rng.randint(1, 3)))
    else:
        items = tuple((_words(rng, 1).title(), f"the {_words(rng, 4)}") for _ in range(rng.randint(2, 3)))
    return Intended(stage, shape, items)


def chat_answer(messages: list[Message], seed: int, shapes: tuple[str, ...] = ()) -> str | None:
    """The scripted chat model's answer: the intended items in their shape (None: not a stage's prompt)."""
    plan = intended(messages, seed, shapes)
    if plan is None:
        return None
    rng = _rng(plan.shape + messages[-1]["content"], seed)
    render = SHAPES[plan.stage][plan.shape]
    return render(plan.items[0] if plan.stage == "classify" else list(plan.items), rng)


def json_answer(messages: list[Message], seed: int) -> str | None:
    """The scripted model's structured answer (response_format with a JSON schema): the intended items as JSON."""
    plan = intended(messages, seed)
    if plan is None:
        return None
    if plan.stage == "bootstrap":
        return json.dumps({"tasks": list(plan.items)})
    if plan.stage == "classify":
        return json.dumps({"answer": plan.items[0].title()})
    fields = ("label", "input") if plan.stage == "instances_classification" else ("input", "output")
    return json.dumps({"examples": [dict(zip(fields, pair, strict=True)) for pair in plan.items]})
