"""Language-model backends behind one small protocol.

A backend turns one prompt plus sampling parameters into a Completion. Everything else (request keys,
the journal in the run store, retries) lives in `lm.engine`, so a backend stays a thin adapter.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from selfinstruct.config import Sampling

# The plain request and answer types live in a leaf module (the run store needs them too); re-exported here, where
# a backend's author looks for them.
from selfinstruct.lmtypes import Completion, Message, Prompt, fold_system, render_prompt

if TYPE_CHECKING:
    from selfinstruct.config import LMConfig, RayConfig

__all__ = ["LM", "BackendError", "Queued", "Completion", "Message", "Prompt", "fold_system", "render_prompt"]


class BackendError(RuntimeError):
    """A request failed. `retryable` says whether sending it again may succeed.

    `rejected`: the backend refused this request itself (HTTP 400/413/422, a prompt over the context): it fails
    the same way every time, says nothing about the endpoint's health, and must not block the run. `fits`: for a
    prompt that leaves too little room for max_tokens, the largest max_tokens that would fit, when known."""

    def __init__(
        self,
        message: str,
        retryable: bool = True,
        retry_after: float | None = None,
        overloaded: bool = False,
        rejected: bool = False,
        context_overflow: bool = False,
        fits: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable and not rejected
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if it said
        self.overloaded = overloaded  # 429/503: the engine sends fewer requests at once to this endpoint
        self.rejected = rejected
        self.context_overflow = context_overflow  # the engine retries once with a smaller max_tokens
        self.fits = fits


@dataclass(eq=False)
class Queued:
    """A request queued for an in-process backend's worker thread, which settles `future` on `loop`."""

    prompt: str
    sampling: Sampling
    seed: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Completion]


class LM(Protocol):
    """A backend. `complete` is a coroutine: the engine keeps many requests in flight at once, and a backend
    may serve them together (the embedded one decodes several sequences in one batch)."""

    # Identifies the model in request keys: the same prompt sent to another model is another request.
    model_id: str

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        """Complete `prompt` (a text, or chat messages answered through the model's chat template or the
        endpoint's chat API). `seed` makes sampling reproducible where the backend supports it."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and model memory; called once when the run ends."""
        ...


def create_backends(lm: LMConfig, seed: int, ray: RayConfig | None = None) -> list[LM]:
    """Build the backend named in the config: one per replica (--base-url repeated) for an HTTP endpoint; with
    `ray.address`, one Ray actor per replica, each hosting the in-process backend on a node of the cluster.
    Imports are lazy: each backend has heavy dependencies."""
    if ray is not None and ray.address is not None:
        from selfinstruct.lm.ray_replicas import create_replicas

        return [*create_replicas(lm, ray, seed)]
    if lm.backend == "openai":
        from selfinstruct.lm.openai import OpenAILM

        urls = list(lm.base_url) or [None]
        return [
            OpenAILM(lm.model, base_url=url, api=lm.api, timeout=lm.timeout, structured=lm.structured) for url in urls
        ]
    return [create_in_process(lm, seed)]


def create_in_process(lm: LMConfig, seed: int, threads: int | None = None) -> LM:
    """The in-process backend of the config (llamacpp or transformers), with `threads` unless lm.threads is set."""
    if lm.backend == "llamacpp":
        from selfinstruct.lm.llamacpp import LlamaCppLM

        return LlamaCppLM(
            lm.model,
            context_size=lm.context_size,
            threads=lm.threads or threads,
            seed=seed,
            parallel=lm.parallel,
            weights=lm.weights,
            structured=lm.structured != "off",
        )
    if lm.backend == "transformers":
        from selfinstruct.lm.transformers import TransformersLM

        return TransformersLM(lm.model, seed=seed, batch_size=lm.parallel, threads=lm.threads or threads)
    raise ValueError(f"unknown backend {lm.backend!r}")
