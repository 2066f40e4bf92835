"""The in-process backends as Ray actors (issue: scale out on Ray).

    .venv/bin/python benchmarks/ray_scaling.py            # all three tables
    .venv/bin/python benchmarks/ray_scaling.py --only scripted|embedded|loss

1. scripted: a backend that answers after a fixed latency without using CPU (lm/scripted.py), 1, 2 and 4 actors on
   a local `ray.cluster_utils.Cluster` of one and of two worker nodes; each actor serves `PER_ACTOR` requests at
   once, so the ideal is actors x PER_ACTOR / LATENCY requests/s. The client is the real one: the engine, its
   SQLite journal, the Ray replicas. Target: >= 95% of the ideal at each size.
2. embedded: the real embedded model, the same bootstrap work (the same number of instructions accepted from the
   same seed) without Ray (2 threads), with Ray and 1 actor (2 threads), with 2 actors (1 thread each): generated
   tokens/s. Target: Ray's overhead <= 5%.
3. loss: bootstrap on 2 scripted actors over two nodes; the node of actor 1 is removed at a random moment; counts
   of lost requests (not answered at the end), duplicated instructions and requests sent again after their answer
   was stored. Target: 0, 0, 0 over 5 trials.

Ray runs as ../shared/notes/ray-on-2-cores.md says: loopback only, no dashboard, small object stores, a temporary
directory of its own, usage stats off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.update(
    RAY_AUTH_MODE="disabled",
    RAY_USAGE_STATS_ENABLED="0",
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    RAY_TMPDIR=tempfile.mkdtemp(prefix="ray"),
)

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from selfinstruct.config import LMConfig, RayConfig, Sampling  # noqa: E402
from selfinstruct.lm.engine import Engine, run_all  # noqa: E402
from selfinstruct.lm.ray_replicas import create_replicas  # noqa: E402
from selfinstruct.lm.scripted import ScriptedLM  # noqa: E402
from selfinstruct.pipeline import Run  # noqa: E402
from selfinstruct.store import DB_NAME, Store  # noqa: E402

LATENCY = 0.25
PER_ACTOR = 16
STORE = 80 * 2**20


@contextmanager
def cluster(nodes: int, cpus: int = 4, fast_failure: bool = False) -> Any:
    head: dict[str, Any] = {"num_cpus": 0, "include_dashboard": False, "object_store_memory": STORE}
    if fast_failure:
        head["_system_config"] = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(nodes):
        c.add_node(num_cpus=cpus, object_store_memory=STORE)
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _engine_rate(lms: list[Any], total: int) -> float:
    """Requests/s of `total` distinct requests through the engine (and its journal) over `lms`."""
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        engine = Engine(lms, store, concurrency=len(lms) * PER_ACTOR)
        sampling = Sampling(max_tokens=3)

        async def work() -> float:
            start = time.perf_counter()
            await run_all(engine, (engine.request("classify", f"prompt {i}", sampling) for i in range(total)))
            seconds = time.perf_counter() - start
            await engine.aclose()
            return seconds

        seconds = asyncio.run(work())
        store.close()
    return total / seconds


def scripted_table(requests_per_actor: int) -> None:
    print(f"\nScripted backend ({LATENCY * 1000:.0f} ms, {PER_ACTOR} requests at once per actor)\n")
    print("| where | actors | requests/s | of the latency's ideal | of actors x 1 actor's rate |")
    print("|---|---:|---:|---:|---:|")
    rows = [("no Ray (in-process, for reference)", None)] + [(f"Ray, {n} node{'s' * (n > 1)}", n) for n in (1, 2)]
    for where, nodes in rows:
        with cluster(nodes) if nodes else contextlib.nullcontext():
            single = None
            for actors in (1, 2, 4):
                if nodes is None:
                    lms: list[Any] = [ScriptedLM(LATENCY) for _ in range(actors)]
                else:
                    config = RayConfig(address="auto", replicas=actors)
                    lms = create_replicas(LMConfig(), config, 0, build=functools.partial(ScriptedLM, LATENCY))
                rate = _engine_rate(lms, requests_per_actor * actors)
                single = single or rate
                ideal = actors * PER_ACTOR / LATENCY
                print(f"| {where} | {actors} | {rate:.1f} | {rate / ideal:.1%} | {rate / (actors * single):.1%} |")


def embedded_table(instructions: int) -> None:
    print(f"\nEmbedded model, bootstrap to {instructions} instructions (same seed), this 2-core machine\n")
    print("| setup | accepted | requests | generated tokens | seconds | tokens/s | vs no Ray |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = None
    setups = [
        ("no Ray, 2 threads", None, {"lm": {"threads": 2}}),
        ("Ray, 1 actor x 2 threads", RayConfig(address="local", replicas=1, num_cpus=2), {}),
        ("Ray, 2 actors x 1 thread", RayConfig(address="local", replicas=2, num_cpus=1), {}),
    ]
    for name, ray_config, extra in setups:
        with tempfile.TemporaryDirectory() as tmp:
            overrides: dict[str, Any] = {"num_instructions": instructions, **extra}
            if ray_config is not None:
                overrides["ray"] = {
                    "address": ray_config.address,
                    "replicas": ray_config.replicas,
                    "num_cpus": ray_config.num_cpus,
                }
            with Run.open(tmp, overrides) as run:
                run.engine  # noqa: B018 - load the model(s) before the clock starts
                start = time.perf_counter()
                run.bootstrap()
                seconds = time.perf_counter() - start
                accepted = len(run.store.accepted("machine"))
                stats = run.store.request_stats()[0]
        rate = stats["completion_tokens"] / seconds
        base = base or rate
        print(
            f"| {name} | {accepted} | {stats['ok']} | {stats['completion_tokens']:,} | {seconds:.1f} | {rate:.1f} "
            f"| {rate / base:.1%} |"
        )


def loss_table(trials: int, instructions: int) -> None:
    print(f"\nNode loss: bootstrap to {instructions:,} on 2 scripted actors over 2 nodes, a node removed at random\n")
    print("| trial | removed after (answers) | resends | lost | duplicated | sent after stored | seconds |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    rng = random.Random(7)
    for trial in range(1, trials + 1):
        with cluster(2, cpus=2, fast_failure=True) as c, tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "sent.log"
            os.environ["SELFINSTRUCT_SEND_LOG"] = str(log)
            lms = create_replicas(
                LMConfig(), RayConfig(address="auto", replicas=2), 0, build=functools.partial(ScriptedLM, 0.2)
            )
            node = ray.get(lms[0].actor.describe.remote())[2].split("(node ")[1][:8]
            victim = next(n for n in c.list_all_nodes() if n.node_id.startswith(node))
            moment = rng.randint(10, 300)

            def remove(moment: int = moment, victim: Any = victim, c: Any = c, tmp: str = tmp) -> None:
                while True:
                    time.sleep(0.02)
                    try:
                        with sqlite3.connect(Path(tmp) / "run" / DB_NAME) as db:
                            if db.execute("SELECT COUNT(*) FROM requests WHERE status='ok'").fetchone()[0] >= moment:
                                break
                    except sqlite3.Error:
                        continue
                c.remove_node(victim)

            threading.Thread(target=remove, daemon=True).start()
            start = time.perf_counter()
            overrides = {"num_instructions": instructions, "lm": {"concurrency": 16}}
            with Run.open(Path(tmp) / "run", overrides, lm=lms) as r:
                r.bootstrap()
                seconds = time.perf_counter() - start
                texts = [i.text for i in r.store.accepted("machine")]
                rows = r.store._db.execute("SELECT key, status, attempts FROM requests").fetchall()
            del os.environ["SELFINSTRUCT_SEND_LOG"]
            sends = Counter(log.read_text().split())
            lost = sum(1 for _, status, _ in rows if status != "ok")
            resends = sum(a for _, _, a in rows) - len(rows)
            twice = sum(max(0, sends[key] - attempts) for key, _, attempts in rows)
            duplicated = len(texts) - len(set(texts))
            print(f"| {trial} | {moment} | {resends} | {lost} | {duplicated} | {twice} | {seconds:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["scripted", "embedded", "loss"])
    parser.add_argument("--requests-per-actor", type=int, default=1500)
    parser.add_argument("--instructions", type=int, default=120, help="embedded: instructions to accept")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, ray {ray.__version__}, {os.cpu_count()} cores")
    if args.only in (None, "scripted"):
        scripted_table(args.requests_per_actor)
    if args.only in (None, "embedded"):
        embedded_table(args.instructions)
    if args.only in (None, "loss"):
        loss_table(args.trials, 1500)


if __name__ == "__main__":
    main()
