"""Ray distribution of the estimate streams: worker actors, the driver's pool, the session.

The work is a fixed set of *shards*: with ``partition: streams`` one per stream
(:class:`~meta_train.stream.EstimateStream` ``1 .. workers``, each its own task sequence, its
population sharded over its host's devices); with ``partition: particles`` one per slice of
every stream's population. The driver assigns each shard to one live worker (a Ray actor)
and keeps one request in flight per shard: ``estimate(theta, version, shard, window)`` with
the latest theta (an object store reference when it is large, the arrays themselves when
small). An outer step waits for ``estimates_per_step`` estimates at most ``max_staleness``
versions old; older ones that arrive meanwhile are handed to the learner, which drops and
counts them. With ``max_staleness`` 0 the driver sends only as many requests per version as
the step needs (synchronous rounds); otherwise every shard is kept busy. With ``partition:
particles`` a step is one request per shard, and each stream's slices are merged into its
estimate.

Membership is elastic: ``workers`` is a target, ``min_workers`` a floor. A worker whose
request fails (its process died, its node left the cluster) leaves at once; its shards go to
the live workers with the fewest, and its lost requests are sent again there for the same
windows (Ray does not retry them, ``max_task_retries=0``), so no estimate is lost or counted
twice. Ray restarts the actor (``max_restarts=-1``) wherever the cluster has room, now or
when a node joins; the driver asks every absent worker whether it is up, at every wait (a
second apart at most), and once it answers moves shards onto it until the counts are even.
A worker that fails ``max_worker_failures`` times in a row, or that Ray cannot restart, is
retired. The run stops with a clear error only when fewer than ``min_workers`` are live for
longer than ``startup_timeout``.

A shard that moves continues on its new worker from its next window with a fresh population,
as every stream does at the start of each task period and after a resume: the unroll
progress of its particles is lost, not the estimator's correctness. Each window's estimate
is a function of the population's state and of the keys of ``(seed, stream, window)``, and a
freshly started population is one the estimator starts from at every period anyway.

The driver's checkpoint records each shard's count of completed windows; a resumed run
continues every shard after its count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
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


@dataclasses.dataclass(frozen=True, order=True)
class Shard:
    """A unit of estimate work: stream ``stream`` (from 1; stream 0 is the in-process
    trainer's), or, with ``partition: particles``, slice ``part`` of its population."""

    stream: int
    part: int = 0


class Worker:
    """The actor behind each worker: the estimates of the shards the driver assigns it, each
    shard's estimator state kept between its windows (slices of ``d.workers`` parts with
    ``partition: particles``). CPU-only workers are pinned to ``cpus_per_worker`` free cores
    of their host when ``distributed.pin_cpus`` (see :func:`pin_to_free_cores`). An estimate
    that stalls (``meta_train.watchdog``) ends the worker's process, which Ray restarts as
    after a crash."""

    def __init__(self, spec: StreamSpec, d: DistributedConfig, index: int):
        cpu_only = d.gpus_per_worker == 0 and not d.resources_per_worker
        whole = d.cpus_per_worker >= 1 and float(d.cpus_per_worker).is_integer()
        self.pinned = None
        if d.pin_cpus and cpu_only and whole:
            self.pinned = pin_to_free_cores(int(d.cpus_per_worker))
        compile_cache.inherit()
        self.spec, self.index = spec, index
        self.parts = d.workers if d.partition == "particles" else 1
        self.streams: dict[Shard, EstimateStream] = {}
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
            "devices": jax.local_device_count(),
            "cores": self.pinned[0] if self.pinned else None,
        }

    def estimate(
        self,
        theta: lopt.Theta,
        version: int,
        shard: Shard,
        window: int,
        hosted: frozenset[Shard],
    ) -> Estimate:
        """Window ``window`` of ``shard`` at ``theta``, after forgetting the state of every
        shard not in ``hosted`` (those the driver has moved to other workers)."""
        for gone in self.streams.keys() - hosted:
            del self.streams[gone]
        if shard not in self.streams:
            self.streams[shard] = EstimateStream(
                self.spec, shard.stream, part=shard.part, parts=self.parts
            )
        stream = self.streams[shard]
        label = f"the estimate of window {window} of stream {shard.stream}"
        with self.watchdog.watch(f"{label} ({stream.task_name(window)})"):
            grad, metrics = stream.estimate(theta, window)
        metrics = dataclasses.replace(
            metrics,
            worker=self.index,
            window=window,
            stream=shard.stream,
            host=socket.gethostname(),
            pid=os.getpid(),
        )
        return Estimate(grad, version, metrics)


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
    """The driver's side: starts ``d.workers`` actors computing ``spec``'s estimates, assigns
    them the shards and gathers the estimates, each step until ``d.estimates_per_step``
    (default: one per worker) of them are at most ``max_staleness`` theta versions old; with
    ``partition: particles``, one answer per shard, merged into one estimate per stream.

    Starting waits until every worker the cluster has room for is up (at least
    ``d.min_workers``, at most ``d.startup_timeout`` seconds); the others join when they
    start. Membership then changes as the module docstring says. With ``d.precompile`` (and
    local CPU-only workers, a task that changes every period, the compilation cache on) a
    :class:`Precompiler` compiles the coming periods of every stream, earliest first, up to
    window ``num_steps``. Implements :class:`~meta_train.stream.EstimateSource`."""

    def __init__(
        self,
        spec: StreamSpec,
        d: DistributedConfig,
        max_staleness: int,
        verbose: bool = True,
        num_steps: int | None = None,
    ):
        self.sliced = d.partition == "particles"
        streams = (d.estimates_per_step or d.workers) if self.sliced else d.workers
        parts = d.workers if self.sliced else 1
        self.shards = [Shard(s, p) for s in range(1, streams + 1) for p in range(parts)]
        self.per_step = len(self.shards) if self.sliced else d.estimates_per_step or d.workers
        self.max_staleness = max_staleness
        self.min_workers, self.max_failures = d.min_workers, d.max_worker_failures
        self.startup_timeout, self.verbose = d.startup_timeout, verbose
        self._demand = {
            k: v for k, v in {"CPU": d.cpus_per_worker, "GPU": d.gpus_per_worker}.items() if v > 0
        } | dict(d.resources_per_worker)
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
        self.windows = dict.fromkeys(self.shards, 0)  # completed windows per shard
        self.host: dict[Shard, int | None] = dict.fromkeys(self.shards)  # -> worker
        self.live: dict[int, tuple[str, int]] = {}  # worker -> (host, pid) of its process
        self.restarts = 0  # worker processes replaced (seen as a new host/pid)
        self.lost = 0  # requests that failed and were sent again
        self._process: dict[int, tuple[str, int]] = {}  # the last process seen per worker
        self._failures = [0] * d.workers  # consecutive, per worker
        self._retired: set[int] = set()
        self._joining: dict[ray.ObjectRef, int] = {}  # info() asked of an absent worker
        self._ask_at: dict[int, float] = {}  # absent worker -> when to ask again
        self._short_since: float | None = None  # when live workers fell below the floor
        self._last_error: Exception | None = None
        self._inflight: dict[ray.ObjectRef, tuple[Shard, int, int, tuple[str, int]]] = {}
        self._theta, self._version = None, 0
        self.workers = [actor.remote(spec, d, i) for i in range(d.workers)]
        self._start(d)
        local_cpus = d.address is None and d.gpus_per_worker == 0 and not d.resources_per_worker
        if d.precompile and local_cpus and spec.task.resamples and env.get(compile_cache.ENV):
            self.precompiler = (
                ray.remote(Precompiler)
                .options(num_cpus=0, max_restarts=0, runtime_env={"env_vars": env})
                .remote(spec, parts)
            )
        self.resample_every, self.num_steps = spec.task.resample_every, num_steps
        self.precompiled = 0  # periods compiled ahead
        self._ahead: dict[int, int] = {}  # stream -> the first window of its last one
        self._precompiling: tuple[ray.ObjectRef, tuple[int, int]] | None = None

    # -- membership ---------------------------------------------------------------------

    def _start(self, d: DistributedConfig) -> None:
        """Waits for the workers, as the class docstring says; an error if too few start."""
        self._say(f"starting {d.workers} Ray workers ...")
        for i in range(d.workers):
            self._ask(i)
        deadline = time.monotonic() + d.startup_timeout
        while len(self.live) < d.workers and time.monotonic() < deadline:
            if len(self.live) >= max(self.min_workers, self._room()):
                break
            if len(self._retired) > d.workers - self.min_workers:
                break
            self._poll(min(1.0, max(deadline - time.monotonic(), 0.01)))
        if len(self.live) < self.min_workers:
            self.close()
            if len(self._retired) > d.workers - self.min_workers:
                raise RuntimeError(
                    f"a Ray worker could not start: {self._last_error}"
                ) from self._last_error
            raise RuntimeError(
                f"{len(self.live)} of {d.workers} workers started within "
                f"{d.startup_timeout:g} s (distributed.min_workers: {self.min_workers}); each "
                f"needs {d.cpus_per_worker:g} CPUs, {d.gpus_per_worker:g} GPUs and "
                f"{dict(d.resources_per_worker)}; the cluster has {ray.cluster_resources()}"
            )
        hosts = len({host for host, _ in self.live.values()})
        later = d.workers - len(self.live)
        if self._retired:
            warnings.warn(
                f"{len(self._retired)} Ray worker(s) could not start ({self._last_error}); "
                f"going on with {len(self.live)}",
                RuntimeWarning,
                stacklevel=3,
            )
        self._say(
            f"{len(self.live)} workers on {hosts} host(s)"
            + (f"; {later} more join when the cluster has room" if later else "")
        )

    def _room(self) -> int:
        """How many workers the cluster's live nodes hold, each on one node."""
        return sum(
            min(math.floor(n["Resources"].get(k, 0) / v + 1e-9) for k, v in self._demand.items())
            for n in ray.nodes()
            if n["Alive"]
        )

    def _say(self, line: str) -> None:
        if self.verbose:
            print(line, flush=True)

    def _ask(self, i: int) -> None:
        """Asks worker ``i`` whether it is up; its answer makes it join."""
        self._ask_at.pop(i, None)
        if i not in self._joining.values():
            self._joining[self.workers[i].info.remote()] = i

    def _joined(self, i: int, ref: ray.ObjectRef) -> None:
        try:
            info = ray.get(ref)
        except ray.exceptions.ActorUnavailableError:  # restarting, or waiting for room
            self._ask_at[i] = time.monotonic() + 1.0
            return
        except ray.exceptions.RayError as e:  # its constructor failed, or it died for good
            self._retire(i, e)
            return
        self._seen(i, (info["host"], info["pid"]))
        if self._theta is not None:  # a running pool, not its start
            self._say(f"Ray worker {i} joined on {info['host']}: {len(self.live)} live")
        self._rebalance()

    def _seen(self, i: int, process: tuple[str, int]) -> None:
        """Worker ``i`` is live in ``process`` (host, pid); a new one counts as a restart."""
        if self._process.get(i, process) != process:
            self.restarts += 1
        self._process[i] = self.live[i] = process

    def _unassign(self, i: int) -> None:
        """Worker ``i`` is not live: its shards have no worker until ``_rebalance``."""
        self.live.pop(i, None)
        for shard, host in self.host.items():
            if host == i:
                self.host[shard] = None

    def _left(self, i: int, error: Exception) -> None:
        """Worker ``i``'s process is gone: its shards go to the others, and it is asked
        again until Ray has restarted it (or retired after too many failures in a row)."""
        self._last_error = error
        self._failures[i] += 1
        self._unassign(i)
        if self._failures[i] >= self.max_failures:
            self._retire(i, error)
        else:
            self._say(f"Ray worker {i} left ({_first_line(error)}): {len(self.live)} live")
            self._ask(i)
        self._rebalance()

    def _retire(self, i: int, error: Exception) -> None:
        """Worker ``i`` is not asked again: it failed too often, or Ray cannot restart it
        (its constructor failed, or this driver's own Ray node died, which ends the run)."""
        self._check_driver_node()
        self._last_error = error
        self._retired.add(i)
        self._unassign(i)
        with contextlib.suppress(Exception):
            ray.kill(self.workers[i])
        if self._theta is not None:  # at the start, _start reports
            warnings.warn(
                f"Ray worker {i} is retired after {self._failures[i]} failure(s) in a row "
                f"({_first_line(error)}); {len(self.live)} workers go on",
                RuntimeWarning,
                stacklevel=2,
            )
        self._rebalance()

    @staticmethod
    def _check_driver_node() -> None:
        me = ray.get_runtime_context().get_node_id()
        if not any(n["NodeID"] == me and n["Alive"] for n in ray.nodes()):
            raise RuntimeError(
                "this driver's Ray node died (its raylet is gone), so no worker can be "
                "reached; the checkpoints are intact: continue with --resume"
            )

    def _rebalance(self) -> None:
        """Gives each shard without a worker to the live worker with the fewest, then moves
        shards not in flight from the most loaded workers to the least loaded until their
        counts differ by at most one."""
        if not self.live:
            return
        load = {i: [s for s, h in self.host.items() if h == i] for i in sorted(self.live)}
        for shard, host in self.host.items():
            if host is None:
                least = min(load, key=lambda i: len(load[i]))
                self.host[shard] = least
                load[least].append(shard)
        busy = {s for s, *_ in self._inflight.values()}
        while True:
            most = max(load, key=lambda i: len(load[i]))
            least = min(load, key=lambda i: len(load[i]))
            idle = [s for s in load[most] if s not in busy]
            if len(load[most]) - len(load[least]) <= 1 or not idle:
                return
            load[most].remove(idle[-1])
            load[least].append(idle[-1])
            self.host[idle[-1]] = least

    def _check_floor(self) -> None:
        if len(self.live) >= self.min_workers:
            self._short_since = None
            return
        now = time.monotonic()
        self._short_since = self._short_since or now
        hopeless = len(self.workers) - len(self._retired) < self.min_workers
        if hopeless or now - self._short_since > self.startup_timeout:
            why = "too many are retired" if hopeless else f"for {self.startup_timeout:g} s"
            raise RuntimeError(
                f"{len(self.live)} of {len(self.workers)} Ray workers are live, fewer than "
                f"distributed.min_workers ({self.min_workers}), {why} (see the Ray logs, e.g. "
                f"/tmp/ray/session_latest/logs); last error: {_first_line(self._last_error)}"
            ) from self._last_error

    # -- the estimate source ----------------------------------------------------------------

    def place(self, tree: Any) -> Any:
        return tree  # published to the workers by value or through the object store

    def template(self, step: int, theta: lopt.Theta) -> dict[str, Any]:
        return {}  # a restored run starts each shard's population afresh

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {"windows": [self.windows[s] for s in self.shards]}

    def restore(self, step: int, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        """Continues each shard after its saved count of completed windows (shards beyond
        the saved list start at 0; a list of one count per slice gives every stream's)."""
        saved = list(meta["windows"])
        parts = max(s.part for s in self.shards) + 1
        if self.sliced and len(saved) == parts < len(self.shards):
            saved = [saved[s.part] for s in self.shards]
        for shard, windows in zip(self.shards, saved, strict=False):
            self.windows[shard] = windows

    def info(self) -> dict[str, Any]:
        return {
            "workers_live": len(self.live),
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
        """Rebalances, then sends the current theta for every idle shard, those with the fewest completed
        windows first; with ``max_staleness`` 0, only as many as this step still needs (a
        request beyond that would come back stale)."""
        self._rebalance()
        busy = {s for s, *_ in self._inflight.values()}
        pending = sum(v == self._version for _, v, *_ in self._inflight.values())
        hosted: dict[int, frozenset[Shard]] = {
            i: frozenset(s for s, h in self.host.items() if h == i) for i in self.live
        }
        streams = len({s.stream for s in self.shards})

        def order(s: Shard) -> tuple[int, int, int]:  # at equal counts, slice p of stream
            return (self.windows[s], (s.stream - 1 - s.part) % streams, s.part)  # p + 1 first

        for shard in sorted(self.shards, key=order):
            i = self.host[shard]
            if shard in busy or i is None:
                continue
            if self.max_staleness == 0 and fresh + pending >= self.per_step:
                return
            ref = self.workers[i].estimate.remote(
                self._theta, self._version, shard, self.windows[shard], hosted[i]
            )
            self._inflight[ref] = (shard, self._version, i, self.live[i])
            pending += 1

    def _poll(self, timeout: float) -> list[tuple[Shard, Estimate]]:
        """Waits at most ``timeout`` seconds for one answer (an estimate, or an absent
        worker's) and handles it; the estimate that arrived, if one did."""
        now = time.monotonic()
        for i, at in list(self._ask_at.items()):
            if at <= now:
                self._ask(i)
        refs = [*self._inflight, *self._joining]
        if not refs:
            time.sleep(timeout)
            return []
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return []
        (ref,) = ready
        if ref in self._joining:
            self._joined(self._joining.pop(ref), ref)
            return []
        shard, _, i, process = self._inflight.pop(ref)
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # its process died: sent again elsewhere
            self.lost += 1
            if self.live.get(i) == process:  # not yet seen leaving
                self._left(i, e)
            return []
        self._failures[i] = 0
        if i in self.live:  # a new process if Ray restarted it between two requests
            self._seen(i, (answer.metrics.host, answer.metrics.pid))
        return [(shard, answer)]

    def collect(self) -> list[Estimate]:
        """Estimates until ``per_step`` answers are fresh enough for the current version;
        with ``partition: particles``, each stream's slices merged, in stream order. Each
        wait is at most a second, between checks of membership and of the floor."""
        self._precompile_ahead()
        out, fresh = [], 0
        while fresh < self.per_step:
            self._check_floor()
            self._submit_idle(fresh)
            for shard, estimate in self._poll(1.0):
                self.windows[shard] += 1
                out.append(estimate)
                fresh += self._version - estimate.version <= self.max_staleness
        if not self.sliced:
            return out
        streams = sorted({e.metrics.stream for e in out})
        return [merge([e for e in out if e.metrics.stream == s]) for s in streams]

    def _precompile_ahead(self) -> None:
        """Keeps the precompiler busy with one period at a time: the earliest one, over
        every stream, that none of its shards has begun (none at or past ``num_steps``;
        without ``num_steps``, only the period after each stream's current one). A failure
        is a warning, and the workers compile every period themselves from then on."""
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
        for stream in sorted({s.stream for s in self.shards}):
            window = min(w for s, w in self.windows.items() if s.stream == stream)
            following = (window // R + 1) * R  # the first window of the next period
            start = max(following, self._ahead.get(stream, 0) + R)
            if start < (self.num_steps or following + 1):
                todo.append((start, stream))
        if todo:
            start, stream = min(todo)
            self._precompiling = self.precompiler.prepare.remote(stream, start), (stream, start)
        else:
            self._precompiling = None

    def close(self) -> None:
        for w in [*self.workers, *([self.precompiler] if self.precompiler else [])]:
            with contextlib.suppress(Exception):
                ray.kill(w)


def _first_line(error: Exception | None) -> str:
    return str(error).strip().splitlines()[0] if error is not None else "none"
