"""Request engine throughput against simulated OpenAI-compatible endpoints (issue: request engine).

    .venv/bin/python benchmarks/throughput.py                  # 5,000 requests per row
    .venv/bin/python benchmarks/throughput.py --requests 1000  # quicker

Each endpoint is `python -m selfinstruct.devserver` in its own process on 127.0.0.1, answering after a fixed
latency (250 ms). The client is the real pipeline: the classify stage of a run directory holding N machine
instructions, through the engine, the OpenAI-compatible backend and the SQLite journal (every request journaled
before it is sent, every answer committed with its result). Client CPU is this process's CPU time during the
stage (the servers run in other processes).

Rows:
- engine, concurrency 64, one endpoint: the target is 90% of the ideal 64 / 0.25 s = 256 requests/s, with at
  most 2 ms of client CPU per request;
- the paper's scheme: 5 prompts per call, one call at a time (its script's batch size), on the same endpoint;
- replicas: two healthy endpoints vs the same two plus a third that answers 503 to half its requests; each
  endpoint processes at most 32 requests at once (more queue inside it, like a server's batch limit). The
  target is at least 80% of the two-healthy throughput.

`--faults`: random faults against overload (see `faults_table`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from selfinstruct.pipeline import Run
from selfinstruct.stages.classify import encoder
from selfinstruct.stages.prompts import load as load_prompts

LATENCY = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def endpoints(*options: list[str]) -> Iterator[list[str]]:
    """Start one dev server process per option list; yield their base URLs."""
    procs, urls = [], []
    try:
        for extra in options:
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "selfinstruct.devserver", "--port", str(port), "--latency", str(LATENCY)]
                    + extra,
                    stdout=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}/v1")
        for url in urls:
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/models", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.05)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()


def engine_row(name: str, urls: list[str], n: int, concurrency: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        config = {"lm": {"backend": "openai", "model": "scripted", "base_url": urls, "concurrency": concurrency}}
        with Run.open(Path(tmp), config) as run:
            with run.store.transaction():
                for i in range(n):
                    text = f"Say whether item number {i} of the benchmark list is a classification task."
                    run.store.add_candidate(text, None, 0, True, "", 0.0, None, None, None)  # type: ignore[arg-type]
            wall, cpu = time.perf_counter(), time.process_time()
            run.classify()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            stats = {r["stage"]: r for r in run.store.request_stats()}["classify"]
            engine = run.engine
            per_replica = ", ".join(f"{r.sent}/{r.failed}" for r in engine.replicas)
    return {
        "setup": name,
        "requests": stats["ok"],
        "seconds": wall,
        "requests/s": stats["ok"] / wall,
        "client CPU ms/request": 1000 * cpu / stats["ok"],
        "attempts sent/failed per replica": per_replica,
    }


async def paper_scheme(url: str, n: int) -> tuple[int, float]:
    """The paper's script: 5 prompts per completions call, one call after another."""
    encode = encoder(load_prompts(), chat=False)
    prompts = [encode(f"Say whether item number {i} is a classification task.") for i in range(n)]
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for i in range(0, n, 5):
            body = {"model": "scripted", "prompt": prompts[i : i + 5], "max_tokens": 3, "temperature": 0}
            async with session.post(url + "/completions", data=json.dumps(body)) as resp:
                assert len((await resp.json())["choices"]) == len(prompts[i : i + 5])
    return n, time.perf_counter() - started


def faults_table(n: int) -> None:
    """Random faults are not overload: classify over n instructions fault-free, then with 10% random faults (429
    with Retry-After 0.2 s, 500, 503, dropped connections), one endpoint, concurrency 64; and an endpoint with a
    hard capacity of 32 requests at once (503 above it), whose ideal is 32 / 0.25 s = 128 requests/s."""
    noisy = ["--fault-rate", "0.1", "--faults", "429-retry-after,500,503,reset", "--retry-after", "0.2", "--seed", "3"]
    rows = []
    for name, options in [
        ("fault-free", []),
        ("10% random faults", noisy),
        ("capacity 32 (503 above)", ["--capacity", "32"]),
    ]:
        with endpoints(options) as (url,):
            rows.append(engine_row(name, [url], n, 64))
    print(f"\nclassify over {n:,} instructions, simulated latency {LATENCY * 1000:.0f} ms, concurrency 64\n")
    print("| endpoint | requests/s | client CPU ms/request | attempts sent/failed |\n|---|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['requests/s']:.1f} | {r['client CPU ms/request']:.2f} | "
            f"{r['attempts sent/failed per replica']} |"
        )
    clean, noisy_row, capped = rows
    print(
        f"\nwith 10% random faults: {noisy_row['requests/s'] / clean['requests/s']:.1%} of fault-free (target >= 75%); "
        f"at capacity 32: {capped['requests/s'] / (32 / LATENCY):.1%} of its 128 requests/s (target >= 90%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--paper-requests", type=int, default=200, help="prompts sent with the paper's scheme")
    parser.add_argument("--faults", action="store_true", help="the faults table instead (2,000 requests per row)")
    args = parser.parse_args()
    if args.faults:
        faults_table(2000 if args.requests == 5000 else args.requests)
        return
    n = args.requests
    rows = []
    with endpoints([]) as (url,):
        rows.append(engine_row("engine, concurrency 64, 1 endpoint", [url], n, 64))
        done, seconds = asyncio.run(paper_scheme(url, args.paper_requests))
        rows.append(
            {
                "setup": "paper's scheme: 5 prompts per call, sequential",
                "requests": done,
                "seconds": seconds,
                "requests/s": done / seconds,
                "client CPU ms/request": float("nan"),
                "attempts sent/failed per replica": "-",
            }
        )
    healthy = ["--max-concurrent", "32"]
    with endpoints(healthy, healthy) as urls:
        rows.append(engine_row("2 healthy replicas (32 at once each)", urls, n, 64))
    bad = healthy + ["--fault-rate", "0.5", "--faults", "503"]
    with endpoints(healthy, healthy, bad) as urls:
        rows.append(engine_row("3 replicas, the third 503 on half", urls, n, 64))

    ideal = 64 / LATENCY
    print(f"\nsimulated latency {LATENCY * 1000:.0f} ms; ideal at concurrency 64: {ideal:.0f} requests/s\n")
    print("| setup | requests | seconds | requests/s | client CPU ms/request | attempts sent/failed per replica |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['requests']:,} | {r['seconds']:.1f} | {r['requests/s']:.1f} | "
            f"{r['client CPU ms/request']:.2f} | {r['attempts sent/failed per replica']} |"
        )
    engine, paper, two, three = rows
    print(
        f"\nengine vs ideal: {engine['requests/s'] / ideal:.1%} (target >= 90%); "
        f"client CPU {engine['client CPU ms/request']:.2f} ms/request (target <= 2); "
        f"engine vs paper's scheme: {engine['requests/s'] / paper['requests/s']:.1f}x; "
        f"3 replicas with one failing vs 2 healthy: {three['requests/s'] / two['requests/s']:.1%} (target >= 80%)"
    )


if __name__ == "__main__":
    main()
