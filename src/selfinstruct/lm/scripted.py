"""A backend without a model: it answers each stage's prompt the way a cooperative model would.

For tests and benchmarks of everything around the model (the engine, the stages, Ray replicas): the answers are
those of the dev server (`devserver.scripted_completion`, deterministic in prompt and seed), after a fixed
latency that uses no CPU. It lives in the package, not in the tests, because Ray workers cannot import test files.
It answers the completion prompts (lm.api = "completions").
"""

from __future__ import annotations

import asyncio

from selfinstruct.config import Sampling
from selfinstruct.devserver import scripted_completion
from selfinstruct.lm import Completion, Prompt, render_prompt


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
