"""A local OpenAI-compatible server for tests and benchmarks, on 127.0.0.1 only.

It answers /v1/completions, /v1/chat/completions and /v1/models with a scripted model that writes text in the
shape each Self-Instruct stage expects (numbered instructions, Yes/No, instances), after a configurable latency
and token rate, and injects a configurable mix of faults:

    python -m selfinstruct.devserver --port 8000 --latency 0.25 --fault-rate 0.3 --max-concurrent 32

Faults: 429 (with and without Retry-After), 500, 502, 503, a reset connection, a response slower than any
sensible timeout, a truncated completion (finish reason "length"), an empty text, and an invalid JSON body.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from selfinstruct.chatshapes import chat_answer, json_answer
from selfinstruct.lm.scripted import scripted_completion
from selfinstruct.records import read_records

FAULTS = ("429", "429-retry-after", "500", "502", "503", "reset", "slow", "truncated", "empty", "invalid-json")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a client opening dozens of connections at once must not see refused SYNs

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (its timeout, during a "slow" fault) is expected here, not an error to print.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class ServerConfig:
    latency: float = 0.0  # seconds before the first token
    tokens_per_second: float = 0.0  # 0: the whole completion at once
    fault_rate: float = 0.0  # share of requests that get a fault
    faults: tuple[str, ...] = FAULTS  # drawn uniformly when a fault is due
    slow_seconds: float = 30.0  # how long a "slow" fault stalls
    seed: int = 0
    max_concurrent: int = 0  # requests processed at once (like a server's batch size); 0: no limit
    # Tokens (words, here) a prompt plus max_tokens may hold; more gets OpenAI's HTTP 400 for it. 0: no limit.
    context_size: int = 0
    # Chat requests of the stages' chat prompts are answered in these shapes (chatshapes.SHAPES), one drawn per
    # request; empty: every shape of the stage.
    chat_shapes: tuple[str, ...] = ()
    # Refuse as some servers do (HTTP 400): chat requests with a system message; max_tokens (OpenAI's reasoning
    # models want max_completion_tokens); response_format (no structured output).
    # A hard capacity: a request arriving while this many are being processed gets 503 at once (0: no limit).
    capacity: int = 0
    retry_after: float = 1.0  # seconds, in the Retry-After of the "429-retry-after" fault
    refuse_system: bool = False
    refuse_max_tokens: bool = False
    refuse_response_format: bool = False
    # Real instructions for the completion-mode bootstrap answers (e.g. ../shared/data/real-instructions): the
    # novelty filter then sees real text instead of the synthetic grammar.
    instructions: tuple[str, ...] = ()
    splice: bool = False  # join the head of one real instruction to the tail of another (see scripted_completion)


@dataclass
class DevServer:
    config: ServerConfig = field(default_factory=ServerConfig)
    port: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # "ok" and each fault served
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)  # (headers lower-cased, body)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        # Beyond max_concurrent, requests queue inside the server (their latency grows), as on a real one.
        self._capacity = threading.BoundedSemaphore(self.config.max_concurrent) if self.config.max_concurrent else None
        self._connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()
        self._in_flight = 0  # requests being processed, for `capacity`
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the client's
            # delayed ACK (about 40 ms on Linux) and every answer would look 40 ms slower than configured.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                with server._lock:
                    server._in_flight += 1
                    over = server.config.capacity and server._in_flight > server.config.capacity
                try:
                    if over:
                        self.rfile.read(int(self.headers.get("Content-Length", 0)))
                        server._count("over capacity")
                        self._json(503, {"error": {"message": "the server is at capacity"}})
                    elif server._capacity is None:
                        self._answer()
                    else:
                        with server._capacity:
                            self._answer()
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _answer(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                chat = self.path.endswith("/chat/completions")
                with server._lock:
                    server.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                # The completions API also takes a list of prompts (the paper's script sent 5 per call).
                messages = body.get("messages") or []
                prompt = "\n\n".join(m["content"] for m in messages) if chat else body.get("prompt", "")
                prompts = prompt if isinstance(prompt, list) else [prompt]
                wanted = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
                context = server.config.context_size
                if context and (longest := max(len(one.split()) for one in prompts)) + wanted > context:
                    server._count("context")
                    message = (
                        f"This model's maximum context length is {context} tokens. However, you requested "
                        f"{longest + wanted} tokens ({longest} in your prompt; {wanted} for the completion). "
                        "Please reduce your prompt; or completion length."
                    )
                    self._json(400, {"error": {"message": message, "code": "context_length_exceeded"}})
                    return
                refusal = (
                    "System role not supported"
                    if server.config.refuse_system and any(m.get("role") == "system" for m in messages)
                    else "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                    "'max_completion_tokens' instead."
                    if server.config.refuse_max_tokens and "max_tokens" in body
                    else "response_format is not supported by this server"
                    if server.config.refuse_response_format and "response_format" in body
                    else None
                )
                if refusal:
                    server._count("refused")
                    self._json(400, {"error": {"message": refusal}})
                    return
                fault = server._draw_fault()
                server._count(fault or "ok")
                if fault in ("429", "429-retry-after", "500", "502", "503"):
                    retry_after = f"{server.config.retry_after:g}"
                    headers = {"Retry-After": retry_after} if fault == "429-retry-after" else {}
                    self._json(int(fault[:3]), {"error": {"message": f"injected {fault}"}}, headers)
                    return
                if fault == "reset":  # close without an answer: the client sees a dropped connection
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "slow":
                    time.sleep(server.config.slow_seconds)
                choices: list[dict[str, Any]] = []
                prompt_tokens = completion_tokens = 0
                for index, one in enumerate(prompts):
                    seed = int(body.get("seed") or 0)
                    answer = None
                    if chat and body.get("response_format"):
                        answer = json_answer(messages, seed)
                    elif chat:
                        answer = chat_answer(messages, seed, server.config.chat_shapes)
                    # A chat request that is not a stage's chat prompt (the paper's prompt as one user message)
                    # gets the completion-shaped answer to that prompt.
                    text, finish = (
                        (answer, "stop")
                        if answer is not None
                        else scripted_completion(
                            messages[-1]["content"] if chat else one,
                            seed,
                            instructions=server.config.instructions,
                            splice=server.config.splice,
                        )
                    )
                    if fault == "truncated":
                        text, finish = text[: len(text) // 2], "length"
                    elif fault == "empty":
                        text = ""
                    choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
                    if chat:
                        choice["message"] = {"role": "assistant", "content": text}
                    else:
                        choice["text"] = text
                    choices.append(choice)
                    prompt_tokens += len(one.split())
                    completion_tokens += len(text.split())
                delay = server.config.latency
                if server.config.tokens_per_second:
                    delay += completion_tokens / server.config.tokens_per_second
                time.sleep(delay)
                if fault == "invalid-json":
                    self._raw(200, b'{"id": "x", "choices": [', "application/json")
                    return
                self._json(
                    200,
                    {
                        "id": "cmpl-dev",
                        "object": "chat.completion" if chat else "text_completion",
                        "created": 0,
                        "model": body.get("model", "scripted"),
                        "choices": choices,
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _raw(self, status: int, data: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        # Loopback only: this server is for local tests and benchmarks, never for a network.
        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self._rng.random() < self.config.fault_rate:
                return self._rng.choice(self.config.faults)
        return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def start(self) -> DevServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a server that goes away would."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--tokens-per-second", type=float, default=0.0, help="0: answers arrive at once")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered with a fault")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, from: {', '.join(FAULTS)}")
    parser.add_argument("--max-concurrent", type=int, default=0, help="requests processed at once; 0: no limit")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    parser.add_argument("--capacity", type=int, default=0, help="503 for a request above this many at once; 0: none")
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, in 429-retry-after faults")
    parser.add_argument(
        "--chat-shapes", default="", help="chat answers only in these shapes (comma-separated); default: all"
    )
    parser.add_argument(
        "--instructions",
        nargs="*",
        default=[],
        help="JSON/JSONL/CSV files of real instructions (field 'instruction') for the bootstrap answers",
    )
    parser.add_argument(
        "--splice",
        action="store_true",
        help="with --instructions: most answers join the head of one instruction to the tail of another",
    )
    parser.add_argument(
        "--context-size", type=int, default=0, help="words a prompt plus max_tokens may hold (HTTP 400 beyond); 0: any"
    )
    args = parser.parse_args()
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault {sorted(unknown)[0]!r}; choose from {', '.join(FAULTS)}")
    config = ServerConfig(
        args.latency,
        args.tokens_per_second,
        args.fault_rate,
        faults,
        seed=args.seed,
        max_concurrent=args.max_concurrent,
        context_size=args.context_size,
        capacity=args.capacity,
        instructions=tuple(
            str(row["instruction"])
            for path in args.instructions
            for _, row in read_records(path)
            if row.get("instruction")
        ),
        splice=args.splice,
        retry_after=args.retry_after,
        chat_shapes=tuple(s for s in args.chat_shapes.split(",") if s),
    )
    server = DevServer(config, args.port)
    print(f"serving {server.base_url} (Ctrl-C to stop)", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
