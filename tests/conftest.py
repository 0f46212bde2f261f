"""Test-wide settings."""

import os

from meta_train.compile_cache import COMPILER_OPTIONS

# Command-line entry points called in-process (bench's main) turn JAX's persistent
# compilation cache on; tests keep it off unless a test sets its own directory.
os.environ.setdefault("LOPT_COMPILATION_CACHE", "off")

# The suite's time is mostly XLA compiling small programs: every program compiles with the
# options meta-training's own programs use (LLVM level 1; XLA's default is 3), through
# XLA_FLAGS, set before JAX starts its backend and inherited by subprocesses and Ray workers.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), *(f"--{k}={v}" for k, v in COMPILER_OPTIONS.items())]
).strip()
