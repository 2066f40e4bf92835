"""The run store: one SQLite database per run directory, the source of truth. The only module with SQL.

It journals every LM request (prompt, parameters, raw text, finish reason, tokens, latency, error), every
candidate instruction with its verdict and reason, classifications and instances with verdicts. A result is
committed in the same transaction as the response it came from, so a killed run resumes without losing or
repeating anything. Schema changes are explicit migrations numbered by `PRAGMA user_version`.

A request's status: `pending` (journaled, maybe in flight), `ok`, `failed` (every retry failed: sent again on
resume) or `rejected` (the backend refused the request itself: sent again only with --retry-failed).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from selfinstruct.lmtypes import Completion, Message, Prompt, render_prompt
from selfinstruct.seeds import SeedTask

T = TypeVar("T")

DB_NAME = "selfinstruct.sqlite"

MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,          -- sha256 of (model, prompt, parameters, sample index)
        stage TEXT NOT NULL,
        instruction_id INTEGER REFERENCES instructions(id),  -- the work item (NULL for bootstrap)
        sample_index INTEGER NOT NULL,
        model TEXT NOT NULL,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL,              -- JSON sampling parameters and seed
        status TEXT NOT NULL,              -- pending | ok | failed
        text TEXT,
        finish_reason TEXT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        latency REAL,                      -- seconds, of the attempt that answered
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        completed_at REAL
    );
    CREATE INDEX requests_stage ON requests(stage, status);
    CREATE INDEX requests_item ON requests(instruction_id, stage);
    CREATE TABLE instructions (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,              -- seed | machine
        seed_id TEXT,
        name TEXT,
        text TEXT NOT NULL,
        request_id INTEGER REFERENCES requests(id),
        position INTEGER,                  -- item number within the response
        verdict TEXT NOT NULL,             -- accepted | rejected
        reason TEXT NOT NULL DEFAULT '',
        max_rouge REAL,                    -- highest ROUGE-L F1 to the pool when it was judged
        nearest TEXT,
        neighbours TEXT,                   -- JSON [[text, score], ...]: the 10 most similar
        mean_rouge REAL,                   -- mean score of those neighbours
        classification TEXT,               -- yes | no | unknown; NULL until classified
        created_at REAL NOT NULL
    );
    CREATE UNIQUE INDEX accepted_machine_text ON instructions(text)
        WHERE verdict = 'accepted' AND origin = 'machine';
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        instruction_id INTEGER NOT NULL REFERENCES instructions(id),
        request_id INTEGER REFERENCES requests(id),  -- NULL for a seed task's own instance
        position INTEGER NOT NULL,
        input TEXT NOT NULL,
        output TEXT NOT NULL,
        verdict TEXT NOT NULL,             -- kept | dropped
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX instances_instruction ON instances(instruction_id);
    """,
    # 2: chat requests keep their messages (JSON); `prompt` then holds them as readable text
    """
    ALTER TABLE requests ADD COLUMN messages TEXT;
    """,
    # 3: which replica answered (or last failed): a --base-url endpoint, a Ray actor, the in-process model
    """
    ALTER TABLE requests ADD COLUMN replica TEXT;
    """,
]


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements (executescript would commit, breaking the migration's transaction)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""


@dataclass(frozen=True)
class Request:
    id: int
    key: str
    stage: str
    instruction_id: int | None
    sample_index: int
    prompt: str
    params: dict[str, Any]
    status: str
    text: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    error: str | None
    attempts: int
    messages: list[Message] | None = None  # a chat request's messages

    @property
    def payload(self) -> Prompt:
        """What was sent: the chat messages, or the prompt text."""
        return self.messages if self.messages is not None else self.prompt

    def completion(self) -> Completion:
        return Completion(
            self.text or "",
            self.finish_reason or "stop",
            self.prompt_tokens or 0,
            self.completion_tokens or 0,
        )


@dataclass(frozen=True)
class Instruction:
    id: int
    origin: str
    text: str
    classification: str | None
    seed_id: str | None = None


class Store:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        # isolation_level=None: transactions are explicit (see `transaction`), never implicit.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")  # durable: a committed result survives power loss
        self._db.execute("PRAGMA foreign_keys = ON")
        self._depth = 0
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"{self.path} was written by a newer selfinstruct (schema {version}); upgrade selfinstruct"
            )
        for number, script in enumerate(MIGRATIONS[version:], version + 1):
            with self.transaction():
                for statement in _statements(script):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside happen together or not at all. Nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the open transaction that is undone alone if it fails (the rest still commits)."""
        if not self._depth:
            raise RuntimeError("a savepoint needs an open transaction")
        self._db.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO part")
            self._db.execute("RELEASE part")
            raise
        else:
            self._db.execute("RELEASE part")

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self.transaction():
            return self._db.execute(sql, args)

    # --- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- requests -------------------------------------------------------------------------------

    def _request(self, row: sqlite3.Row | None) -> Request | None:
        if row is None:
            return None
        return Request(
            row["id"],
            row["key"],
            row["stage"],
            row["instruction_id"],
            row["sample_index"],
            row["prompt"],
            json.loads(row["params"]),
            row["status"],
            row["text"],
            row["finish_reason"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["error"],
            row["attempts"],
            json.loads(row["messages"]) if row["messages"] else None,
        )

    def find_request(self, key: str) -> Request | None:
        return self._request(self._db.execute("SELECT * FROM requests WHERE key = ?", (key,)).fetchone())

    def begin_request(
        self,
        key: str,
        stage: str,
        model: str,
        prompt: Prompt,
        params: dict[str, Any],
        sample_index: int,
        instruction_id: int | None,
    ) -> int:
        """Record that a request is about to be sent (committed before sending); returns its id."""
        with self.transaction():
            row = self._db.execute("SELECT id, status FROM requests WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if row["status"] == "ok":
                    raise RuntimeError(f"request {row['id']} already has a stored response; it must not be resent")
                self._db.execute(
                    "UPDATE requests SET status = 'pending', attempts = attempts + 1 WHERE id = ?",
                    (row["id"],),
                )
                return row["id"]
            cur = self._db.execute(
                "INSERT INTO requests(key, stage, instruction_id, sample_index, model, prompt, messages, params,"
                " status, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 1, ?)",
                (
                    key,
                    stage,
                    instruction_id,
                    sample_index,
                    model,
                    render_prompt(prompt),
                    None if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False),
                    json.dumps(params, sort_keys=True),
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    def count_attempt(self, request_id: int, error: str) -> None:
        """A failed attempt that will be retried: keep the latest error."""
        self._write("UPDATE requests SET attempts = attempts + 1, error = ? WHERE id = ?", (error, request_id))

    def finish_request(
        self, request_id: int, completion: Completion, latency: float, replica: str | None = None
    ) -> None:
        self._write(
            "UPDATE requests SET status = 'ok', text = ?, finish_reason = ?, prompt_tokens = ?,"
            " completion_tokens = ?, latency = ?, error = NULL, completed_at = ?, replica = ? WHERE id = ?",
            (
                completion.text,
                completion.finish_reason,
                completion.prompt_tokens,
                completion.completion_tokens,
                latency,
                time.time(),
                replica,
                request_id,
            ),
        )

    def fail_request(
        self, request_id: int, error: str, latency: float, status: str = "failed", replica: str | None = None
    ) -> None:
        """`failed`: every retry failed, sent again on resume; `rejected`: the backend refused the request itself,
        sent again only with --retry-failed."""
        self._write(
            "UPDATE requests SET status = ?, error = ?, latency = ?, completed_at = ?, replica = ? WHERE id = ?",
            (status, error, latency, time.time(), replica, request_id),
        )

    def unfinished_requests(self, stage: str, include_rejected: bool = False) -> list[Request]:
        """Requests that were sent but never answered (killed) or failed after every retry; rejected ones too
        when asked."""
        statuses = ("pending", "failed", "rejected") if include_rejected else ("pending", "failed")
        rows = self._db.execute(
            f"SELECT * FROM requests WHERE stage = ? AND status IN ({', '.join('?' * len(statuses))}) ORDER BY id",
            (stage, *statuses),
        ).fetchall()
        return [r for r in map(self._request, rows) if r]

    def next_sample_index(self, stage: str) -> int:
        """One past the highest sample index a request of this stage was sent with (0 when none)."""
        return self._db.execute(
            "SELECT COALESCE(MAX(sample_index) + 1, 0) FROM requests WHERE stage = ?", (stage,)
        ).fetchone()[0]

    def request_stats(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT stage, COUNT(*) AS requests, SUM(status = 'ok') AS ok,"
            " SUM(status IN ('failed', 'rejected')) AS failed, SUM(status = 'rejected') AS rejected,"
            " SUM(status = 'pending') AS pending, SUM(attempts) AS attempts,"
            " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(latency), 0) AS seconds,"
            " MAX(completed_at) - MIN(created_at) AS span"
            " FROM requests GROUP BY stage ORDER BY MIN(id)"
        ).fetchall()
        return [dict(r) for r in rows]

    # --- instructions ---------------------------------------------------------------------------

    def add_seed_tasks(self, tasks: Sequence[SeedTask]) -> None:
        """Store the seed tasks (once per run: later runs read them from here, not from the file)."""
        with self.transaction():
            for task in tasks:
                label = None if task.is_classification is None else ("yes" if task.is_classification else "no")
                cur = self._db.execute(
                    "INSERT INTO instructions(origin, seed_id, name, text, verdict, classification, created_at)"
                    " VALUES ('seed', ?, ?, ?, 'accepted', ?, ?)",
                    (task.id, task.name, task.instruction, label, time.time()),
                )
                for position, inst in enumerate(task.instances):
                    self._db.execute(
                        "INSERT INTO instances(instruction_id, position, input, output, verdict)"
                        " VALUES (?, ?, ?, ?, 'kept')",
                        (cur.lastrowid, position, inst.input, inst.output),
                    )

    def add_candidate(
        self,
        text: str,
        request_id: int,
        position: int,
        accepted: bool,
        reason: str,
        max_rouge: float | None,
        nearest: str | None,
        neighbours: list[tuple[str, float]] | None,
        mean_rouge: float | None,
    ) -> None:
        self._write(
            "INSERT INTO instructions(origin, text, request_id, position, verdict, reason, max_rouge, nearest,"
            " neighbours, mean_rouge, created_at) VALUES ('machine', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                text,
                request_id,
                position,
                "accepted" if accepted else "rejected",
                reason,
                max_rouge,
                nearest,
                json.dumps(neighbours) if neighbours is not None else None,
                mean_rouge,
                time.time(),
            ),
        )

    def _instructions(self, where: str, args: Sequence[Any] = ()) -> list[Instruction]:
        rows = self._db.execute(
            f"SELECT id, origin, text, classification, seed_id FROM instructions WHERE {where} ORDER BY id",
            args,
        ).fetchall()
        return [Instruction(r["id"], r["origin"], r["text"], r["classification"], r["seed_id"]) for r in rows]

    def accepted(self, origin: str | None = None) -> list[Instruction]:
        if origin is None:
            return self._instructions("verdict = 'accepted'")
        return self._instructions("verdict = 'accepted' AND origin = ?", (origin,))

    def reject_reasons(self) -> dict[str, int]:
        """Rejected candidates per reason class (the part before any detail in parentheses)."""
        counts: dict[str, int] = {}
        for (reason,) in self._db.execute("SELECT reason FROM instructions WHERE verdict = 'rejected'"):
            key = reason.split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
        return counts

    def candidate_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM instructions WHERE origin = 'machine'").fetchone()[0]

    def set_classification(self, instruction_id: int, label: str) -> None:
        self._write("UPDATE instructions SET classification = ? WHERE id = ?", (label, instruction_id))

    def machine_instruction_rows(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM instructions WHERE origin = 'machine' AND verdict = 'accepted' ORDER BY id"
        ).fetchall()
        return [dict(r) for r in rows]

    def candidate_rows(self) -> list[dict[str, Any]]:
        """Every machine-written candidate, accepted or not, in the order it was judged."""
        rows = self._db.execute(
            "SELECT id, text, verdict, reason, max_rouge, nearest, classification FROM instructions"
            " WHERE origin = 'machine' ORDER BY id"
        ).fetchall()
        return [dict(r) for r in rows]

    def replica_stats(self) -> list[dict[str, Any]]:
        """Per replica that answered or failed a request: counts, tokens and seconds, in order of first use."""
        rows = self._db.execute(
            "SELECT replica, SUM(status = 'ok') AS ok, SUM(status IN ('failed', 'rejected')) AS failed,"
            " COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens), 0) AS completion_tokens, COALESCE(SUM(latency), 0) AS seconds"
            " FROM requests WHERE replica IS NOT NULL GROUP BY replica ORDER BY MIN(id)"
        ).fetchall()
        return [dict(r) for r in rows]

    def latencies(self, by: str = "stage") -> dict[str, list[float]]:
        """Seconds per answered request, by stage (or by replica)."""
        column = {"stage": "stage", "replica": "replica"}[by]
        out: dict[str, list[float]] = {}
        for key, latency in self._db.execute(
            f"SELECT {column}, latency FROM requests WHERE latency IS NOT NULL AND status = 'ok'"
            f" AND {column} IS NOT NULL ORDER BY id"
        ):
            out.setdefault(key, []).append(latency)
        return out

    # --- instances ------------------------------------------------------------------------------

    def instance_responses(self) -> list[tuple[Instruction, Request]]:
        """Each accepted machine instruction with its stored instance-generation responses (the first answer and,
        in chat mode, its repair turn), in the order they were sent."""
        # One query: the request's columns plus the instruction's, under names that do not clash.
        rows = self._db.execute(
            "SELECT r.*, i.origin AS i_origin, i.text AS i_text, i.classification AS i_classification,"
            " i.seed_id AS i_seed_id FROM instructions i JOIN requests r ON r.instruction_id = i.id"
            " WHERE i.origin = 'machine' AND i.verdict = 'accepted' AND r.stage IN ('instances', 'instances repair')"
            " AND r.status = 'ok'"
            " ORDER BY i.id, r.id"
        ).fetchall()
        out = []
        for row in rows:
            request = self._request(row)
            assert request is not None
            instruction = Instruction(
                row["instruction_id"], row["i_origin"], row["i_text"], row["i_classification"], row["i_seed_id"]
            )
            out.append((instruction, request))
        return out

    def replace_machine_instances(self, rows: Sequence[tuple[int, int, int, str, str, str, str]]) -> None:
        """Rewrite the parsed instances of machine instructions: (instruction_id, request_id, position, input,
        output, verdict, reason). Preparing is a pure function of stored responses, so it can be redone."""
        with self.transaction():
            self._db.execute("DELETE FROM instances WHERE request_id IS NOT NULL")
            self._db.executemany(
                "INSERT INTO instances(instruction_id, request_id, position, input, output, verdict, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def instances(self, verdict: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT n.*, i.text AS instruction, i.origin, i.classification FROM instances n"
            " JOIN instructions i ON i.id = n.instruction_id"
        )
        args: tuple[Any, ...] = ()
        if verdict:
            sql += " WHERE n.verdict = ?"
            args = (verdict,)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY n.instruction_id, n.position", args)]


class Journal:
    """Group commit: writes queued in one turn of the event loop commit together, each in its own savepoint.

    Under concurrency, one fsync per write (each request is journaled before it is sent and again with its
    answer) would stall the event loop hundreds of times a second. Queued writes run at the end of the loop's
    current turn in one transaction; a write that fails is undone alone and fails only its own caller; each
    caller resumes once its write is durable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    async def write(self, operation: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((operation, future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.store.transaction():
                for operation, _ in queue:
                    try:
                        with self.store.savepoint():
                            outcomes.append((True, operation()))
                    except Exception as e:
                        outcomes.append((False, e))
        except BaseException as e:  # the commit itself failed (disk full): nothing of the group is stored
            outcomes = [(False, e)] * len(queue)
        for (_, future), (ok, value) in zip(queue, outcomes, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
