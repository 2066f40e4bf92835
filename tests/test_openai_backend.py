"""The OpenAI-compatible backend over real HTTP, against a small server on 127.0.0.1 run by the test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ScriptedLM

from selfinstruct.config import Sampling
from selfinstruct.pipeline import Run
from selfinstruct.store import DB_NAME

SECRET = "sk-test-secret-0123456789"


class Endpoint:
    """Answers /v1/completions and /v1/chat/completions with the scripted LM; `faults` are served first."""

    def __init__(self) -> None:
        self.lm = ScriptedLM()
        self.faults: list[int] = []
        self.bodies: list[dict] = []
        self.auth: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.bodies.append(body)
                endpoint.auth.append(self.headers.get("Authorization", ""))
                if endpoint.faults:
                    status = endpoint.faults.pop(0)
                    payload = json.dumps({"error": {"message": f"injected {status}"}}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][0]["content"] if chat else body["prompt"]
                completion = endpoint.lm.complete(prompt, Sampling(), body.get("seed", 0))
                choice = {"index": 0, "finish_reason": completion.finish_reason, "logprobs": None}
                if chat:
                    choice["message"] = {"role": "assistant", "content": completion.text}
                else:
                    choice["text"] = completion.text
                payload = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion" if chat else "text_completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": completion.prompt_tokens,
                            "completion_tokens": completion.completion_tokens,
                            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    thread = threading.Thread(target=ep.server.serve_forever, daemon=True)
    thread.start()
    yield ep
    ep.server.shutdown()
    ep.server.server_close()


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_pipeline_over_http(tmp_path: Path, endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, api: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = {
        "num_instructions": 4,
        "lm": {"backend": "openai", "model": "tiny", "base_url": endpoint.base_url, "api": api},
    }
    run = Run.open(tmp_path, config)
    run.run_all()
    assert run.store.count_accepted_machine() >= 4
    first = endpoint.bodies[0]
    assert first["temperature"] == 0.7 and first["top_p"] == 0.5 and first["presence_penalty"] == 2.0
    assert first["max_tokens"] == 1024 and first["stop"] == ["\n\n", "\n16", "16.", "16 ."]
    assert all(a == f"Bearer {SECRET}" for a in endpoint.auth)
    run.close()
    # The key is never written anywhere in the run directory.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_server_errors_are_retried_then_recorded(tmp_path: Path, endpoint: Endpoint) -> None:
    config = {"num_instructions": 2, "lm": {"backend": "openai", "model": "tiny", "base_url": endpoint.base_url}}
    run = Run.open(tmp_path, config)
    run.engine.backoff = 0.0
    endpoint.faults = [503, 500]  # two failures, then success on the third attempt
    run.bootstrap()
    import sqlite3

    with sqlite3.connect(tmp_path / DB_NAME) as db:
        first = db.execute("SELECT status, attempts FROM requests ORDER BY id LIMIT 1").fetchone()
    assert first == ("ok", 3)

    endpoint.faults = [400]  # a client error is not retried: recorded as failed at once
    run.classify()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        failed = db.execute("SELECT status, attempts, error FROM requests WHERE status='failed'").fetchall()
    assert len(failed) == 1 and failed[0][1] == 1 and "400" in failed[0][2]
