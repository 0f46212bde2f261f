"""Test-wide settings."""

import os
import signal

import pytest

from meta_train import compile_cache
from meta_train.compile_cache import COMPILER_OPTIONS

# The suite's time is mostly XLA compiling small programs: every program compiles with the
# options meta-training's own programs use (LLVM level 1; XLA's default is 3), through
# XLA_FLAGS, set before JAX starts its backend and inherited by subprocesses and Ray workers.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), *(f"--{k}={v}" for k, v in COMPILER_OPTIONS.items())]
).strip()

# Tests interrupt the drivers they start with SIGINT, as Ctrl-C does. A shell that starts the
# suite in the background (`make test &` in a script) ignores SIGINT for it, and an ignored
# signal stays ignored in every child: Python would then install no KeyboardInterrupt
# handler and the drivers would run on. A handled signal is reset to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory, worker_id):
    """One persistent compilation cache per test session, shared by the xdist workers and
    every process they start (subprocesses and Ray workers inherit it through the
    environment): a program compiled by one test (a run; its resumed run; a killed and
    restarted worker or driver) is read back by the next. It lives in the session's base
    temporary directory, which pytest removes a few sessions later; a test of the cache
    itself sets its own directory."""
    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each xdist worker's base lies inside the session's
        base = base.parent
    return compile_cache.enable(base / "jax-cache")
