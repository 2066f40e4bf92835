"""The in-process backends as Ray actors (lm/ray_replicas.py): the real embedded model in two actors, a node lost
mid-bootstrap, a model missing on a node, and the errors without Ray.

Ray runs as ../shared/notes/ray-on-2-cores.md says: loopback only, no dashboard, a small object store, a temporary
directory of its own, usage stats off, never `ray stop`. One local cluster (`ray.cluster_utils.Cluster`: a head
without CPUs and two worker nodes) serves the module."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from selfinstruct.config import ConfigError, LMConfig, RayConfig, from_dict
from selfinstruct.lm.scripted import ScriptedLM
from selfinstruct.pipeline import Run
from selfinstruct.report.stats import replica_stats
from selfinstruct.store import DB_NAME

RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # binds 127.0.0.1 only
}
NODE = {"num_cpus": 2, "object_store_memory": 80 * 2**20}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    saved = {k: os.environ.get(k) for k in [*RAY_ENV, "RAY_TMPDIR"]}
    # Read when Ray is imported, hence first. A short directory: Ray's socket paths must stay under 108 bytes.
    os.environ.update(RAY_ENV, RAY_TMPDIR=tempfile.mkdtemp(prefix="ray"))
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Node loss is noticed in about 1.5 s rather than Ray's default 15-30 s.
    head = {
        "num_cpus": 0,
        "include_dashboard": False,
        "object_store_memory": 80 * 2**20,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
    }
    c = Cluster(initialize_head=True, head_node_args=head)
    for _ in range(2):
        c.add_node(**NODE)
    ray.init(address=c.address, log_to_driver=False, configure_logging=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def replicas(count: int, latency: float) -> list[Any]:
    from selfinstruct.lm.ray_replicas import create_replicas

    return create_replicas(
        LMConfig(), RayConfig(address="auto", replicas=count), 0, build=functools.partial(ScriptedLM, latency)
    )


def test_a_node_lost_mid_bootstrap_loses_nothing_and_pays_nothing_twice(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    log = tmp_path / "sent.log"
    monkeypatch.setenv("SELFINSTRUCT_SEND_LOG", str(log))
    lms = replicas(2, latency=0.2)
    nodes = {ray.get(lm.actor.describe.remote())[2] for lm in lms}
    assert len(nodes) == 2, "the actors are spread over both worker nodes"
    victim_id = ray.get(lms[0].actor.describe.remote())[2].split("(node ")[1][:8]
    victim = next(n for n in cluster.list_all_nodes() if n.node_id.startswith(victim_id))

    removed = threading.Event()

    def remove_when_running() -> None:
        db = tmp_path / "run" / DB_NAME
        while True:  # once a few answers are stored: mid-bootstrap, with requests in flight on both actors
            time.sleep(0.05)
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("SELECT COUNT(*) FROM requests WHERE status = 'ok'").fetchone()[0] >= 20:
                        break
            except sqlite3.Error:
                continue
        cluster.remove_node(victim)
        removed.set()

    remover = threading.Thread(target=remove_when_running, daemon=True)
    remover.start()
    with Run.open(tmp_path / "run", {"num_instructions": 500, "lm": {"concurrency": 16}}, lm=lms) as run:
        run.bootstrap()
        accepted = [i.text for i in run.store.accepted("machine")]
        rows = run.store._db.execute("SELECT key, status, attempts FROM requests").fetchall()
        by_replica = {r["replica"]: r for r in replica_stats(run.store)}
    assert removed.is_set(), "the node was removed before the stage ended"
    cluster.add_node(**NODE)  # the module's other tests get their second node back

    assert len(accepted) >= 500 and len(set(accepted)) == len(accepted)  # nothing duplicated
    assert {status for _, status, _ in rows} == {"ok"}  # nothing lost: every request answered
    lost = sum(attempts for _, _, attempts in rows) - len(rows)  # `attempts` counts every send of a request
    assert lost > 0, "requests were in flight on the lost node"
    sends = Counter(log.read_text().split())
    # Each request was sent once, plus once per attempt lost with the node: never after its answer was stored.
    assert all(sends[key] == attempts for key, _, attempts in rows)
    assert set(sends) == {key for key, _, _ in rows}
    assert set(by_replica) == {"ray actor 1", "ray actor 2"}
    assert by_replica["ray actor 1"]["ok"] > 0  # it came back after its restart and answered again


def test_a_model_missing_on_a_node_names_the_node_and_the_path(cluster: Any) -> None:
    from selfinstruct.lm.ray_replicas import RayError, create_replicas

    with pytest.raises(RayError) as e:
        create_replicas(LMConfig(model="/nowhere/model.gguf"), RayConfig(address="auto"), 0)
    message = str(e.value)
    assert "/nowhere/model.gguf" in message and "127.0.0.1 (node " in message
    assert "same path on each node" in message


def test_an_actor_no_node_can_host_is_refused_at_once(cluster: Any) -> None:
    from selfinstruct.lm.ray_replicas import RayError, create_replicas

    with pytest.raises(RayError, match="no node of the cluster can host an actor with num_cpus 1 and num_gpus 1"):
        create_replicas(LMConfig(), RayConfig(address="auto", num_gpus=1), 0)


def test_two_actors_of_the_embedded_model_both_answer(tmp_path: Path) -> None:
    """The command of the issue, on the real model: `--ray local` starts a loopback-only runtime of its own."""
    pytest.importorskip("ray")
    out = tmp_path / "run"
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path is too deep.
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray"), "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "selfinstruct", "bootstrap", "--out", str(out), "--ray", "local", "--replicas", "2"]
        + ["--num-instructions", "8"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(out / DB_NAME) as db:
        answered = dict(db.execute("SELECT replica, COUNT(*) FROM requests WHERE status = 'ok' GROUP BY replica"))
        accepted = db.execute("SELECT COUNT(*) FROM instructions WHERE origin='machine' AND verdict='accepted'")
        assert accepted.fetchone()[0] >= 8
    assert set(answered) == {"ray actor 1", "ray actor 2"} and min(answered.values()) > 0


def test_without_ray_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from selfinstruct.lm.ray_replicas import RayError, connect

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    with pytest.raises(RayError, match=r"pip install 'selfinstruct\[ray\]'"):
        connect("local")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ray": {"address": "tcp://x"}}, "ray.address (--ray) must be 'local', 'auto' or 'ray://HOST:PORT'"),
        ({"ray": {"address": "local"}, "lm": {"backend": "openai"}}, "repeat --base-url instead"),
        ({"ray": {"address": "local", "replicas": 0}}, "ray.replicas (--replicas) must be at least 1"),
        ({"ray": {"num_cpus": 0}}, "ray.num_cpus must be > 0"),
    ],
)
def test_ray_settings_are_validated(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(values)


def test_a_run_resumes_on_ray_without_sending_a_stored_request_again(
    cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the model runs is not part of a request's identity: a run stopped in-process resumes on Ray actors
    from its journal."""
    log = tmp_path / "sent.log"
    monkeypatch.setenv("SELFINSTRUCT_SEND_LOG", str(log))
    with Run.open(tmp_path / "run", {"num_instructions": 20}, lm=[ScriptedLM()]) as run:
        run.bootstrap()
        before = {k for (k,) in run.store._db.execute("SELECT key FROM requests WHERE status = 'ok'")}
    sent_before = len(log.read_text().split())
    with Run.open(tmp_path / "run", {"num_instructions": 60}, lm=replicas(2, latency=0.0)) as run:
        run.bootstrap()
        assert len(run.store.accepted("machine")) >= 60
    resent = set(log.read_text().split()[sent_before:])
    assert resent and not resent & before
