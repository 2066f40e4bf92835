"""The whole pipeline through the HTTP backend against a real server: llama.cpp's own OpenAI-compatible server
(`python -m llama_cpp.server`) serving the embedded GGUF on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfinstruct.lm.weights import default_model_path
from selfinstruct.store import DB_NAME

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server]")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--model_alias",
            "smollm",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            assert proc.poll() is None, f"llama_cpp.server exited: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "llama_cpp.server did not start"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_pipeline_against_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}  # a local server needs no key
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfinstruct.cli",
            "run",
            "--out",
            str(out),
            "--backend",
            "openai",
            "--base-url",
            llama_server,
            "--model",
            "smollm",
            "--num-instructions",
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with sqlite3.connect(out / DB_NAME) as db:
        accepted = db.execute(
            "SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted'"
            " AND classification IS NOT NULL"
        ).fetchone()[0]
        statuses = dict(db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status").fetchall())
        instance_requests = db.execute("SELECT COUNT(*) FROM requests WHERE stage='instances'").fetchone()[0]
        models = {m for (m,) in db.execute("SELECT DISTINCT model FROM requests")}
    assert accepted >= 4
    assert set(statuses) == {"ok"}
    assert instance_requests == accepted
    assert models == {"smollm"}
    assert (out / "export" / "alpaca_data.json").exists()
