"""Language-model backends behind one small protocol.

A backend turns one prompt plus sampling parameters into a Completion. Everything else (request keys,
the journal in the run store, retries) lives in `lm.engine`, so a backend stays a thin adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from selfinstruct.config import Sampling

if TYPE_CHECKING:
    from selfinstruct.config import LMConfig


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length" | backend-specific
    prompt_tokens: int
    completion_tokens: int


class BackendError(RuntimeError):
    """A request failed. `retryable` says whether sending it again may succeed."""

    def __init__(self, message: str, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it said


class LM(Protocol):
    # Identifies the model in request keys: the same prompt sent to another model is another request.
    model_id: str

    def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        """Complete `prompt`. `seed` makes sampling reproducible where the backend supports it."""
        ...


def create_backend(lm: LMConfig, seed: int) -> LM:
    """Build the backend named in the config (imports are lazy: each backend has heavy dependencies)."""
    if lm.backend == "llamacpp":
        from selfinstruct.lm.llamacpp import LlamaCppLM

        return LlamaCppLM(lm.model, context_size=lm.context_size, threads=lm.threads, seed=seed)
    if lm.backend == "openai":
        from selfinstruct.lm.openai import OpenAILM

        return OpenAILM(lm.model, base_url=lm.base_url, api=lm.api, timeout=lm.timeout)
    raise ValueError(f"unknown backend {lm.backend!r}")
