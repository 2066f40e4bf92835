"""A backend without a model: it answers each stage's prompt the way a cooperative model would.

For tests and benchmarks of everything around the model (the engine, the stages, Ray replicas): the answers are
`scripted_completion`'s (deterministic in prompt and seed; the dev server answers with it too), after a fixed
latency that uses no CPU. It lives in the package, not in the tests, because Ray workers cannot import test files.
It answers the completion prompts (lm.api = "completions").
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence

from selfinstruct.config import Sampling
from selfinstruct.lmtypes import Completion, Prompt, render_prompt

# Unrelated syllable-words, so scripted instructions rarely overlap (ROUGE-L stays low).
_VOCAB = [
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "ze")
    for b in ("bar", "cen", "dor", "fis", "gol", "hun", "jat", "kem", "lup", "mox", "nid", "pav", "qor", "ruz")
]
_VERBS = ["Describe", "Explain", "Summarize", "List", "Compare", "Suggest", "Rewrite", "Classify"]


def _real_instruction(rng: random.Random, instructions: Sequence[str], splice: bool) -> str:
    head = rng.choice(instructions).split()
    if not splice or rng.random() < 0.2:
        return " ".join(head)
    tail = rng.choice(instructions).split()
    return " ".join(head[: rng.randint(1, max(1, len(head) - 1))] + tail[rng.randint(1, max(1, len(tail) - 1)) :])


def scripted_completion(
    prompt: str,
    seed: int = 0,
    classify_answer: str | None = None,
    instructions: Sequence[str] = (),
    splice: bool = False,
) -> tuple[str, str]:
    """(text, finish reason) in the shape the prompt's stage expects; deterministic in (prompt, seed). Bootstrap
    answers draw from `instructions` (real ones) when given, else from a synthetic grammar. `splice`: most real
    answers join the head of one instruction to the tail of another, so that new text never runs out while its
    words keep real frequencies (a few thousand real instructions cannot fill a 52K pool)."""
    rng = random.Random(int(hashlib.sha256(f"{prompt}{seed}".encode()).hexdigest()[:12], 16))
    if prompt.startswith("Come up with a series of") and instructions:
        items = [_real_instruction(rng, instructions, splice) for _ in range(rng.randint(2, 5))]
        return " " + "\n".join(item if i == 0 else f"{9 + i}. {item}" for i, item in enumerate(items)), "stop"
    if prompt.startswith("Come up with a series of"):
        items = []
        for _ in range(rng.randint(2, 5)):
            kind = rng.random()
            if kind < 0.1:
                items.append("Draw a picture of a cat.")  # for the keyword filter
            elif kind < 0.15:
                items.append("Too short.")  # for the length filter
            else:
                items.append(f"{rng.choice(_VERBS)} the {' '.join(rng.sample(_VOCAB, 7))}.")
        return " " + "\n".join(item if i == 0 else f"{9 + i}. {item}" for i, item in enumerate(items)), "stop"
    if prompt.endswith("Rating (A, B, C or D):"):  # the evaluation's judge
        return " " + rng.choice("ABCD"), "stop"
    if prompt.endswith("Is it classification?"):
        return classify_answer or rng.choice([" Yes", " No", " No"]), "stop"
    if prompt.startswith("Given the classification task definition"):
        return "Class label: Alpha\nInput: first thing\nClass label: Beta\nInput: second thing\n", "stop"
    return (
        "Example 1\nInput: some input\nOutput: some output\nExample 2\nInput: another input\nOutput: another output\n",
        "stop",
    )


class ScriptedLM:
    def __init__(self, latency: float = 0.0, classify_answer: str | None = None, model_id: str = "scripted") -> None:
        self.latency = latency
        self.classify_answer = classify_answer
        self.model_id = model_id

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        if self.latency:
            await asyncio.sleep(self.latency)
        text = render_prompt(prompt)
        answer, finish = scripted_completion(text, seed, self.classify_answer)
        return Completion(answer, finish, len(text.split()), len(answer.split()))

    async def aclose(self) -> None:
        pass
