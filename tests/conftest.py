"""Shared test helpers: a scripted LM that answers each stage's prompt in the expected format.

The scripted LM is for fast unit tests of the pipeline logic; tests/test_embedded_model.py runs the real
llama.cpp model end to end.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Completion

SHARED = Path(__file__).resolve().parents[2] / "shared"

# A vocabulary of unrelated words, so random instructions rarely overlap (ROUGE-L stays low).
VOCAB = [
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "vu", "ze")
    for b in ("bar", "cen", "dor", "fis", "gol", "hun", "jat", "kem", "lup", "mox", "nid", "pav", "qor", "ruz")
]
VERBS = ["Describe", "Explain", "Summarize", "List", "Compare", "Suggest", "Rewrite", "Classify"]


class Interrupt(BaseException):
    """Stands in for a SIGKILL in tests that interrupt a run in-process (not caught by `except Exception`)."""


class ScriptedLM:
    """Answers like a cooperative model. `calls` counts each (prompt, seed) sent; `fail` decides faults."""

    model_id = "scripted"

    def __init__(
        self,
        fail: Callable[[str, int], BackendError | None] | None = None,
        interrupt_after: int | None = None,
        classify_answer: str | None = None,
    ) -> None:
        self.calls: Counter[tuple[str, int]] = Counter()
        self.sent = 0
        self.fail = fail
        self.interrupt_after = interrupt_after
        self.classify_answer = classify_answer

    def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        if self.interrupt_after is not None and self.sent >= self.interrupt_after:
            raise Interrupt()
        self.sent += 1
        self.calls[(prompt, seed)] += 1
        if self.fail and (error := self.fail(prompt, self.sent)):
            raise error
        rng = random.Random(int(hashlib.sha256(f"{prompt}{seed}".encode()).hexdigest()[:12], 16))
        if prompt.startswith("Come up with a series of tasks:"):
            return Completion(self._instructions(rng), "stop", 100, 60)
        if prompt.endswith("Is it classification?"):
            answer = self.classify_answer or rng.choice([" Yes", " No", " No"])
            return Completion(answer, "stop", 500, 1)
        if "Class label:" in prompt.split("\n", 1)[0] + prompt[:400]:
            return Completion(
                "Class label: Alpha\nInput: first thing\nClass label: Beta\nInput: second thing\n", "stop", 600, 20
            )
        return Completion(
            "Example 1\nInput: some input\nOutput: some output\nExample 2\nInput: another input\n"
            "Output: another output\n",
            "stop",
            600,
            30,
        )

    @staticmethod
    def _instructions(rng: random.Random) -> str:
        items = []
        for _ in range(rng.randint(2, 5)):
            kind = rng.random()
            if kind < 0.1:
                items.append("Draw a picture of a cat.")  # keyword filter
            elif kind < 0.15:
                items.append("Too short.")
            else:
                items.append(f"{rng.choice(VERBS)} the {' '.join(rng.sample(VOCAB, 7))}.")
        return " " + "\n".join(f"{item}" if i == 0 else f"{9 + i}. {item}" for i, item in enumerate(items))


@pytest.fixture
def scripted() -> ScriptedLM:
    return ScriptedLM()
