"""The in-process backends as Ray actors: each actor hosts one model on a node of a cluster and is one replica to
the request engine (least-outstanding routing, adaptive concurrency, set-aside, budgets and the journal apply
unchanged).

The driver keeps what matters (the run store, the novelty filter); an actor holds only its model. A lost actor (its
node died, its process was killed) is restarted by Ray, reloads its model, and the engine sends again what was in
flight: the request fails with a retryable BackendError, and the replica waits for its actor to come back before it
sends anything else. Nothing is answered twice into the store: an answer exists only once it is stored.

Ray is optional (`pip install 'selfinstruct[ray]'`) and imported only here. See docs/ray.md.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from selfinstruct.config import Sampling
from selfinstruct.lm import LM, BackendError, create_in_process
from selfinstruct.lmtypes import Completion, Prompt

if TYPE_CHECKING:
    from selfinstruct.config import LMConfig, RayConfig

MAX_RESTARTS = 16  # per actor, over the run: a node that keeps dying is not worth restarting for ever
RESTART_WAIT = 2.0  # seconds the engine holds a request lost with its actor before sending it again
BACK_TIMEOUT = 600.0  # seconds a replica waits for its restarting actor before giving up on the request
START_TIMEOUT = 600.0  # seconds for every actor to be placed and load its model
OBJECT_STORE = 128 * 2**20  # bytes, for `local`: requests and answers are small; Ray's default takes 30% of RAM


class RayError(RuntimeError):
    """Ray is missing, unreachable or cannot host the model: the message says what to do."""


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayError("--ray needs Ray, an optional extra: pip install 'selfinstruct[ray]'") from None
    return ray


def connect(address: str) -> bool:
    """Join (or, for "local", start) the Ray runtime at `address`; True when this call started it. A process already
    connected (a test session, a driver script) keeps its connection."""
    if address == "local":
        # Bind the runtime to the loopback address only: a local runtime serves this process and nobody else.
        # Read when Ray is imported, hence before it.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _ray()
    if ray.is_initialized():
        return False
    try:
        if address == "local":
            ray.init(
                address="local",
                include_dashboard=False,
                object_store_memory=OBJECT_STORE,
                log_to_driver=False,
                configure_logging=False,
            )
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (OSError, RuntimeError, ValueError) as e:  # ConnectionError is an OSError
        what = "start a local Ray runtime" if address == "local" else f"connect to Ray at {address!r}"
        raise RayError(f"cannot {what}: {e}") from None
    return True


class ModelActor:
    """Hosts one backend on a Ray node. Construction never fails: a model that cannot load on this node (a --model
    path missing there) is reported by `describe`, with the node, so the driver can say where."""

    def __init__(self, build: Callable[[], LM]) -> None:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
        address = next((n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node_id), "?")
        self.node = f"{address} (node {node_id[:8]})"
        self.lm: LM | None = None
        self.error: str | None = None
        try:
            self.lm = build()
        except Exception as e:  # noqa: BLE001 - reported to the driver, which stops with it
            self.error = f"the model cannot be loaded on {self.node}: {e}"

    def describe(self) -> tuple[str | None, str | None, str]:
        """(model id, error, node)."""
        return (self.lm.model_id if self.lm else None), self.error, self.node

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        if self.lm is None:  # a restart landed on a node without the model
            raise BackendError(self.error or "no model", retryable=False)
        return await self.lm.complete(prompt, sampling, seed)


class RayReplica:
    """One actor, seen by the engine as one backend."""

    def __init__(self, actor: Any, name: str, model_id: str, runtime: _Runtime) -> None:
        self.actor = actor
        self.name = name
        self.model_id = model_id
        self._runtime = runtime
        self._errors = _ray().exceptions  # looked up once, not per request
        self._lost = False
        self._back: asyncio.Future[None] | None = None

    async def complete(self, prompt: Prompt, sampling: Sampling, seed: int) -> Completion:
        if self._lost:
            await self._wait_until_back()
        try:
            return await self.actor.complete.remote(prompt, sampling, seed)
        except self._errors.RayActorError as e:  # the actor's process or node is gone; Ray restarts it
            self._lost = True
            raise BackendError(
                f"{self.name} was lost ({type(e).__name__}); Ray restarts it and the request is sent again",
                retry_after=RESTART_WAIT,
            ) from None
        except self._errors.RayTaskError as e:  # the backend's own error, raised inside the actor
            if isinstance(e.cause, BackendError):
                raise e.cause from None
            raise BackendError(f"{self.name}: {e.cause!r}", retryable=False) from None

    async def _wait_until_back(self) -> None:
        """Until the actor answers again (one probe shared by every request that waits)."""
        if self._back is None or self._back.done():
            self._back = asyncio.ensure_future(self._probe())
        await asyncio.shield(self._back)

    async def _probe(self) -> None:
        deadline = time.monotonic() + BACK_TIMEOUT
        while True:
            try:
                await self.actor.describe.remote()
            except self._errors.ActorDiedError as e:  # for good: its restarts are spent
                raise BackendError(f"{self.name} is gone and will not be restarted: {e}") from None
            except self._errors.RayActorError:  # still restarting
                if time.monotonic() > deadline:
                    raise BackendError(f"{self.name} did not come back within {BACK_TIMEOUT:.0f} s") from None
                await asyncio.sleep(0.25)
                continue
            self._lost = False
            return

    async def aclose(self) -> None:
        _ray().kill(self.actor, no_restart=True)
        self._runtime.release()


class _Runtime:
    """Shuts down the Ray runtime this run started, once its last replica is closed."""

    def __init__(self, started: bool, replicas: int) -> None:
        self.started = started
        self.open = replicas

    def release(self) -> None:
        self.open -= 1
        if self.open == 0 and self.started:
            _ray().shutdown()


def create_replicas(
    lm: LMConfig, ray_config: RayConfig, seed: int, build: Callable[[], LM] | None = None
) -> list[RayReplica]:
    """`ray_config.replicas` actors spread over the cluster's nodes, each with its model loaded. `build` makes the
    backend inside an actor (default: the configured in-process backend, with one decoding thread per CPU the
    actor reserves)."""
    if build is None:
        threads = max(1, int(ray_config.num_cpus))
        build = functools.partial(create_in_process, lm, seed, threads)
    started = connect(ray_config.address or "local")
    ray = _ray()
    _check_fits(ray, ray_config)
    actor_class = ray.remote(ModelActor).options(
        num_cpus=ray_config.num_cpus,
        num_gpus=ray_config.num_gpus,
        max_restarts=MAX_RESTARTS,
        max_task_retries=0,  # the engine sends again what was lost, and journals it
        scheduling_strategy="SPREAD",
    )
    actors = [actor_class.remote(build) for _ in range(ray_config.replicas)]
    try:
        described = ray.get([a.describe.remote() for a in actors], timeout=START_TIMEOUT)
    except ray.exceptions.GetTimeoutError:
        _abandon(ray, actors, started)
        raise RayError(
            f"{ray_config.replicas} actors (num_cpus {ray_config.num_cpus:g}, num_gpus {ray_config.num_gpus:g} "
            f"each) were not all placed and loaded within {START_TIMEOUT:.0f} s; the cluster has "
            f"{ray.cluster_resources()}. Ask for fewer --replicas or less per actor ([ray] num_cpus/num_gpus)."
        ) from None
    errors = [error for _, error, _ in described if error]
    if errors:
        _abandon(ray, actors, started)
        raise RayError(
            f"{errors[0]}. A --model path must exist on every node that hosts an actor: put the file at the same "
            "path on each node, or ship it with a Ray runtime environment (docs/ray.md)."
        )
    runtime = _Runtime(started, len(actors))
    return [
        RayReplica(actor, f"ray actor {i + 1}", model_id, runtime)
        for i, (actor, (model_id, _, _)) in enumerate(zip(actors, described, strict=True))
    ]


def _check_fits(ray: Any, ray_config: RayConfig) -> None:
    """An actor larger than every node would wait for ever: say so at once."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if nodes and not any(
        r.get("CPU", 0) >= ray_config.num_cpus and r.get("GPU", 0) >= ray_config.num_gpus for r in nodes
    ):
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)))
        raise RayError(
            f"no node of the cluster can host an actor with num_cpus {ray_config.num_cpus:g} and num_gpus "
            f"{ray_config.num_gpus:g} (the largest has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} "
            "GPUs): lower [ray] num_cpus / num_gpus"
        )


def _abandon(ray: Any, actors: list[Any], started: bool) -> None:
    for actor in actors:
        ray.kill(actor, no_restart=True)
    if started:
        ray.shutdown()
