"""Test-wide settings."""

import os

# Command-line entry points called in-process (bench's main) turn JAX's persistent
# compilation cache on; tests keep it off unless a test sets its own directory.
os.environ.setdefault("LOPT_COMPILATION_CACHE", "off")

# The suite's time is mostly XLA compiling small programs, most of that LLVM optimizing
# them: LLVM level 1 (XLA's default is 3) compiles them in about half the time, at the same
# results (meta_train.compile_cache.COMPILER_OPTIONS, used for meta-training, is the same
# setting). Set before JAX starts its backend; subprocesses and Ray workers inherit it.
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=1"]
).strip()
