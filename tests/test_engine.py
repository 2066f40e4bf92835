"""The asynchronous request engine: concurrency, AIMD, replicas, Retry-After, rate limits, ordering, budgets.

Backends here are in-process fakes with simulated latency (asyncio.sleep); tests/test_openai_backend.py runs
the engine over real HTTP against the dev server and llama.cpp's server.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import ScriptedLM

from selfinstruct.config import Sampling
from selfinstruct.lm import BackendError, Completion
from selfinstruct.lm.engine import BudgetReached, Engine, Prices, TokenBucket, run_all
from selfinstruct.pipeline import Run
from selfinstruct.store import DB_NAME, Store

SAMPLING = Sampling(max_tokens=8)


class SlowLM:
    """Answers after `latency` seconds; counts requests in flight; `fail(n)` may return an error for call n."""

    def __init__(self, latency: float = 0.01, fail=None, model_id: str = "slow") -> None:
        self.model_id = model_id
        self.latency = latency
        self.fail = fail
        self.calls = 0
        self.inflight = 0
        self.max_inflight = 0
        self.started: list[float] = []

    async def complete(self, prompt: str, sampling: Sampling, seed: int) -> Completion:
        self.calls += 1
        number = self.calls
        self.started.append(time.monotonic())
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            await asyncio.sleep(self.latency(prompt) if callable(self.latency) else self.latency)
            if self.fail and (error := self.fail(number)):
                raise error
            return Completion(f"answer to {prompt}", "stop", 3, 2)
        finally:
            self.inflight -= 1

    async def aclose(self) -> None:
        pass


def send_all(engine: Engine, prompts: list[str]) -> list[Completion | None]:
    results: dict[str, Completion | None] = {}

    async def one(prompt: str) -> None:
        results[prompt] = await engine.request("classify", prompt, SAMPLING)

    asyncio.run(run_all(engine, map(one, prompts)))
    return [results[p] for p in prompts]


def test_keeps_the_concurrency_cap_full(tmp_path: Path) -> None:
    lm = SlowLM(latency=0.02)
    engine = Engine(lm, Store(tmp_path), concurrency=8)
    answers = send_all(engine, [f"p{i}" for i in range(40)])
    assert all(a is not None for a in answers)
    assert lm.max_inflight == 8  # never more than the cap, and the cap is reached
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT COUNT(*), SUM(status = 'ok') FROM requests").fetchone() == (40, 40)


def test_no_batch_barrier_a_slow_request_does_not_hold_the_others(tmp_path: Path) -> None:
    lm = SlowLM(latency=lambda prompt: 1.0 if prompt == "p0" else 0.01)
    engine = Engine(lm, Store(tmp_path), concurrency=4)
    finished: list[str] = []

    async def one(prompt: str) -> None:
        await engine.request("classify", prompt, SAMPLING)
        finished.append(prompt)

    asyncio.run(run_all(engine, map(one, [f"p{i}" for i in range(60)])))
    # The three other slots kept turning over while p0 was out, instead of waiting for it as a batch of four.
    assert finished.index("p0") >= 10


def test_overload_decreases_the_limit_once_per_burst_then_grows_back(tmp_path: Path) -> None:
    overloaded = BackendError("HTTP 429", overloaded=True)
    lm = SlowLM(latency=0.01, fail=lambda n: overloaded if n <= 16 else None)
    engine = Engine(lm, Store(tmp_path), concurrency=16, backoff=0.0)
    replica = engine.replicas[0]
    limits: list[float] = []

    async def watch() -> None:
        while True:
            limits.append(replica.limit)
            await asyncio.sleep(0.001)

    async def main() -> None:
        watcher = asyncio.create_task(watch())
        await run_all(engine, (engine.request("classify", f"p{i}", SAMPLING) for i in range(200)))
        watcher.cancel()

    asyncio.run(main())
    # 16 requests sent together all got 429: one decrease for the burst (16 -> 13.6), not 16 decreases to 1.
    assert min(limits) == pytest.approx(16 * 0.85)
    assert replica.limit > 16 * 0.85  # additive increase on the successes that followed
    assert lm.calls == 216


def test_random_errors_are_not_overload(tmp_path: Path) -> None:
    """A trickle of errors (5% 429 with a short Retry-After, 5% 500) neither lowers the limit nor pauses the
    replica: only the failed requests wait before their retry."""
    noise = [
        BackendError("HTTP 429", overloaded=True, retry_after=0.2) if n % 20 == 7 else BackendError("HTTP 500")
        for n in range(40)
    ]
    lm = SlowLM(latency=0.005, fail=lambda n: noise[n % 40] if n % 20 in (7, 13) else None)
    engine = Engine(lm, Store(tmp_path), concurrency=16, backoff=0.0)
    answers = send_all(engine, [f"p{i}" for i in range(400)])
    assert all(a is not None for a in answers)
    replica = engine.replicas[0]
    assert replica.limit == 16 and replica.epoch == 0 and replica.blocked_until == 0.0
    assert lm.max_inflight == 16


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    lm = SlowLM(latency=0.0, fail=lambda n: BackendError("HTTP 429", retry_after=0.3) if n == 1 else None)
    engine = Engine(lm, Store(tmp_path), concurrency=1, backoff=0.0)
    assert send_all(engine, ["p"])[0] is not None
    assert lm.started[1] - lm.started[0] >= 0.3


def test_replicas_share_by_outstanding_and_a_failing_one_is_set_aside(tmp_path: Path) -> None:
    healthy = SlowLM(latency=0.01, model_id="m")
    broken = SlowLM(latency=0.0, model_id="m", fail=lambda n: BackendError("HTTP 500"))
    engine = Engine([healthy, broken], Store(tmp_path), concurrency=8, backoff=0.0)
    answers = send_all(engine, [f"p{i}" for i in range(100)])
    assert all(a is not None for a in answers)  # every failed attempt was retried on the healthy replica
    assert engine.replicas[1].set_asides >= 1
    assert broken.calls < 20 and healthy.calls == 100


def test_replicas_must_serve_one_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="same model"):
        Engine([SlowLM(model_id="a"), SlowLM(model_id="b")], Store(tmp_path))


def test_token_bucket_spreads_requests_over_the_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    bucket = TokenBucket(per_minute=120)  # 2 per second, bursts of 2
    for _ in range(2):
        assert bucket.wait_time() == 0
        bucket.take(1)
    assert bucket.wait_time() == pytest.approx(0.001)  # empty, not negative: the next one waits a moment
    bucket.take(1)
    assert bucket.wait_time() == pytest.approx(0.5 + 0.001)  # overdrawn by one: half a second at 2/s
    now[0] += 0.6
    assert bucket.wait_time() == 0


def test_requests_per_minute_limit_paces_the_engine(tmp_path: Path) -> None:
    lm = SlowLM(latency=0.0)
    engine = Engine(lm, Store(tmp_path), concurrency=8, requests_per_minute=600)  # 10/s, bursts of 10
    send_all(engine, [f"p{i}" for i in range(16)])
    # The first 10 go at once, the 6 others at 10 per second.
    assert lm.started[-1] - lm.started[0] >= 0.5


def bootstrap_and_classify(
    path: Path, ordered: bool, timing_seed: int, samples_per_prompt: int = 1
) -> list[tuple[str, str | None]]:
    rng = random.Random(timing_seed)

    class JitteryLM(ScriptedLM):
        async def complete(self, prompt, sampling, seed):
            await asyncio.sleep(rng.random() * 0.01)
            return await super().complete(prompt, sampling, seed)

    overrides = {
        "num_instructions": 40,
        "lm": {"concurrency": 8, "ordered": ordered},
        "bootstrap": {"samples_per_prompt": samples_per_prompt},
    }
    with Run.open(path, overrides, lm=JitteryLM()) as run:
        run.bootstrap()
        run.classify()
    with sqlite3.connect(path / DB_NAME) as db:
        return db.execute(
            "SELECT text, classification FROM instructions WHERE origin = 'machine' ORDER BY id"
        ).fetchall()


def test_ordered_mode_gives_the_same_dataset_whatever_the_timing(tmp_path: Path) -> None:
    first = bootstrap_and_classify(tmp_path / "a", ordered=True, timing_seed=1)
    second = bootstrap_and_classify(tmp_path / "b", ordered=True, timing_seed=2)
    assert len(first) >= 40
    assert first == second


def test_ordered_mode_is_deterministic_with_several_samples_per_prompt(tmp_path: Path) -> None:
    first = bootstrap_and_classify(tmp_path / "a", ordered=True, timing_seed=1, samples_per_prompt=3)
    second = bootstrap_and_classify(tmp_path / "b", ordered=True, timing_seed=2, samples_per_prompt=3)
    assert len(first) >= 40
    assert first == second


def test_samples_per_prompt_sends_each_prompt_that_many_times_with_different_seeds(tmp_path: Path) -> None:
    lm = ScriptedLM()
    overrides = {"num_instructions": 60, "lm": {"concurrency": 8}, "bootstrap": {"samples_per_prompt": 3}}
    with Run.open(tmp_path, overrides, lm=lm) as run:
        run.bootstrap()
        assert len(run.store.accepted("machine")) >= 60
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        rows = db.execute("SELECT sample_index, prompt FROM requests WHERE stage = 'bootstrap'").fetchall()
    groups: dict[int, set[str]] = {}
    for number, prompt in rows:
        groups.setdefault(number // 3, set()).add(prompt)
    assert sorted(n for n, _ in rows) == list(range(len(rows)))
    assert all(len(prompts) == 1 for prompts in groups.values())  # one prompt per group of 3 requests
    assert len({p for _, p in rows}) == len(groups) >= 5  # and a new one for every group
    assert max(lm.calls.values()) == 1  # every request of a group has its own seed


def test_token_budget_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    lm = ScriptedLM()
    with Run.open(tmp_path, {"num_instructions": 30, "lm": {"max_tokens_total": 500, "concurrency": 2}}, lm=lm) as run:
        with pytest.raises(BudgetReached, match="token budget is spent"):
            run.bootstrap()
        tokens, _ = run.engine.spent()
        assert tokens >= 500
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        # Requests in flight when the budget ran out were answered and stored, not abandoned.
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status != 'ok'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] >= 1
    with Run.open(tmp_path, {"lm": {"max_tokens_total": 10**9}}, lm=lm) as run:
        run.bootstrap()
        assert len(run.store.accepted("machine")) >= 30
    assert max(lm.calls.values()) == 1  # nothing paid for twice


def test_cost_is_counted_at_the_configured_prices(tmp_path: Path) -> None:
    lm = SlowLM(latency=0.0)  # 3 prompt and 2 completion tokens per answer: $0.03 + $0.20 at these prices
    prices = Prices(input=10_000.0, output=100_000.0)
    engine = Engine(lm, Store(tmp_path), concurrency=1, max_cost=0.5, prices=prices)
    with pytest.raises(BudgetReached, match=r"cost budget is spent \(\$0\.6900 of --max-cost \$0\.5\)"):
        send_all(engine, [f"p{i}" for i in range(10)])
    assert lm.calls == 3  # $0.23, $0.46, then $0.69: over the budget, nothing more is sent


def test_a_rejected_first_request_neither_stops_the_run_nor_blocks_a_resume(tmp_path: Path) -> None:
    """HTTP 400 (or a prompt over the context) on the very first request used to stop the run (EndpointDown), and
    every resume sent that request again first, so the run could never get past it."""
    rejected_prompt: list[str] = []

    def fail(prompt: str, n: int) -> BackendError | None:
        if n == 1:
            rejected_prompt.append(prompt)
            return BackendError("HTTP 400: this prompt is not accepted", rejected=True)
        return None

    with Run.open(tmp_path, {"num_instructions": 3}, lm=ScriptedLM(fail=fail)) as run:
        run.run_all()
        assert len(run.store.accepted("machine")) >= 3
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT status, attempts, error FROM requests WHERE status != 'ok'").fetchall() == [
            ("rejected", 1, "HTTP 400: this prompt is not accepted")
        ]
    lm = ScriptedLM()
    with Run.open(tmp_path, {"num_instructions": 3}, lm=lm) as run:
        run.run_all()
    assert not any(prompt == rejected_prompt[0] for prompt, _ in lm.calls)  # not sent again on resume
    lm = ScriptedLM()
    with Run.open(tmp_path, {"num_instructions": 3}, lm=lm, retry_failed=True) as run:
        run.run_all()
    assert sum(n for (prompt, _), n in lm.calls.items() if prompt == rejected_prompt[0]) == 1  # asked for: sent
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status != 'ok'").fetchone() == (0,)
