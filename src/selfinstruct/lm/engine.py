"""The request engine: every LM call of every stage goes through here.

It keeps an endpoint saturated without losing or repeating anything:

- Concurrency: up to `concurrency` requests in flight over all replicas; a stage submits new work as soon as
  a slot frees (no batch barrier). Each replica has its own adaptive limit (AIMD): decreased when its recent
  answers say it is overloaded (a share of 429/503, not one isolated error), grown by one per window of
  successes. One overloaded replica never slows the others.
- Replicas: several backends serving one model; each request goes to the usable replica with the fewest
  requests outstanding. A replica that fails `SET_ASIDE_AFTER` times in a row is set aside for a while, and a
  replica that sent Retry-After gets nothing until then.
- Rate limits: optional requests-per-minute and tokens-per-minute token buckets.
- Journal: a request's key is a hash of (model, prompt, parameters, sample index); a request whose response is
  stored is answered from the store and never sent again. A request is recorded as pending before it is
  sent, so a killed run knows what was in flight. Retryable errors are retried with exponential backoff and
  jitter (the slot is released while waiting); after the last retry the request is recorded as failed (never
  silently dropped) and is sent again on the next resume.
- Atomicity: the caller's `on_result` runs in the same transaction that stores the response: a result exists if
  and only if its response does. All SQLite work happens on the event loop's thread.
- Determinism: results are applied as they arrive, so with concurrency > 1 the order of results (and, in the
  bootstrap stage, the pool each prompt is sampled from) depends on timing. With `ordered=True` they are
  applied in submission order (see `Engine.turn`), which with a deterministic endpoint makes a fixed seed give
  the same dataset.
- Budgets: tokens and cost are counted per stage (including what earlier runs of this directory spent); when
  `max_tokens_total` or `max_cost` is reached, no new request is sent, requests in flight finish, and
  BudgetReached stops the run; it resumes with a higher budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from selfinstruct.config import Sampling
from selfinstruct.lm import LM, BackendError
from selfinstruct.lmtypes import Completion, Prices, Prompt
from selfinstruct.store import Journal, Request, Store

OnResult = Callable[[int, Completion], None]
T = TypeVar("T")
# Overload against noise. A replica's limit decreases only when overload answers (429/503/529) make up at least
# OVERLOAD_SHARE of its last WINDOW answers (at least MIN_EVIDENCE of them): a trickle of random errors is not
# saturation, and halving on each one kept a replica far below its cap (random loss against TCP's AIMD). Once
# saturated it decreases by DECREASE, at most once per burst, and needs fresh evidence before the next decrease.
# A Retry-After pauses the whole replica only when it is long or the replica is saturated; otherwise it delays
# just the retry of its own request.
WINDOW = 64
MIN_EVIDENCE = 16
OVERLOAD_SHARE = 0.15
DECREASE = 0.85
NOISE_BACKOFF = 0.25  # a retry after noise waits this share of the backoff after overload
LONG_RETRY_AFTER = 2.0  # seconds
SET_ASIDE_AFTER = 5  # consecutive failed attempts before a replica is set aside
SET_ASIDE_SECONDS = 5.0  # first time; doubles each time, up to SET_ASIDE_MAX
SET_ASIDE_MAX = 60.0


def sampling_params(sampling: Sampling) -> dict[str, Any]:
    """A request's sampling parameters as stored and hashed; fields added later appear only when set, so the
    keys of requests made before them stay the same."""
    return dict(_sampling_params(sampling))  # a copy: callers may extend it


@functools.lru_cache(maxsize=256)
def _sampling_params(sampling: Sampling) -> dict[str, Any]:  # asdict takes 0.1 ms; a stage uses a few Samplings
    params = dataclasses.asdict(sampling)
    if params["json_schema"] is None:
        del params["json_schema"]
    return params


def request_key(model: str, prompt: Prompt, sampling: Sampling, sample_index: int) -> str:
    payload = json.dumps([model, prompt, sampling_params(sampling), sample_index], sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class EndpointDown(RuntimeError):
    """Too many requests in a row failed: stop the run (it resumes later) instead of burning the queue."""


class BudgetReached(RuntimeError):
    """The token or cost budget is spent: the run stops cleanly and resumes with a higher budget."""


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, completion: Completion) -> None:
        self.requests += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens


class TokenBucket:
    """`rate` units per minute, with bursts of up to one second's worth. A request may overdraw the bucket
    (a large request is not starved); the next one then waits until the level is positive again."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()

    def wait_time(self) -> float:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.level > 0 else -self.level / self.rate + 1e-3

    def take(self, amount: float) -> None:
        self.level -= amount


@dataclass
class Replica:
    lm: LM
    name: str
    cap: int
    limit: float = 0.0  # adaptive: at most this many requests outstanding
    outstanding: int = 0
    epoch: int = 0  # bumped on each decrease, so one burst of 429s halves the limit once, not once per request
    failures_in_row: int = 0
    set_asides: int = 0
    blocked_until: float = 0.0  # set aside, or asked to wait (Retry-After)
    sent: int = 0
    failed: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))  # answers: overload or not

    def __post_init__(self) -> None:
        self.limit = float(self.cap)

    def saturated(self) -> bool:
        """Whether recent answers say this replica is overloaded, not just noisy."""
        return len(self.recent) >= MIN_EVIDENCE and sum(self.recent) >= OVERLOAD_SHARE * len(self.recent)

    def usable(self, now: float) -> bool:
        return now >= self.blocked_until and self.outstanding < max(1, int(self.limit))


@dataclass
class _Lease:
    replica: Replica
    epoch: int
    started: float = field(default_factory=time.perf_counter)


class Engine:
    def __init__(
        self,
        lms: LM | list[LM],
        store: Store,
        *,
        concurrency: int = 64,
        max_retries: int = 3,
        max_consecutive_failures: int = 10,
        backoff: float = 1.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        ordered: bool = False,
        prices: Prices | None = None,
        max_cost: float | None = None,
        max_tokens_total: int | None = None,
        retry_failed: bool = False,
    ) -> None:
        lms = lms if isinstance(lms, list) else [lms]
        if len({lm.model_id for lm in lms}) != 1:
            raise ValueError("replicas must serve the same model")
        self.lm = lms[0]
        self.model_id = self.lm.model_id
        self.store = store
        self.journal = Journal(store)
        self.concurrency = concurrency
        self.replicas = [Replica(lm, _replica_name(lm, i, len(lms)), concurrency) for i, lm in enumerate(lms)]
        self.max_retries = max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self.backoff = backoff
        self.rpm = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tpm = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self.ordered = ordered
        self.prices = prices or Prices()
        self.max_cost = max_cost
        self.max_tokens_total = max_tokens_total
        # Requests the backend rejected (a prompt over the context, HTTP 400) fail the same way when sent again:
        # they are sent again only when asked (--retry-failed), so they never block a run or a resume.
        self.retry_failed = retry_failed
        self.failures = 0  # consecutive requests that failed after every retry
        self.retrying = 0  # requests waiting out a backoff before their next attempt (their slot is free)
        self._retry_started: asyncio.Event | None = None
        self.answered = 0  # requests answered by a backend in this process
        self.inflight = 0
        # Usage per stage, from the journal (earlier runs count towards the budget) plus this run's answers.
        self.usage: dict[str, Usage] = {
            row["stage"]: Usage(row["ok"] or 0, row["prompt_tokens"], row["completion_tokens"])
            for row in store.request_stats()
        }
        self._changed: asyncio.Condition | None = None  # created inside the running loop
        self._last_turn: asyncio.Future[None] | None = None
        # An audit trail outside the database, for tests that must prove no stored request is re-sent.
        self._send_log = os.environ.get("SELFINSTRUCT_SEND_LOG")

    # --- accounting -------------------------------------------------------------------------------

    def spent(self) -> tuple[int, float]:
        """(tokens, dollars) spent so far by this run directory."""
        tokens = sum(u.prompt_tokens + u.completion_tokens for u in self.usage.values())
        cost = sum(self.prices.cost(u.prompt_tokens, u.completion_tokens) for u in self.usage.values())
        return tokens, cost

    def budget_spent(self) -> str | None:
        """None while within budget, else which budget is spent."""
        tokens, cost = self.spent()
        if self.max_tokens_total is not None and tokens >= self.max_tokens_total:
            return f"the token budget is spent ({tokens:,} of --max-tokens-total {self.max_tokens_total:,})"
        if self.max_cost is not None and cost >= self.max_cost:
            return f"the cost budget is spent (${cost:.4f} of --max-cost ${self.max_cost:g})"
        return None

    # --- slots ------------------------------------------------------------------------------------

    @property
    def retry_started(self) -> asyncio.Event:
        """Set when a request starts waiting out a backoff (created inside the running loop)."""
        if self._retry_started is None:
            self._retry_started = asyncio.Event()
        return self._retry_started

    @property
    def changed(self) -> asyncio.Condition:
        """Notified whenever a slot frees, a result is applied or a replica comes back."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _acquire(self, estimated_tokens: int, avoid: Replica | None = None) -> _Lease:
        async with self.changed:
            while True:
                now = time.monotonic()
                wait = math.inf
                if self.inflight < self.concurrency:
                    usable = [r for r in self.replicas if r.usable(now)]
                    if len(usable) > 1 and avoid in usable:
                        usable.remove(avoid)  # a retry goes elsewhere when it can
                    limits = [b.wait_time() for b in (self.rpm, self.tpm) if b]
                    if usable and not any(limits):
                        replica = min(usable, key=lambda r: (r.outstanding / max(r.limit, 1.0), r.sent))
                        if self.rpm:
                            self.rpm.take(1)
                        if self.tpm:
                            self.tpm.take(estimated_tokens)
                        self.inflight += 1
                        replica.outstanding += 1
                        replica.sent += 1
                        return _Lease(replica, replica.epoch)
                    wait = max(limits, default=0.0) or wait
                    blocked = [r.blocked_until - now for r in self.replicas if r.blocked_until > now]
                    if not usable and blocked:
                        wait = min(wait, min(blocked))
                # Wake on a freed slot, or when a limit or a blocked replica allows again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), None if wait == math.inf else wait)

    async def _release(self, lease: _Lease, error: BackendError | None, count: bool = True) -> None:
        replica = lease.replica
        replica.outstanding -= 1
        self.inflight -= 1
        now = time.monotonic()
        if not count:  # cancelled: neither a success nor a failure of the replica
            pass
        elif error is None:
            replica.failures_in_row = 0
            replica.set_asides = 0
            replica.recent.append(False)
            replica.limit = min(replica.cap, replica.limit + 1.0 / max(replica.limit, 1.0))
        else:
            replica.failed += 1
            replica.failures_in_row += 1
            replica.recent.append(error.overloaded)
            saturated = replica.saturated()
            if error.overloaded and saturated and lease.epoch == replica.epoch:
                replica.limit = max(1.0, replica.limit * DECREASE)
                replica.epoch += 1
                replica.recent.clear()  # the next decrease needs evidence gathered at the new limit
            if error.retry_after and (saturated or error.retry_after >= LONG_RETRY_AFTER):
                replica.blocked_until = max(replica.blocked_until, now + error.retry_after)
            if replica.failures_in_row >= SET_ASIDE_AFTER and len(self.replicas) > 1:
                pause = min(SET_ASIDE_MAX, SET_ASIDE_SECONDS * 2**replica.set_asides)
                replica.blocked_until = max(replica.blocked_until, now + pause)
                replica.set_asides += 1
                replica.failures_in_row = 0
        await self.notify()

    # --- ordering ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        """A place in the submission order. In ordered mode, `await wait()` returns once every earlier turn has
        ended; without it, at once. Turns are taken in the order this is entered."""
        previous, mine = self._last_turn, asyncio.get_running_loop().create_future()
        self._last_turn = mine

        async def wait() -> None:
            if self.ordered and previous is not None:
                await asyncio.shield(previous)

        try:
            yield wait
        finally:
            mine.set_result(None)
            if self._last_turn is mine:
                self._last_turn = None

    # --- requests ---------------------------------------------------------------------------------

    async def request(
        self,
        stage: str,
        prompt: Prompt | Callable[[], Prompt],
        sampling: Sampling,
        *,
        sample_index: int = 0,
        instruction_id: int | None = None,
        on_result: OnResult | None = None,
    ) -> Completion | None:
        """Answer from the journal or send; None when every attempt failed (recorded as failed).

        `prompt` may be a function, called once a slot is free: the bootstrap stage builds each prompt from the
        pool as it is at send time."""
        async with self.turn() as wait_turn:
            lease = None
            if callable(prompt):
                self._check_budget()
                lease = await self._acquire(sampling.max_tokens)
                prompt = prompt()
            key = request_key(self.model_id, prompt, sampling, sample_index)
            stored = self.store.find_request(key)
            if stored is not None and stored.status == "rejected" and not self.retry_failed:
                if lease:
                    await self._release(lease, None, count=False)
                await wait_turn()
                return None
            if stored is not None and stored.status == "ok":  # answered from the journal
                if lease:
                    await self._release(lease, None)
                await wait_turn()
                completion = stored.completion()
                if on_result:
                    await self.journal.write(functools.partial(on_result, stored.id, completion))
                return completion
            if lease is None:
                self._check_budget()  # before journaling: a request stopped by the budget leaves no trace
            params = {**sampling_params(sampling), "seed": self._seed(key)}
            request_id = await self.journal.write(
                functools.partial(
                    self.store.begin_request, key, stage, self.model_id, prompt, params, sample_index, instruction_id
                )
            )
            answer = await self._send(request_id, key, prompt, sampling, lease)
            await wait_turn()
            if answer is None:
                return None
            completion, latency, replica = answer

            def store_answer() -> None:  # the response and its results: together or not at all
                self.store.finish_request(request_id, completion, latency, replica)
                if on_result:
                    on_result(request_id, completion)

            await self.journal.write(store_answer)
            self.usage.setdefault(stage, Usage()).add(completion)
            await self.notify()
            return completion

    async def resend(self, request: Request, on_result: OnResult | None = None) -> Completion | None:
        """Send again a request that was in flight when a run was killed, or that failed."""
        sampling = Sampling(**{k: (tuple(v) if k == "stop" else v) for k, v in request.params.items() if k != "seed"})
        return await self.request(
            request.stage,
            request.payload,
            sampling,
            sample_index=request.sample_index,
            instruction_id=request.instruction_id,
            on_result=on_result,
        )

    def _check_budget(self) -> None:
        reason = self.budget_spent()
        if reason:
            raise BudgetReached(f"{reason}: stopped before sending more. Raise the budget and run again to resume.")

    @staticmethod
    def _seed(key: str) -> int:
        return int(key[:8], 16)  # a per-request sampler seed: reproducible, yet different for every request

    async def _send(
        self, request_id: int, key: str, prompt: Prompt, sampling: Sampling, lease: _Lease | None
    ) -> tuple[Completion, float, str] | None:
        """Send until answered or out of retries: (completion, latency of the attempt that answered, the replica
        that answered), not yet stored; None once recorded as failed."""
        attempt = 0
        shrunk = False
        # For the tokens-per-minute limit, before the answer.
        estimate = len(prompt if isinstance(prompt, str) else json.dumps(prompt)) // 4 + sampling.max_tokens
        last: Replica | None = None
        while True:
            if lease is None:
                lease = await self._acquire(estimate, avoid=last)
            if self._send_log:
                with open(self._send_log, "a", encoding="utf-8") as log:
                    log.write(key + "\n")
            error = None
            try:
                completion = await lease.replica.lm.complete(prompt, sampling, self._seed(key))
            except BackendError as e:
                error = e
            except BaseException:  # cancelled (the run stops): free the slot; the request stays pending
                await self._release(lease, None, count=False)
                raise
            latency = time.perf_counter() - lease.started
            await self._release(lease, error)
            last, lease = lease.replica, None
            if error is None:
                if self.tpm:  # correct the estimate with what the request really used
                    self.tpm.take(completion.prompt_tokens + completion.completion_tokens - estimate)
                self.failures = 0
                self.answered += 1
                return completion, latency, last.name
            if error.context_overflow and not shrunk:
                # Once, at once: room for the prompt (the paper shrank max_tokens by 0.8 on such errors).
                shrunk = True
                smaller = error.fits if error.fits and error.fits < sampling.max_tokens else sampling.max_tokens // 2
                if smaller >= 1:
                    sampling = dataclasses.replace(sampling, max_tokens=smaller)
                    self.store.count_attempt(request_id, f"{error} (retrying with max_tokens {smaller})")
                    continue
            if error.rejected or not error.retryable or attempt >= self.max_retries:
                status = "rejected" if error.rejected else "failed"
                self.store.fail_request(request_id, str(error), latency, status, last.name)
                self.failures += 1
                # Stop when the endpoint keeps failing, and at once when it has not answered even once (an
                # unreachable endpoint at start-up should not cost ten rounds of backoff). A rejected request says
                # nothing about the endpoint: it alone never stops the run.
                if self.failures >= self.max_consecutive_failures or not (self.answered or error.rejected):
                    what = f"{self.failures} requests in a row failed" if self.answered else "the first request failed"
                    raise EndpointDown(
                        f"{what} after {attempt + 1} attempts; the last error: {str(error).rstrip('.')}. Fix the "
                        "cause and run the same command again: the run resumes where it stopped."
                    ) from error
                return None
            self.store.count_attempt(request_id, str(error))
            attempt += 1
            # Exponential backoff with full jitter, so many clients do not retry in lockstep; at least as long as
            # the server's Retry-After, when it gave one. The slot is free meanwhile.
            # run_all counts it as waiting, and starts another work item to use the slot.
            self.retrying += 1
            self.retry_started.set()
            try:
                # Noise (a random 5xx, a dropped connection) is retried sooner than overload.
                base = self.backoff if error.overloaded and last.saturated() else self.backoff * NOISE_BACKOFF
                await asyncio.sleep(max(random.uniform(0, base * 2**attempt), error.retry_after or 0.0))
            finally:
                self.retrying -= 1

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.lm.aclose()


def _replica_name(lm: LM, index: int, count: int) -> str:
    """How the journal and the statistics name a replica: its own name (a Ray actor), its URL, else its model."""
    name = getattr(lm, "name", None) or getattr(lm, "base_url", None)
    return name or (lm.model_id if count == 1 else f"replica {index + 1}")


async def run_all(engine: Engine, work: Iterable[Awaitable[object]], limit: int | None = None) -> None:
    """Run work items (coroutines that send requests), at most `limit` at once (default: the engine's
    concurrency) plus one for each request waiting out a backoff (its slot is free meanwhile, and another item
    should use it), starting the next as soon as one ends. EndpointDown or any other error cancels the rest (their
    requests stay journaled as pending and are resent on resume); BudgetReached lets the running ones finish
    first, so no paid-for response is thrown away."""
    limit = limit or engine.concurrency
    items = iter(work)
    running: set[asyncio.Task[object]] = set()
    stop: BaseException | None = None
    retry = engine.retry_started
    waker: asyncio.Task[object] | None = None
    try:
        while True:
            while stop is None and len(running) < limit + engine.retrying:
                item = next(items, None)
                if item is None:
                    break
                running.add(asyncio.ensure_future(item))
            if not running:
                break
            if waker is None or waker.done():
                retry.clear()
                waker = asyncio.ensure_future(retry.wait())
            done, running = await asyncio.wait(running | {waker}, return_when=asyncio.FIRST_COMPLETED)
            running.discard(waker)
            done.discard(waker)
            errors = [e for e in (task.exception() for task in done) if e is not None]  # each one retrieved
            for error in errors:
                if not isinstance(error, BudgetReached):
                    raise error
            stop = stop or (errors[0] if errors else None)
        if stop is not None:
            raise stop
    finally:
        if waker is not None:
            waker.cancel()
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for item in items:  # close coroutines never started, so Python does not warn about them
            if asyncio.iscoroutine(item):
                item.close()
