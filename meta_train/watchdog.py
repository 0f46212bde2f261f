"""A watchdog for computations that can stop for good without an error.

XLA's CPU runtime has been seen to wedge: the main thread waits forever on a buffer while
every XLA thread sits idle, at 0% CPU, with no error and no timeout. A wedged process cannot
be resumed from inside (the waiting thread never returns to Python), so the watchdog's job
is to notice and to end it cleanly, with one line saying what stopped.

    with Watchdog(stall_timeout=120, on_stall=report_and_exit) as dog:
        with dog.watch("the estimate of window 175 on char-lm/..."):
            grad = jax.device_get(estimator.estimate(...))

A watched computation is *stalled* when the process has used less than ``min_cpu`` (a
fraction of one core) over the last ``stall_timeout`` seconds of it. Idle CPU, not elapsed
time, is the signal: compiling a new task structure or a slow window keeps a core busy and is
never mistaken for a wedge, however long it takes, and a wedge is caught within
``stall_timeout`` plus one ``poll`` whatever the run's usual pace.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator


def cpu_seconds() -> float:
    """CPU time used by this process so far (user + system, all threads)."""
    t = os.times()
    return t.user + t.system


class Watchdog:
    """Calls ``on_stall(label, seconds)`` once, from its own thread, when the computation
    watched under ``label`` stalls (see the module docstring); ``seconds`` is the stalled
    time. ``on_stall`` usually ends the process: the stalled thread cannot be woken."""

    def __init__(
        self,
        stall_timeout: float,
        on_stall: Callable[[str, float], None],
        min_cpu: float = 0.05,
        poll: float = 1.0,
        cpu: Callable[[], float] = cpu_seconds,
    ):
        if stall_timeout <= 0 or poll <= 0:
            raise ValueError(f"stall_timeout and poll must be > 0, got {stall_timeout}, {poll}")
        self.stall_timeout, self.on_stall = stall_timeout, on_stall
        self.min_cpu, self.poll, self.cpu = min_cpu, poll, cpu
        self._label: str | None = None
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lopt-watchdog", daemon=True)

    def start(self) -> Watchdog:
        """Starts watching (its thread lives until ``__exit__`` or the process ends)."""
        self._thread.start()
        return self

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @contextlib.contextmanager
    def watch(self, label: str) -> Iterator[None]:
        """Watches the body of the ``with`` block, named ``label`` in the report."""
        with self._lock:
            self._label = label
            self._samples.clear()
        try:
            yield
        finally:
            with self._lock:
                self._label = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            with self._lock:
                label = self._label
                if label is None:
                    continue
                now, used = time.monotonic(), self.cpu()
                self._samples.append((now, used))
                # the oldest sample at least stall_timeout old is the window's start
                while len(self._samples) > 1 and now - self._samples[1][0] >= self.stall_timeout:
                    self._samples.popleft()
                since, used_then = self._samples[0]
                stalled = now - since >= self.stall_timeout and used - used_then < self.min_cpu * (
                    now - since
                )
            if stalled:
                self.on_stall(label, now - since)
                return
