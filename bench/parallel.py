"""A benchmark's independent units of work (one optimizer on one task, say) on Ray workers of
one core each.

    for i, result in parallel.imap_unordered(fn, items, workers=2):
        ...

Each worker is a Ray actor; a CPU-only actor pins itself to one core no other pinned
worker of this user holds (:func:`meta_train.distributed.pin_to_free_cores`), so that XLA's
thread pools of two workers do not fight over the same cores. Results come back as they
finish, each with its item's index. ``address`` is that of a Ray cluster, or ``None`` for
a local instance started and stopped here (an already initialized Ray is used as it is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from meta_train import compile_cache
from meta_train.config import DistributedConfig
from meta_train.distributed import pin_to_free_cores, ray_session


class _Runner:
    """The actor behind each worker: pinned to a free core, with the driver's persistent
    compilation cache, calling whatever function it is given."""

    def __init__(self):
        self.pinned = pin_to_free_cores(1)
        compile_cache.inherit()

    def call(self, fn: Callable[[Any], Any], index: int, item: Any) -> tuple[int, Any]:
        return index, fn(item)


def imap_unordered(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    workers: int,
    address: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(i, fn(items[i]))`` for every item, in the order they finish, computed by
    ``workers`` Ray actors of one CPU each. ``fn`` and the items travel by cloudpickle, so
    closures and lambdas are fine. An exception raised by ``fn`` is raised here as it was;
    a worker that dies is a ``RuntimeError``."""
    import ray
    from ray.util import ActorPool

    dist = DistributedConfig(workers=workers, address=address)  # checks workers and address
    with ray_session(dist, verbose=False):
        env = compile_cache.worker_env()
        actor = ray.remote(num_cpus=1)(_Runner).options(
            runtime_env={"env_vars": env} if env else None
        )
        runners = [actor.remote() for _ in range(min(workers, len(items)))]
        try:
            pool = ActorPool(runners)
            for i, item in enumerate(items):
                pool.submit(lambda a, job: a.call.remote(fn, *job), (i, item))
            while pool.has_next():
                try:
                    yield pool.get_next_unordered()
                except ray.exceptions.RayTaskError as e:  # fn raised: raise that, not Ray's
                    raise e.cause from None
                except ray.exceptions.RayActorError as e:
                    raise RuntimeError(
                        f"a Ray worker died ({e}); see the Ray logs, e.g. "
                        "/tmp/ray/session_latest/logs"
                    ) from e
        finally:
            for r in runners:
                ray.kill(r)
