"""JAX's persistent compilation cache, on for the command-line entry points by default.

Meta-training compiles one estimator per task structure and the benchmark one program per
optimizer and task; with the cache on, a program compiled by one run is read back from disk
by the next (a re-run of ``make demo``, a resumed run, a second benchmark). The directory is
``$LOPT_COMPILATION_CACHE``, else ``$XDG_CACHE_HOME/lopt/jax`` (``~/.cache/lopt/jax``);
``LOPT_COMPILATION_CACHE=off`` turns it off. Library calls (``meta_train.meta_train``,
``bench.compare.compare``) leave JAX's configuration alone: call :func:`enable` to opt in.

On the CPU, XLA fits a program to the number of cores its compiling process may run on,
and the cache key does not record that number: a worker pinned to one core runs a program
compiled by a process on two more slowly (the precompiler's trade,
``meta_train.distributed.Precompiler``; docs/performance.md, "Compiling ahead").

:func:`seconds_compiling` is how long this process has spent obtaining compiled programs
(tracing, lowering, and compiling or reading the cache), from JAX's monitoring events: the
trainer records its share of each outer step as ``compile_seconds``.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV = "LOPT_COMPILATION_CACHE"

# LLVM's optimization level in XLA's backend (default 3); XLA's own passes (fusion, layout)
# are unaffected. On the CPU most of a meta-training window's compile time is LLVM
# optimizing the fused loops: at level 1 a window compiles in 0.2-0.6x the time and runs at
# 0.8-1.2x on MLP tasks, 1.1-1.3x on a convolutional one (``python -m bench perf compile``
# measures both levels in one run); level 0 compiles faster still but runs ~3x slower.
COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
OFF = ("", "0", "off", "false", "none")


def directory() -> pathlib.Path | None:
    """The cache directory the environment asks for, or ``None`` when it is turned off."""
    setting = os.environ.get(ENV)
    if setting is None:
        base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        return pathlib.Path(base) / "lopt" / "jax"
    if setting.strip().lower() in OFF:
        return None
    return pathlib.Path(setting).expanduser()


def enable(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turns the persistent cache on in ``path`` (default: :func:`directory`) for every
    compilation of at least half a second; returns the directory, or ``None`` when it is
    off or cannot be created (then programs are compiled as usual)."""
    path = pathlib.Path(path) if path is not None else directory()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    os.environ[ENV] = str(path)  # Ray workers started from here inherit it
    return path


# JAX's duration events of the three stages between a Python function and an executable.
_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)
_compiling = [0.0]  # seconds, this process, since this module was imported


def _on_duration(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _compiling[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def seconds_compiling() -> float:
    """Seconds this process has spent tracing, lowering and compiling programs (or reading
    them from the persistent cache) since ``meta_train`` was imported."""
    return _compiling[0]


def worker_env() -> dict[str, str]:
    """The environment variables that give a worker process (e.g. a Ray actor, which may
    start on another host or under an already running Ray) this process's cache: ``{}``
    when it is off here."""
    return {ENV: os.environ[ENV]} if os.environ.get(ENV) else {}


def inherit() -> pathlib.Path | None:
    """In a worker process: turns the cache on where :func:`worker_env` of its driver says,
    if it said anything (a driver with the cache off leaves its workers' JAX alone)."""
    return enable() if os.environ.get(ENV) else None
