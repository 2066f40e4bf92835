"""Chat models: chat-native prompts on every backend, the repair turn, servers and templates that refuse a
feature (learned once), and run directories made before chat support resuming unchanged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import Interrupt, ScriptedLM

from selfinstruct.config import ConfigError, Sampling, from_dict
from selfinstruct.devserver import DevServer, ServerConfig
from selfinstruct.lm import Completion, Prompt, fold_system
from selfinstruct.lm.engine import EndpointDown
from selfinstruct.pipeline import Run
from selfinstruct.stages.prompts import load as load_prompts
from selfinstruct.store import DB_NAME, MIGRATIONS

GOOD_TASKS = "1. Write a haiku about a quiet harbor at dawn.\n2. List three ways to reuse glass jars at home."


class ChatLM(ScriptedLM):
    """A chat model that first answers every stage with chatter only, and in the format once asked again."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[Prompt] = []

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        assert isinstance(prompt, list), "chat mode sends messages"
        self.prompts.append(prompt)
        system = prompt[0]["content"]
        if not is_repair(prompt):
            return Completion("Sure! I'd be glad to help with that.", "stop", 10, 8)
        if system.startswith("You write instructions"):
            return Completion(GOOD_TASKS.replace("harbor", f"harbor {seed % 997}"), "stop", 10, 20)
        if system.startswith("You decide"):
            return Completion("No", "stop", 10, 1)
        return Completion("Example 1\nInput: a jar\nOutput: Use it as a vase.", "stop", 10, 12)


REPAIRS = {
    load_prompts().fill(f"chat_{name}.txt", "repair")
    for name in ("bootstrap", "classify", "instances_generation", "instances_classification")
}


def is_repair(prompt: Prompt) -> bool:
    return isinstance(prompt, list) and prompt[-1]["content"] in REPAIRS


def test_every_stage_repairs_an_answer_that_parses_to_nothing(tmp_path: Path) -> None:
    lm = ChatLM()
    with Run.open(tmp_path, {"num_instructions": 2, "lm": {"api": "chat"}}, lm=lm) as run:
        run.run_all()
        machine = run.store.accepted("machine")
        assert len(machine) >= 2 and {i.classification for i in machine} == {"no"}
        kept = [r for r in run.store.instances("kept") if r["origin"] == "machine"]
        assert {(r["input"], r["output"]) for r in kept} == {("a jar", "Use it as a vase.")}
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        stages = dict(db.execute("SELECT stage, COUNT(*) FROM requests GROUP BY stage").fetchall())
    assert stages["bootstrap repair"] == stages["bootstrap"]
    assert stages["classify repair"] == stages["classify"] == len(machine)
    assert stages["instances repair"] == stages["instances"] == len(machine)
    repair = next(p for p in lm.prompts if is_repair(p) and p[0]["content"].startswith("You write instructions"))
    assert repair[-2]["content"] == "Sure! I'd be glad to help with that."
    assert repair[-1]["content"].startswith("I could not find new tasks in that answer.")


def test_an_instance_repair_left_undone_by_a_stopped_run_is_sent_on_resume(tmp_path: Path) -> None:
    lm = ChatLM()
    with Run.open(tmp_path, {"num_instructions": 2, "lm": {"api": "chat"}}, lm=lm) as run:
        run.bootstrap()
        run.classify()
    with sqlite3.connect(tmp_path / DB_NAME) as db:  # as if killed after the first answers, before their repairs
        db.execute("DELETE FROM requests WHERE stage = 'instances repair'")
    lm = ChatLM()

    class StopBeforeRepair(ChatLM):
        async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
            if is_repair(prompt) and prompt[0]["content"].startswith("You write examples"):
                raise Interrupt()  # the run dies here
            return await super().complete(prompt, sampling, seed)

    with Run.open(tmp_path, lm=StopBeforeRepair()) as run, pytest.raises(Interrupt):
        run.instances()
    with Run.open(tmp_path, lm=lm) as run:
        run.instances()
        run.prepare()
        assert [r for r in run.store.instances("kept") if r["origin"] == "machine"]
    assert not any(not is_repair(p) and p[0]["content"].startswith("You write examples") for p in lm.prompts)
    assert any(is_repair(p) for p in lm.prompts)


def test_fold_system():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert fold_system(messages) == [{"role": "user", "content": "Be brief.\n\nHi"}]
    assert messages[1]["content"] == "Hi"  # not changed in place
    assert fold_system([{"role": "user", "content": "Hi"}]) == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("refuse", ["refuse_system", "refuse_max_tokens"])
def test_a_server_that_refuses_a_feature_is_learned_once(tmp_path: Path, refuse: str) -> None:
    with DevServer(ServerConfig(**{refuse: True})) as server:
        lm = {"backend": "openai", "api": "chat", "model": "m", "base_url": server.base_url}
        with Run.open(tmp_path, {"num_instructions": 3, "lm": lm}) as run:
            run.run_all()
            assert len(run.store.accepted("machine")) >= 3
        bodies = [body for _, body in server.received]
    if refuse == "refuse_system":
        refused = [i for i, b in enumerate(bodies) if any(m["role"] == "system" for m in b["messages"])]
    else:
        refused = [i for i, b in enumerate(bodies) if "max_tokens" in b]
    # Only the requests already in flight when the first refusal came back were refused; every later one adapted.
    assert server.counts["refused"] == len(refused) <= 2 and max(refused) < 4
    later = [body for i, body in enumerate(bodies) if i not in refused]
    assert len(later) > 10
    if refuse == "refuse_system":
        assert later[0]["messages"][0]["content"].startswith("You write instructions")  # folded into the user turn
    else:
        assert all(body["max_completion_tokens"] >= 1 for body in later)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("SELECT COUNT(*) FROM requests WHERE status != 'ok'").fetchone() == (0,)


def test_a_run_made_before_chat_support_resumes_unchanged(tmp_path: Path) -> None:
    """Schema 1 (no messages column) with completion prompts: the migration adds the column, no stored request
    is sent again, and the stored keys still match (request keys of text prompts did not change)."""
    with Run.open(tmp_path, {"num_instructions": 3}, lm=ScriptedLM()) as run:
        run.run_all()
        first = len(run.store.accepted("machine"))
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("ALTER TABLE requests DROP COLUMN messages")
        db.execute("ALTER TABLE requests DROP COLUMN replica")  # schema 3, later
        db.execute("PRAGMA user_version = 1")
        stored = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    lm = ScriptedLM()
    with Run.open(tmp_path, {"num_instructions": 3}, lm=lm) as run:
        run.run_all()
        assert len(run.store.accepted("machine")) == first
    assert lm.sent == 0  # everything answered from the journal
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == stored


def test_structured_output_over_http_and_its_fallback(tmp_path: Path) -> None:
    lm = {"backend": "openai", "api": "chat", "model": "m", "structured": "auto"}
    with DevServer(ServerConfig()) as server:
        with Run.open(tmp_path / "a", {"num_instructions": 4, "lm": {**lm, "base_url": server.base_url}}) as run:
            run.run_all()
            assert len(run.store.accepted("machine")) >= 4
            assert [r for r in run.store.instances("kept") if r["origin"] == "machine"]
        bodies = [body for _, body in server.received]
    assert all(body["response_format"]["type"] == "json_schema" for body in bodies)
    schemas = {json.dumps(body["response_format"]["json_schema"]["schema"], sort_keys=True) for body in bodies}
    assert len(schemas) >= 3  # one per stage (bootstrap, classify, and the instance templates in use)
    with sqlite3.connect(tmp_path / "a" / DB_NAME) as db:
        texts = [t for (t,) in db.execute("SELECT text FROM requests")]
    assert all(isinstance(json.loads(t), dict) for t in texts)  # every answer is the schema's JSON

    # A server without structured output: learned at the first refusal, then plain text (the chat shapes).
    with DevServer(ServerConfig(refuse_response_format=True)) as server:
        with Run.open(tmp_path / "b", {"num_instructions": 4, "lm": {**lm, "base_url": server.base_url}}) as run:
            run.run_all()
            assert len(run.store.accepted("machine")) >= 4
        assert 1 <= server.counts["refused"] <= 2
        assert sum("response_format" not in body for _, body in server.received) > 10

    # Asked for it explicitly, a refusal is an error: the requests are rejected and the run stops.
    with DevServer(ServerConfig(refuse_response_format=True)) as server:
        settings = {"num_instructions": 4, "lm": {**lm, "structured": "json_schema", "base_url": server.base_url}}
        with Run.open(tmp_path / "c", settings) as run, pytest.raises(EndpointDown, match="response_format"):
            run.bootstrap()


def test_structured_output_is_refused_where_it_cannot_be():
    with pytest.raises(ConfigError, match="needs lm.api = 'chat'"):
        from_dict({"lm": {"structured": "json_schema"}})
    with pytest.raises(ConfigError, match="not supported by the transformers backend"):
        from_dict({"lm": {"structured": "json_schema", "api": "chat", "backend": "transformers"}})
