"""The pipeline's logic with a scripted LM: verdicts, the request journal, resume, failures, exports."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Interrupt, ScriptedLM

from selfinstruct.lm import BackendError
from selfinstruct.pipeline import Run, RunError
from selfinstruct.records import InputError
from selfinstruct.similarity import rouge_l, tokenize
from selfinstruct.store import DB_NAME


def open_run(path: Path, lm: ScriptedLM, **overrides) -> Run:
    overrides.setdefault("num_instructions", 12)
    return Run.open(path, overrides, lm=lm)


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path / DB_NAME) as db:
        return db.execute(sql).fetchall()


def test_full_run_records_every_verdict_and_exports(tmp_path: Path, scripted: ScriptedLM) -> None:
    run = open_run(tmp_path, scripted)
    counts = run.run_all()

    accepted = rows(
        tmp_path, "SELECT text, max_rouge FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id"
    )
    assert len(accepted) >= 12
    rejected = rows(tmp_path, "SELECT reason FROM instructions WHERE verdict='rejected'")
    assert rejected, "the scripted LM writes some invalid instructions"
    assert all(reason for (reason,) in rejected)
    assert {r.split(" (")[0] for (r,) in rejected} <= {"keyword", "too_short", "too_similar"}
    assert rows(tmp_path, "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND max_rouge IS NULL") == [(0,)]

    # Every accepted instruction is at most 0.7 from every seed and every instruction accepted before it.
    pool = [t for (t,) in rows(tmp_path, "SELECT text FROM instructions WHERE origin='seed' ORDER BY id")]
    for text, max_rouge in accepted:
        best = max(rouge_l(tokenize(text), tokenize(p)) for p in pool)
        assert best == max_rouge and best <= 0.7
        pool.append(text)

    labels = rows(
        tmp_path, "SELECT classification FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id"
    )
    assert {label for (label,) in labels} <= {"yes", "no"}
    export = tmp_path / "export"
    alpaca = json.loads((export / "alpaca_data.json").read_text())
    kept = rows(tmp_path, "SELECT COUNT(*) FROM instances WHERE verdict='kept'")[0][0]
    assert len(alpaca) == counts["alpaca_data.json"] == kept
    assert kept > 175  # the seed tasks are included by default
    for name in (
        "machine_generated_instructions.jsonl",
        "is_clf_or_not.jsonl",
        "machine_generated_instances.jsonl",
        "all_generated_instances.jsonl",
        "finetuning_data.jsonl",
    ):
        lines = (export / name).read_text().splitlines()
        assert lines and all(json.loads(line) for line in lines)
    records = [json.loads(line) for line in (export / "finetuning_data.jsonl").read_text().splitlines()]
    assert all(r["completion"].endswith("<|endoftext|>") for r in records)
    assert len({(r["prompt"], r["completion"]) for r in records}) == len(records) <= kept  # the paper's encoding
    assert len({r["prompt"].endswith("Output:") for r in records}) == 2  # several templates
    assert not list(export.glob(".*.tmp")), "no temporary file is left behind"


def test_classification_prompts_output_first(tmp_path: Path) -> None:
    run = open_run(tmp_path, ScriptedLM(classify_answer=" Yes"), num_instructions=3)
    run.run_all()
    prompts = rows(tmp_path, "SELECT prompt FROM requests WHERE stage='instances'")
    assert prompts and all(p.startswith("Given the classification task definition") for (p,) in prompts)
    instances = rows(tmp_path, "SELECT input, output FROM instances WHERE request_id IS NOT NULL AND verdict='kept'")
    assert ("first thing", "Alpha") in instances


def test_resume_never_resends_a_stored_request(tmp_path: Path) -> None:
    first = ScriptedLM()
    open_run(tmp_path, first, num_instructions=8).run_all()
    second = ScriptedLM()
    run = open_run(tmp_path, second, num_instructions=40)  # raising the target is allowed
    run.run_all()
    assert not set(first.calls) & set(second.calls)
    assert max(first.calls.values()) == 1 and max(second.calls.values()) == 1
    texts = rows(tmp_path, "SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id")
    assert len(texts) >= 40 and len(set(texts)) == len(texts)
    # A third run with everything stored sends nothing at all.
    third = ScriptedLM()
    open_run(tmp_path, third, num_instructions=40).run_all()
    assert third.sent == 0


@pytest.mark.parametrize("stage_calls", [2, 5, 14, 20])
def test_interrupted_run_resumes_without_loss_or_duplicates(tmp_path: Path, stage_calls: int) -> None:
    # Interrupt after N calls (bootstrap, classify or instances, depending on N), then resume.
    crashed = ScriptedLM(interrupt_after=stage_calls)
    with pytest.raises(Interrupt):
        open_run(tmp_path, crashed).run_all()
    stored = {p for (p,) in rows(tmp_path, "SELECT prompt FROM requests WHERE status='ok'")}
    resumed = ScriptedLM()
    open_run(tmp_path, resumed).run_all()
    assert not stored & {prompt for prompt, _ in resumed.calls}, "a stored request was sent again"
    texts = [
        t
        for (t,) in rows(
            tmp_path, "SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id"
        )
    ]
    assert len(texts) >= 12 and len(set(texts)) == len(texts)
    assert rows(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]
    unclassified = rows(
        tmp_path,
        "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted' AND classification IS NULL",
    )
    assert unclassified == [(0,)]


def test_failed_requests_are_recorded_and_retried_on_resume(tmp_path: Path) -> None:
    def fail_instances(prompt: str, n: int) -> BackendError | None:
        return BackendError("HTTP 503: overloaded") if prompt.startswith("Come up with examples") else None

    flaky = ScriptedLM(fail=fail_instances)
    run = open_run(tmp_path, flaky, num_instructions=4)
    run.engine.backoff = 0.0
    run.run_all()
    failed = rows(tmp_path, "SELECT error, attempts FROM requests WHERE stage='instances' AND status='failed'")
    generation = rows(
        tmp_path,
        "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted' AND classification='no'",
    )[0][0]
    assert len(failed) == generation > 0
    assert all(err == "HTTP 503: overloaded" and attempts == 4 for err, attempts in failed)  # 1 + 3 retries

    open_run(tmp_path, ScriptedLM(), num_instructions=4).run_all()
    assert rows(tmp_path, "SELECT COUNT(*) FROM requests WHERE status='failed'") == [(0,)]


def test_endpoint_down_stops_the_run_resumably(tmp_path: Path) -> None:
    from selfinstruct.lm.engine import EndpointDown

    # Unreachable from the start: stop at the first failed request instead of backing off ten times.
    down = ScriptedLM(fail=lambda prompt, n: BackendError("connection refused"))
    run = open_run(tmp_path, down, num_instructions=4)
    run.engine.backoff = 0.0
    with pytest.raises(EndpointDown, match="the first request failed after 4 attempts.*connection refused"):
        run.bootstrap()
    # Goes down after answering: stop after 10 failed requests in a row.
    flaky = ScriptedLM(fail=lambda prompt, n: BackendError("HTTP 503") if n > 1 else None)
    run = open_run(tmp_path, flaky, num_instructions=40)
    run.engine.backoff = 0.0
    # Requests in flight fail together, so the count may pass 10 before the run stops.
    with pytest.raises(EndpointDown, match=r"\d\d requests in a row failed"):
        run.bootstrap()
    open_run(tmp_path, ScriptedLM(), num_instructions=40).bootstrap()
    assert rows(tmp_path, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == [(0,)]


def test_unparseable_classification_is_retried_then_unknown(tmp_path: Path) -> None:
    run = open_run(tmp_path, ScriptedLM(classify_answer=" The task"), num_instructions=3)
    run.bootstrap()
    run.classify()
    labels = rows(
        tmp_path, "SELECT classification FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id"
    )
    assert {label for (label,) in labels} == {"unknown"}
    attempts = rows(tmp_path, "SELECT instruction_id, COUNT(*) FROM requests WHERE stage='classify' GROUP BY 1")
    assert {n for _, n in attempts} == {3}
    # Retries really sample: temperature 1 and no nucleus cut (the config's top_p 0 would be greedy on OpenAI).
    params = rows(tmp_path, "SELECT sample_index, params FROM requests WHERE stage='classify'")
    for attempt, text in params:
        sampling = json.loads(text)
        expected = (0.0, 0.0) if attempt == 0 else (1.0, 1.0)
        assert (sampling["temperature"], sampling["top_p"]) == expected


def test_same_seed_same_prompts(tmp_path: Path) -> None:
    for name in ("a", "b"):
        open_run(tmp_path / name, ScriptedLM(), num_instructions=6, seed=7).bootstrap()
    prompts = [rows(tmp_path / name, "SELECT prompt FROM requests ORDER BY id") for name in ("a", "b")]
    assert prompts[0] == prompts[1]
    open_run(tmp_path / "c", ScriptedLM(), num_instructions=6, seed=8).bootstrap()
    assert rows(tmp_path / "c", "SELECT prompt FROM requests ORDER BY id") != prompts[0]


def test_resume_with_a_different_config_is_refused(tmp_path: Path) -> None:
    open_run(tmp_path, ScriptedLM(), num_instructions=3).bootstrap()
    with pytest.raises(RunError, match=r"seed: 42 -> 9.*--allow-config-change"):
        Run.open(tmp_path, {"seed": 9})
    with pytest.raises(RunError, match="bootstrap.sampling.temperature"):
        Run.open(tmp_path, {"bootstrap": {"sampling": {"temperature": 1.0}}})
    run = Run.open(tmp_path, {"seed": 9}, allow_config_change=True)
    assert run.config.seed == 9
    # Without flags the stored config is used as it is.
    assert Run.open(tmp_path).config.num_instructions == 3


def test_malformed_seed_file_writes_nothing(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        '{"instruction": "Say hi to the user.", "instances": [{"input": "", "output": "Hi"}]}\n{not json\n'
    )
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"seeds.jsonl:2: invalid JSON"):
        Run.open(out, {"seed_tasks": str(seeds)})
    assert not out.exists()


def test_prepare_is_repeatable(tmp_path: Path, scripted: ScriptedLM) -> None:
    run = open_run(tmp_path, scripted, num_instructions=4)
    run.run_all()
    before = rows(tmp_path, "SELECT instruction_id, input, output, verdict FROM instances ORDER BY id")
    run.prepare()
    after = rows(tmp_path, "SELECT instruction_id, input, output, verdict FROM instances ORDER BY id")
    assert before == after
