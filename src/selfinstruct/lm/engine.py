"""The request engine: every LM call of every stage goes through here.

It makes the run store a request journal. A request's key is a hash of (model, prompt, parameters, sample
index); a request whose response is stored is answered from the store and never sent again. A request is
recorded as pending before it is sent, so a killed run knows what was in flight. Retryable errors are retried
with exponential backoff and jitter; after the last retry the request is recorded as failed (never silently
dropped) and is sent again on the next resume. The caller's `on_result` runs in the same transaction that
stores the response: a result exists if and only if its response does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import time
from collections.abc import Callable

from selfinstruct.config import Sampling
from selfinstruct.lm import LM, BackendError, Completion
from selfinstruct.store import Request, Store

OnResult = Callable[[int, Completion], None]


def request_key(model: str, prompt: str, sampling: Sampling, sample_index: int) -> str:
    payload = json.dumps([model, prompt, dataclasses.asdict(sampling), sample_index], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class EndpointDown(RuntimeError):
    """Too many requests in a row failed: stop the run (it resumes later) instead of burning the queue."""


class Engine:
    def __init__(
        self,
        lm: LM,
        store: Store,
        max_retries: int = 3,
        max_consecutive_failures: int = 10,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.lm = lm
        self.store = store
        self.max_retries = max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self.backoff = backoff
        self.failures = 0  # consecutive
        self.answered = 0  # requests answered by the backend in this process
        self._sleep = sleep
        # An audit trail outside the database, for tests that must prove no stored request is re-sent.
        self._send_log = os.environ.get("SELFINSTRUCT_SEND_LOG")

    def request(
        self,
        stage: str,
        prompt: str,
        sampling: Sampling,
        *,
        sample_index: int = 0,
        instruction_id: int | None = None,
        on_result: OnResult | None = None,
    ) -> Completion | None:
        """Answer from the journal or send; None when every attempt failed (recorded as failed)."""
        key = request_key(self.lm.model_id, prompt, sampling, sample_index)
        stored = self.store.find_request(key)
        if stored is not None and stored.status == "ok":
            completion = stored.completion()
            if on_result:
                with self.store.transaction():
                    on_result(stored.id, completion)
            return completion
        params = {**dataclasses.asdict(sampling), "seed": self._seed(key)}
        request_id = self.store.begin_request(
            key, stage, self.lm.model_id, prompt, params, sample_index, instruction_id
        )
        return self._send(request_id, key, prompt, sampling, on_result)

    def resend(self, request: Request, on_result: OnResult | None = None) -> Completion | None:
        """Send again a request that was in flight when a run was killed, or that failed."""
        sampling = Sampling(**{k: (tuple(v) if k == "stop" else v) for k, v in request.params.items() if k != "seed"})
        return self.request(
            request.stage,
            request.prompt,
            sampling,
            sample_index=request.sample_index,
            instruction_id=request.instruction_id,
            on_result=on_result,
        )

    @staticmethod
    def _seed(key: str) -> int:
        return int(key[:8], 16)  # a per-request sampler seed: reproducible, yet different for every request

    def _send(
        self, request_id: int, key: str, prompt: str, sampling: Sampling, on_result: OnResult | None
    ) -> Completion | None:
        attempt = 0
        while True:
            if self._send_log:
                with open(self._send_log, "a", encoding="utf-8") as log:
                    log.write(key + "\n")
            started = time.perf_counter()
            try:
                completion = self.lm.complete(prompt, sampling, self._seed(key))
            except BackendError as e:
                latency = time.perf_counter() - started
                if not e.retryable or attempt >= self.max_retries:
                    self.store.fail_request(request_id, str(e), latency)
                    self.failures += 1
                    # Stop when the endpoint keeps failing, and at once when it has not answered even once
                    # (an unreachable endpoint at start-up should not cost ten rounds of backoff).
                    if self.failures >= self.max_consecutive_failures or not self.answered:
                        what = (
                            f"{self.failures} requests in a row failed" if self.answered else "the first request failed"
                        )
                        raise EndpointDown(
                            f"{what} after {attempt + 1} attempts; the last error: {str(e).rstrip('.')}. Fix the cause "
                            "and run the same command again: the run resumes where it stopped."
                        ) from e
                    return None
                self.store.count_attempt(request_id, str(e))
                attempt += 1
                # Exponential backoff with full jitter, so many clients do not retry in lockstep; at least as
                # long as the server's Retry-After, when it gave one.
                self._sleep(max(random.uniform(0, self.backoff * 2**attempt), e.retry_after or 0.0))
                continue
            latency = time.perf_counter() - started
            self.failures = 0
            self.answered += 1
            with self.store.transaction():
                self.store.finish_request(request_id, completion, latency)
                if on_result:
                    on_result(request_id, completion)
            return completion
