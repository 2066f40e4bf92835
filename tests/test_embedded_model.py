"""End to end with the real embedded model (llama.cpp + SmolLM2-135M), through the real CLI in a subprocess.

The run is SIGKILLed mid-bootstrap and mid-instances and resumed; an audit log of every request sent
(SELFINSTRUCT_SEND_LOG) proves that no request whose response was stored is sent again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from selfinstruct.similarity import rouge_l, tokenize
from selfinstruct.store import DB_NAME

pytestmark = pytest.mark.slow
TARGET = 10


def query(out: Path, sql: str) -> list[tuple]:
    if not (out / DB_NAME).exists():
        return []
    with sqlite3.connect(out / DB_NAME, timeout=30) as db:
        try:
            return db.execute(sql).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []


def count(out: Path, sql: str) -> int:
    result = query(out, sql)
    return result[0][0] if result else 0


def start(out: Path, env: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "selfinstruct.cli", "run", "--out", str(out), "--num-instructions", str(TARGET)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before the kill point:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "kill point not reached in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stored_keys(out: Path) -> set[str]:
    return {k for (k,) in query(out, "SELECT key FROM requests WHERE status = 'ok'")}


def sent_since(log: Path, offset: int) -> list[str]:
    return log.read_text().splitlines()[offset:] if log.exists() else []


def test_sigkill_mid_bootstrap_and_mid_instances_then_resume(tmp_path: Path) -> None:
    out, log = tmp_path / "run", tmp_path / "sent.log"
    env = {**os.environ, "SELFINSTRUCT_SEND_LOG": str(log)}
    accepted_sql = "SELECT COUNT(*) FROM instructions WHERE origin = 'machine' AND verdict = 'accepted'"

    # 1. Kill during bootstrap, once two responses are stored.
    proc = start(out, env)
    kill_when(proc, lambda: count(out, "SELECT COUNT(*) FROM requests WHERE stage='bootstrap' AND status='ok'") >= 2)
    assert count(out, accepted_sql) < TARGET, "the kill came after the bootstrap stage"
    assert count(out, "SELECT COUNT(*) FROM requests WHERE stage != 'bootstrap'") == 0
    snapshots = [(stored_keys(out), len(sent_since(log, 0)))]

    # 2. Resume; kill during instance generation.
    proc = start(out, env)
    kill_when(proc, lambda: count(out, "SELECT COUNT(*) FROM requests WHERE stage='instances' AND status='ok'") >= 2)
    assert count(out, "SELECT COUNT(*) FROM requests WHERE stage='instances' AND status='ok'") < count(
        out, accepted_sql
    )
    snapshots.append((stored_keys(out), len(sent_since(log, 0))))

    # 3. Resume to the end.
    proc = start(out, env)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output

    for keys, offset in snapshots:
        assert keys, "responses were stored before the kill"
        assert not keys & set(sent_since(log, offset)), "a request whose response was stored was sent again"

    texts = [t for (t,) in query(out, "SELECT text FROM instructions WHERE origin='machine' AND verdict='accepted'")]
    assert len(texts) >= TARGET
    assert len(set(texts)) == len(texts)
    assert query(out, "PRAGMA integrity_check") == [("ok",)]
    assert count(out, "SELECT COUNT(*) FROM requests WHERE status != 'ok'") == 0
    # Every rejection has a reason; every accepted instruction is novel against the pool it joined.
    assert count(out, "SELECT COUNT(*) FROM instructions WHERE verdict='rejected' AND reason=''") == 0
    pool = [t for (t,) in query(out, "SELECT text FROM instructions WHERE origin='seed' ORDER BY id")]
    for text, max_rouge in query(
        out, "SELECT text, max_rouge FROM instructions WHERE origin='machine' AND verdict='accepted' ORDER BY id"
    ):
        assert max(rouge_l(tokenize(text), tokenize(p)) for p in pool) == max_rouge <= 0.7
        pool.append(text)
    # Every accepted instruction was classified and got instances; the exports are complete.
    assert count(out, f"{accepted_sql} AND classification IS NULL") == 0
    assert count(out, "SELECT COUNT(*) FROM requests WHERE stage='instances' AND status='ok'") == len(texts)
    alpaca = json.loads((out / "export" / "alpaca_data.json").read_text())
    assert len(alpaca) == count(out, "SELECT COUNT(*) FROM instances WHERE verdict='kept'")
    machine_instructions = {t for t in texts}
    assert machine_instructions & {row["instruction"] for row in alpaca}
    clf = [json.loads(line) for line in (out / "export" / "is_clf_or_not.jsonl").read_text().splitlines()]
    assert len(clf) == len(texts) and all(r["is_classification"] in ("Yes", "No", "Unknown") for r in clf)

    # The report of this real run has every section, and renders in headless Chromium when it is installed.
    report = subprocess.run(
        [sys.executable, "-m", "selfinstruct.cli", "report", str(out)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    page = (out / "report.html").read_text()
    for anchor in ("table1", "funnel", "distributions", "diversity", "requests-section", "instructions"):
        assert f'id="{anchor}"' in page
    chromium = shutil.which("chromium")
    if chromium:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--dump-dom",
                (out / "report.html").as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0 and dom.stdout.count("<rect") > 10 and 'id="verb-noun"' in dom.stdout
