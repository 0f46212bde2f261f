"""Ray distribution of the estimate streams: worker actors, the driver's pool, the session.

Each worker is a Ray actor running one :class:`~meta_train.stream.EstimateStream` (its own
task sequence, population sharded over its host's devices), or, with ``partition:
particles``, its slice of the population of every stream. The driver keeps one request in
flight per worker: ``estimate(theta, version, window)`` with the latest theta (an object
store reference when it is large, the arrays themselves when small). An outer step waits
for ``estimates_per_step`` estimates at most ``max_staleness`` versions old; older ones that
arrive meanwhile are handed to the learner, which drops and counts them. With
``max_staleness`` 0 the driver sends only as many requests per version as the step needs
(synchronous rounds); otherwise every worker is kept busy. With ``partition: particles`` a
step is one request to every worker, and each stream's slices are merged into its estimate.

Failures: a worker that dies is restarted by Ray (``max_restarts=-1``) and its lost request
is sent again for the same window (Ray does not retry it, ``max_task_retries=0``), so no
estimate is lost or counted twice. Restarts (a worker seen with a new host/pid) and lost
requests are counted in the metrics. The driver's checkpoint records each worker's count of
completed windows; a resumed run restarts every worker at its count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import ray

import lopt
from meta_train import compile_cache, reaper
from meta_train.config import ConfigError, DistributedConfig
from meta_train.learner import initial_theta
from meta_train.stream import Estimate, EstimateStream, StreamSpec, merge
from meta_train.watchdog import Watchdog


def pin_to_free_cores(
    count: int, slots: pathlib.Path | None = None
) -> tuple[list[int], Any] | None:
    """Restricts this process to ``count`` cores that no other pinned worker on this host
    holds, before JAX sizes its thread pools; returns the cores and the held slot lock.

    Slots are ``flock``-ed files under ``slots`` (default: one directory per user in the
    temporary directory), so they are released when a worker dies and shared by every run
    of this user on the host; ``None`` when every slot is taken. XLA on CPU otherwise runs
    each worker's threads on every core, and workers sharing cores slow each other down far
    beyond their share.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    import fcntl

    cores = sorted(os.sched_getaffinity(0))
    slots = slots or pathlib.Path(tempfile.gettempdir()) / f"lopt-cpu-slots-{os.getuid()}"
    slots.mkdir(parents=True, exist_ok=True)
    for k in range(len(cores) // count):
        lock = open(slots / str(k), "w")  # held (locked) for the life of the process
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        mine = cores[k * count : (k + 1) * count]
        os.sched_setaffinity(0, mine)
        return mine, lock
    return None


INLINE_BYTES = 100_000  # Ray's own limit for passing an argument by value


class Worker:
    """The actor behind each worker: estimate stream ``index + 1`` (stream 0 is the
    in-process trainer's) with ``partition: streams``; with ``particles``, slice ``index``
    of the populations of streams ``1 .. streams``, its own first (so that workers starting
    a task period compile different structures first and may read the others' from the
    compilation cache). CPU-only workers are pinned to ``cpus_per_worker`` free cores of
    their host when ``distributed.pin_cpus`` (see :func:`pin_to_free_cores`). An estimate
    that stalls (``meta_train.watchdog``) ends the worker's process, which Ray restarts as
    after a crash."""

    def __init__(self, spec: StreamSpec, d: DistributedConfig, index: int, streams: int):
        cpu_only = d.gpus_per_worker == 0 and not d.resources_per_worker
        whole = d.cpus_per_worker >= 1 and float(d.cpus_per_worker).is_integer()
        self.pinned = None
        if d.pin_cpus and cpu_only and whole:
            self.pinned = pin_to_free_cores(int(d.cpus_per_worker))
        compile_cache.inherit()
        self.index = index
        if d.partition == "particles":
            order = [(index + j) % streams for j in range(streams)]
            self.streams = [
                EstimateStream(spec, stream=s + 1, part=index, parts=d.workers) for s in order
            ]
        else:
            self.streams = [EstimateStream(spec, stream=index + 1)]
        self.watchdog = Watchdog(d.stall_timeout, self._stalled).start()

    def _stalled(self, label: str, seconds: float) -> None:
        print(
            f"Ray worker {self.index}: {label} has used no CPU for {seconds:.0f} s (XLA's CPU "
            "runtime wedged); exiting, to be restarted",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "devices": len(self.streams[0].devices),
            "cores": self.pinned[0] if self.pinned else None,
        }

    def estimate(self, theta: lopt.Theta, version: int, window: int) -> list[Estimate]:
        """Window ``window`` of each of its streams (or slices) at ``theta``."""
        out = []
        for stream in self.streams:
            label = f"the estimate of window {window} of stream {stream.stream}"
            with self.watchdog.watch(f"{label} ({stream.task_name(window)})"):
                grad, metrics = stream.estimate(theta, window)
            identity = {
                "worker": self.index,
                "window": window,
                "stream": stream.stream,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
            out.append(Estimate(grad, version, {**metrics, **identity}))
        return out


def _lowest_priority() -> None:
    """This thread, and the threads it starts (XLA's), run only when a core is otherwise
    idle: Linux's ``SCHED_IDLE`` policy, elsewhere the lowest ``nice`` level."""
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


class Precompiler:
    """The actor that compiles task periods ahead: ``prepare(stream, window)`` compiles the
    programs of stream ``stream``'s period starting at ``window`` (its slice of
    ``parts``) into the persistent compilation cache, at the lowest CPU priority, so it
    runs on the cores the workers leave idle (a worker waiting for a slower one) and a
    worker entering that period only traces its programs and reads them from the cache.
    Only for workers on this host: the cache entry must be for the same devices."""

    def __init__(self, spec: StreamSpec, parts: int):
        _lowest_priority()
        compile_cache.inherit()
        self.spec, self.parts = spec, parts
        self.theta = jax.device_get(initial_theta(spec.optimizer.build(), spec.seed))
        self.streams: dict[int, EstimateStream] = {}

    def prepare(self, stream: int, window: int) -> None:
        """Compiles the programs of the period of ``window`` of stream ``stream``."""
        if stream not in self.streams:
            self.streams[stream] = EstimateStream(self.spec, stream, parts=self.parts)
        self.streams[stream].prepare(window, self.theta)
        jax.clear_caches()  # nothing compiled here runs here


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray keeps retrying an unreachable head for minutes; fail fast with a clear message.
    ``address`` is ``auto``, ``ray://...`` or ``host:port`` (``DistributedConfig`` checks)."""
    if address == "auto" or "://" in address:
        return  # 'auto' fails fast by itself; ray:// (Ray Client) has its own handshake
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(
            f"cannot reach a Ray head at {address} ({e}); start one with "
            f"`ray start --head --port={port}` or fix distributed.address / --ray-address"
        ) from None


@contextlib.contextmanager
def ray_session(dist: DistributedConfig, verbose: bool = True) -> Iterator[None]:
    """Connects to ``dist.address``, or starts a local Ray instance with this machine's CPUs;
    disconnects (and stops the local instance) at exit. An already initialized Ray (e.g. in
    a notebook or a test) is used as it is and left running."""
    if ray.is_initialized():
        yield
        return
    options = dict(include_dashboard=False, log_to_driver=verbose, logging_level=logging.WARNING)
    if dist.address is None:
        cpus = os.cpu_count() or 1
        need = dist.workers * dist.cpus_per_worker
        if need > cpus:
            raise ConfigError(
                f"{dist.workers} workers x {dist.cpus_per_worker} CPUs need {need:g} CPUs but "
                f"this machine has {cpus}; lower distributed.workers or "
                "distributed.cpus_per_worker, or give distributed.address of a cluster",
                field="distributed.workers",
            )
        # "local": a new instance of this run's own, even where `ray start` left a cluster
        # running (ray.init() with no address would join that one). It stays on loopback.
        address = "local"
        options["_node_ip_address"] = "127.0.0.1"  # and see meta_train/environment.py
    else:
        _check_reachable(dist.address)
        address, cpus = dist.address, None
    with warnings.catch_warnings():  # Ray forks then execs its processes: harmless for JAX
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        try:
            ray.init(address=address, num_cpus=cpus, **options)
        except ConnectionError as e:
            if "uthenticat" not in f"{e} {e.__cause__}":
                raise
            raise ConnectionError(
                f"the Ray cluster at {address} refused the connection: it uses token "
                "authentication (the default of `ray start`). Set RAY_AUTH_MODE=token and "
                "give its token in ~/.ray/auth_token or RAY_AUTH_TOKEN (on a node of the "
                "cluster, --ray-address auto finds both)"
            ) from e
    # A local instance outlives a driver killed with SIGKILL in part: meta_train.reaper.
    reaper = _watch_local_instance() if address == "local" else None
    try:
        yield
    finally:
        ray.shutdown()
        if reaper is not None:
            os.close(reaper)  # the reaper then stops whatever of the instance is left


def _watch_local_instance() -> int | None:
    """:func:`meta_train.reaper.watch` of the instance this process started."""
    (node,) = ray.nodes()
    return reaper.watch(str(pathlib.Path(node["RayletSocketName"]).parent.parent))


class WorkerPool:
    """The driver's side: starts ``d.workers`` actors computing ``spec``'s estimates and
    gathers them, each step until ``d.estimates_per_step`` (default: one per worker) of them
    are at most ``max_staleness`` theta versions old; with ``partition: particles``, the
    slices of every worker, merged into one estimate per stream. The checkpoint holds each
    worker's count of completed windows. With ``d.precompile`` (and local CPU-only workers,
    a task that changes every period, the compilation cache on) a :class:`Precompiler`
    compiles the coming periods of every stream, earliest first, up to window ``num_steps``.
    Implements :class:`~meta_train.stream.EstimateSource`."""

    def __init__(
        self,
        spec: StreamSpec,
        d: DistributedConfig,
        max_staleness: int,
        verbose: bool = True,
        num_steps: int | None = None,
    ):
        streams = d.estimates_per_step or d.workers
        self.sliced = d.partition == "particles"
        self.per_step = d.workers if self.sliced else streams  # requests answered per step
        self.max_staleness = max_staleness
        self.max_failures = d.max_worker_failures
        self.startup_timeout = d.startup_timeout
        env = {**compile_cache.worker_env(), **d.worker_env}
        actor = ray.remote(Worker).options(
            num_cpus=d.cpus_per_worker,
            num_gpus=d.gpus_per_worker,
            resources=dict(d.resources_per_worker) or None,
            max_restarts=-1,
            max_task_retries=0,
            runtime_env={"env_vars": env} if env else None,
        )
        self.precompiler = None  # started once the workers are
        self.workers = [actor.remote(spec, d, i, streams) for i in range(d.workers)]
        if verbose:
            print(f"starting {d.workers} Ray workers ...", flush=True)
        try:
            started = ray.get([w.info.remote() for w in self.workers], timeout=d.startup_timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(
                f"{d.workers} workers did not start within {d.startup_timeout:g} s; each needs "
                f"{d.cpus_per_worker:g} CPUs, {d.gpus_per_worker:g} GPUs and "
                f"{dict(d.resources_per_worker)}; the cluster has {ray.cluster_resources()}"
            ) from None
        except ray.exceptions.RayActorError as e:  # an error in Worker.__init__
            self.close()
            raise RuntimeError(f"a Ray worker could not start: {e}") from e
        if verbose:
            hosts = sorted({i["host"] for i in started})
            devices = sum(i["devices"] for i in started)
            print(f"{d.workers} workers on {len(hosts)} host(s), {devices} device(s)", flush=True)
        self.windows = [0] * d.workers  # completed windows per worker
        self.restarts = 0  # worker processes replaced (seen as a new host/pid)
        self.lost = 0  # requests that failed and were sent again
        self._process = [(i["host"], i["pid"]) for i in started]
        self._failures = [0] * d.workers  # consecutive, per worker
        self._inflight: dict[ray.ObjectRef, tuple[int, int]] = {}  # -> (worker, version)
        self._theta, self._version = None, 0
        self._streams = [  # the streams each worker computes (or a slice of)
            list(range(1, streams + 1)) if self.sliced else [i + 1] for i in range(d.workers)
        ]
        local_cpus = d.address is None and d.gpus_per_worker == 0 and not d.resources_per_worker
        if d.precompile and local_cpus and spec.task.resamples and env.get(compile_cache.ENV):
            self.precompiler = (
                ray.remote(Precompiler)
                .options(num_cpus=0, max_restarts=0, runtime_env={"env_vars": env})
                .remote(spec, d.workers if self.sliced else 1)
            )
        self.resample_every, self.num_steps = spec.task.resample_every, num_steps
        self.precompiled = 0  # periods compiled ahead
        self._ahead: dict[int, int] = {}  # stream -> the first window of its last one
        self._precompiling: tuple[ray.ObjectRef, tuple[int, int]] | None = None

    def place(self, tree: Any) -> Any:
        return tree  # published to the workers by value or through the object store

    def template(self, step: int, theta: lopt.Theta) -> dict[str, Any]:
        return {}  # a restored run starts each worker's population afresh

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"windows": list(self.windows)}

    def restore(self, step: int, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Continues each worker's stream after ``meta["windows"][i]`` completed windows
        (workers beyond the saved list start at 0)."""
        n = len(self.workers)
        self.windows = (list(meta["windows"]) + [0] * n)[:n]

    def info(self) -> dict[str, Any]:
        return {
            "worker_restarts": self.restarts,
            "lost_requests": self.lost,
            "precompiled": self.precompiled,
        }

    def publish(self, theta: lopt.Theta, version: int) -> None:
        """Makes ``theta`` the one new requests are computed at: through the object store
        (one copy per host) when it is large, by value like any small Ray argument if not."""
        theta = jax.device_get(theta)
        large = sum(x.nbytes for x in jax.tree.leaves(theta)) > INLINE_BYTES
        self._theta, self._version = ray.put(theta) if large else theta, version

    def _submit_idle(self, fresh: int) -> None:
        """Sends the current theta to every idle worker; with ``max_staleness`` 0, only as
        many as this step still needs (a request beyond that would come back stale)."""
        busy = {i for i, _ in self._inflight.values()}
        pending = sum(v == self._version for _, v in self._inflight.values())
        for i, w in enumerate(self.workers):
            if self.max_staleness == 0 and fresh + pending >= self.per_step:
                return
            if i not in busy:
                ref = w.estimate.remote(self._theta, self._version, self.windows[i])
                self._inflight[ref] = (i, self._version)
                pending += 1

    def _seen(self, i: int, host: str, pid: int) -> None:
        if (host, pid) != self._process[i]:
            self._process[i] = (host, pid)
            self.restarts += 1

    def _lost(self, i: int, error: Exception) -> None:
        """Counts worker ``i``'s failed request and waits until Ray has restarted it."""
        self.lost += 1
        self._failures[i] += 1
        if self._failures[i] >= self.max_failures:
            raise RuntimeError(
                f"Ray worker {i} failed {self._failures[i]} times in a row (see the Ray logs, "
                f"e.g. /tmp/ray/session_latest/logs); last error: {error}"
            ) from error
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                left = max(deadline - time.monotonic(), 0.1)
                info = ray.get(self.workers[i].info.remote(), timeout=left)
            except ray.exceptions.ActorUnavailableError:  # still restarting: ask again
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
                continue
            except ray.exceptions.GetTimeoutError:
                break
            except ray.exceptions.RayActorError as e:  # died for good (e.g. its __init__ failed)
                raise RuntimeError(f"Ray worker {i} could not be restarted: {e}") from e
            self._seen(i, info["host"], info["pid"])
            return
        raise RuntimeError(
            f"Ray worker {i} did not come back within {self.startup_timeout:g} s of failing "
            f"({error})"
        ) from error

    def collect(self) -> list[Estimate]:
        """Estimates until ``per_step`` answers are fresh enough for the current version;
        with ``partition: particles``, each stream's slices merged, in stream order."""
        self._precompile_ahead()
        out, fresh = [], 0
        while fresh < self.per_step:
            self._submit_idle(fresh)
            [ref], _ = ray.wait(list(self._inflight), num_returns=1)
            i, _ = self._inflight.pop(ref)
            try:
                answer = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # died (and restarting): ask again
                self._lost(i, e)
                continue
            self._failures[i] = 0
            self._seen(i, answer[0].metrics["host"], answer[0].metrics["pid"])
            self.windows[i] += 1
            out.extend(answer)
            fresh += self._version - answer[0].version <= self.max_staleness
        if not self.sliced:
            return out
        streams = sorted({e.metrics["stream"] for e in out})
        return [merge([e for e in out if e.metrics["stream"] == s]) for s in streams]

    def _precompile_ahead(self) -> None:
        """Keeps the precompiler busy with one period at a time: the earliest one, over
        every stream, that its worker has not begun (none at or past ``num_steps``; without
        ``num_steps``, only the period after each worker's current one). A failure is a
        warning, and the workers compile every period themselves from then on."""
        if self.precompiler is None:
            return
        if self._precompiling is not None:
            ref, (stream, window) = self._precompiling
            if not ray.wait([ref], timeout=0)[0]:
                return
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                warnings.warn(
                    f"compiling stream {stream}'s task period at window {window} ahead "
                    f"failed; the workers compile each period as they enter it ({e})",
                    RuntimeWarning,
                    stacklevel=3,
                )
                ray.kill(self.precompiler)
                self.precompiler = None
                return
            self.precompiled += 1
            self._ahead[stream] = window
        R, todo = self.resample_every, []
        for i, window in enumerate(self.windows):
            following = (window // R + 1) * R  # the first window of the next period
            for stream in self._streams[i]:
                start = max(following, self._ahead.get(stream, 0) + R)
                if start < (self.num_steps or following + 1):
                    todo.append((start, stream))
        if todo:
            start, stream = min(todo)
            self._precompiling = self.precompiler.prepare.remote(stream, start), (stream, start)
        else:
            self._precompiling = None

    def close(self) -> None:
        for w in self.workers:
            ray.kill(w)
        if self.precompiler is not None:
            ray.kill(self.precompiler)
