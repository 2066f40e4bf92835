"""The OpenAI-compatible backend over real HTTP, against the project's dev server on 127.0.0.1."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfinstruct.devserver import DevServer, ServerConfig, scripted_completion
from selfinstruct.pipeline import Run
from selfinstruct.store import DB_NAME

SECRET = "sk-test-secret-0123456789"


@pytest.fixture
def endpoint() -> Iterator[DevServer]:
    with DevServer() as server:
        yield server


def openai_config(server: DevServer, **lm: object) -> dict:
    return {"lm": {"backend": "openai", "model": "tiny", "base_url": server.base_url, **lm}}


def query(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path / DB_NAME) as db:
        return db.execute(sql).fetchall()


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_pipeline_over_http(tmp_path: Path, endpoint: DevServer, monkeypatch: pytest.MonkeyPatch, api: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run = Run.open(tmp_path, {"num_instructions": 4, **openai_config(endpoint, api=api)})
    run.run_all()
    assert len(run.store.accepted("machine")) >= 4
    headers, first = endpoint.received[0]
    assert first["temperature"] == 0.7 and first["top_p"] == 0.5 and first["presence_penalty"] == 2.0
    if api == "completions":
        assert first["max_tokens"] == 1024 and first["stop"] == ["\n\n", "\n16", "16.", "16 ."]
    else:  # chat-native prompts, answered in every chat shape of the dev server, without the stops
        assert first["max_tokens"] == 1024 and "stop" not in first and first["messages"][0]["role"] == "system"
        assert {i.classification for i in run.store.accepted("machine")} <= {"yes", "no"}
    assert all(h.get("authorization") == f"Bearer {SECRET}" for h, _ in endpoint.received)
    run.close()
    # The key is never written anywhere in the run directory.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_server_errors_are_retried_then_recorded(tmp_path: Path) -> None:
    with DevServer(ServerConfig(fault_rate=1.0, faults=("503",))) as server:
        run = Run.open(tmp_path, {"num_instructions": 2, **openai_config(server)})
        run.engine.backoff = 0.0
        run.engine.answered = 1  # as if the endpoint had answered before: record the failure and go on
        assert (
            run.run_coroutine(
                run.engine.request("bootstrap", "Come up with a series of tasks:\n1.", run.config.bootstrap.sampling)
            )
            is None
        )
    ((status, attempts, error),) = query(tmp_path, "SELECT status, attempts, error FROM requests")
    assert (status, attempts) == ("failed", 4) and error.startswith("HTTP 503") and "injected 503" in error
    with DevServer(ServerConfig(fault_rate=1.0, faults=("invalid-json",))) as server:
        run = Run.open(tmp_path, {**openai_config(server)})
        run.engine.backoff = 0.0
        run.engine.answered = 1
        assert (
            run.run_coroutine(
                run.engine.request("bootstrap", "Come up with a series of tasks:\n2.", run.config.bootstrap.sampling)
            )
            is None
        )
    errors = [e for (e,) in query(tmp_path, "SELECT error FROM requests ORDER BY id")]
    assert errors[1].startswith("invalid response")


def test_run_completes_at_30_percent_faults_and_counts_every_fault(tmp_path: Path) -> None:
    config = ServerConfig(fault_rate=0.3, slow_seconds=2.0, seed=1)
    settings = {"num_instructions": 10, "lm": {"max_retries": 6, "timeout": 0.5}}
    with DevServer(config) as server:
        for _ in range(5):  # a request that exhausts its retries is recorded as failed and re-sent by the next run
            run = Run.open(tmp_path, {**settings, **openai_config(server, max_retries=6, timeout=0.5)})
            run.engine.backoff = 0.01
            run.run_all()
            run.close()
            if query(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]:
                break
        served = sum(server.counts.values())
        faults = served - server.counts["ok"]
    assert faults > 0.2 * served  # the mix really was hostile
    # Every HTTP request the server saw is an attempt in the run store: no fault goes uncounted.
    assert query(tmp_path, "SELECT SUM(attempts) FROM requests") == [(served,)]
    assert query(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]
    texts = query(tmp_path, "SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted'")
    assert len(texts) >= 10 and len(set(texts)) == len(texts)
    unclassified = query(
        tmp_path,
        "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted' AND classification IS NULL",
    )
    assert unclassified == [(0,)]


def test_server_that_disappears_mid_run_and_comes_back(tmp_path: Path) -> None:
    server = DevServer(ServerConfig(latency=0.01)).start()
    port = server.port
    run = Run.open(tmp_path, {"num_instructions": 10, **openai_config(server, max_retries=8)})
    run.engine.backoff = 0.2

    def outage() -> None:  # after some answers, the server goes away for 2 s, then a new one takes the port
        while sum(server.counts.values()) < 5:
            time.sleep(0.01)
        server.stop()
        time.sleep(2.0)
        replacement.append(DevServer(ServerConfig(latency=0.01), port=port).start())

    replacement: list[DevServer] = []
    thread = threading.Thread(target=outage)
    thread.start()
    run.run_all()
    thread.join()
    replacement[0].stop()
    assert sum(server.counts.values()) >= 5 and sum(replacement[0].counts.values()) > 0
    assert query(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]
    retried = query(tmp_path, "SELECT COUNT(*) FROM requests WHERE attempts > 1")[0][0]
    assert retried >= 1  # the outage was felt, and ridden out by retries
    assert len(run.store.accepted("machine")) >= 10


def test_cli_spreads_requests_over_replicas_and_stops_at_a_token_budget(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from selfinstruct.cli import BUDGET_EXIT_CODE, cli

    with DevServer(ServerConfig(latency=0.02)) as one, DevServer(ServerConfig(latency=0.02)) as two:
        args = ["run", "--out", str(tmp_path), "--backend", "openai", "--model", "tiny", "--concurrency", "8"]
        args += ["--base-url", one.base_url, "--base-url", two.base_url, "--num-instructions", "30"]
        result = CliRunner().invoke(cli, [*args, "--max-tokens-total", "3000"])
        assert result.exit_code == BUDGET_EXIT_CODE, result.output
        assert "stopped: the token budget is spent" in result.output and "tokens in" in result.output
        assert query(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]
        # Raising the budget resumes the run to the end; both replicas did part of the work.
        result = CliRunner().invoke(cli, [*args, "--max-tokens-total", "10000000"])
        assert result.exit_code == 0, result.output
        assert one.counts["ok"] > 10 and two.counts["ok"] > 10
        (ok,) = query(tmp_path, "SELECT COUNT(*) FROM requests WHERE status = 'ok'")[0]
        assert one.counts["ok"] + two.counts["ok"] == ok  # nothing sent twice


def test_prices_give_a_cost_in_the_summary(tmp_path: Path, endpoint: DevServer) -> None:
    from click.testing import CliRunner

    from selfinstruct.cli import cli

    config = tmp_path / "prices.toml"
    config.write_text("[lm]\nprice_input = 0.5\nprice_output = 1.5\n")
    args = ["run", "--out", str(tmp_path / "run"), "--backend", "openai", "--model", "tiny"]
    result = CliRunner().invoke(cli, [*args, "--base-url", endpoint.base_url, "--num-instructions", "3"])
    assert result.exit_code == 0, result.output
    assert "cost" in result.output and "$0." not in result.output  # no prices: no cost
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--out",
            str(tmp_path / "priced"),
            *args[3:],
            "--config",
            str(config),
            "--base-url",
            endpoint.base_url,
            "--num-instructions",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    per_stage = query(
        tmp_path / "priced", "SELECT stage, SUM(prompt_tokens), SUM(completion_tokens) FROM requests GROUP BY stage"
    )
    assert len(per_stage) == 3
    for stage, tokens_in, tokens_out in per_stage:
        assert f"${(tokens_in * 0.5 + tokens_out * 1.5) / 1e6:.4f}" in result.output, stage


def test_context_errors_shrink_max_tokens_and_rejected_requests_never_block_the_run(tmp_path: Path) -> None:
    """Against a server whose context holds 740 words: bootstrap prompts (~100 words) with max_tokens 1024 are
    retried once with the max_tokens that fits; the classification tasks' instance prompt alone (~750 words) is
    over it, so those requests are rejected. The run still reaches its end, exits 0 and counts them as failed; a
    resume does not send them again, --retry-failed does."""
    from click.testing import CliRunner

    from selfinstruct.cli import cli

    with DevServer(ServerConfig(context_size=740)) as server:
        args = ["run", "--out", str(tmp_path / "run"), "--num-instructions", "6", "--backend", "openai"]
        args += ["--model", "tiny", "--base-url", server.base_url]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        sent_as: dict[tuple[str, int], list[int]] = {}
        for _, body in server.received:
            if body["prompt"].startswith("Come up with a series"):
                sent_as.setdefault((body["prompt"], body["seed"]), []).append(body["max_tokens"])
        for (prompt, _), sizes in sent_as.items():  # each request once as asked, once with what fits
            assert sizes == [1024, 740 - len(prompt.split())]
        rows = query(tmp_path / "run", "SELECT stage, status, error FROM requests WHERE status != 'ok'")
        assert rows and all(stage == "instances" and status == "rejected" for stage, status, _ in rows)
        assert all("maximum context length is 740" in error for *_, error in rows)
        assert server.counts["context"] > len(rows)  # the bootstrap's were answered after shrinking
        summary = result.output.split("instances", 1)[1]
        assert f" {len(rows)} " in summary.splitlines()[0]  # the failed column of the instances stage

        sent = len(server.received)
        assert CliRunner().invoke(cli, args).exit_code == 0
        assert len(server.received) == sent  # a resume skips rejected requests
        assert CliRunner().invoke(cli, [*args, "--retry-failed"]).exit_code == 0
        assert len(server.received) == sent + 2 * len(rows)  # each sent again, once shrunk, still rejected


def test_dev_server_answers_bootstrap_prompts_with_real_instructions(tmp_path: Path) -> None:
    real = ("Write a limerick about a cat who loves rain.", "Explain how  a\ncompass works.", "List five red fruits.")
    with DevServer(ServerConfig(instructions=real)) as server:
        run = Run.open(tmp_path, {"num_instructions": 2, **openai_config(server)})
        run.bootstrap()
        texts = {i.text for i in run.store.accepted("machine")}
        run.close()
    assert texts and texts <= {" ".join(r.split()) for r in real}


def test_dev_server_splices_real_instructions_into_new_ones() -> None:
    real = ("Write a limerick about a cat who loves rain.", "Explain how a compass works to a child.")
    answers = [
        scripted_completion(f"Come up with a series of tasks:\n{n}", 0, instructions=real, splice=True)[0]
        for n in range(40)
    ]
    items = {item.split(". ", 1)[-1].strip() for answer in answers for item in answer.split("\n")}
    spliced = items - set(real)
    assert spliced, "every answer was a verbatim instruction"
    for item in spliced:  # a head of one real instruction and a tail of one, at word boundaries
        words = item.split()
        assert any(
            words[:cut] == r.split()[:cut] and any(words[cut:] == t.split()[-len(words) + cut :] for t in real)
            for r in real
            for cut in range(1, len(words))
        ), item
    verbatim = [scripted_completion("Come up with a series of tasks:\n1", 0, instructions=real)[0]]
    assert {v.strip() for v in verbatim[0].split("\n")[0:1]} <= set(real)  # without splice: verbatim only
