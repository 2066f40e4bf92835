"""Shared test helpers: a scripted LM that answers each stage's prompt in the expected format.

The scripted LM is for fast unit tests of the pipeline logic; tests/test_embedded_model.py runs the real
llama.cpp model end to end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from selfinstruct.config import Sampling
from selfinstruct.devserver import scripted_completion
from selfinstruct.lm import BackendError, Completion

SHARED = Path(__file__).resolve().parents[2] / "shared"


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

    async def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        if self.interrupt_after is not None and self.sent >= self.interrupt_after:
            raise Interrupt()
        self.sent += 1
        self.calls[(prompt, seed)] += 1
        if self.fail and (error := self.fail(prompt, self.sent)):
            raise error
        text, finish = scripted_completion(prompt, seed, self.classify_answer)
        return Completion(text, finish, len(prompt.split()), len(text.split()))

    async def aclose(self) -> None:
        pass


@pytest.fixture
def scripted() -> ScriptedLM:
    return ScriptedLM()
