"""The process environment meta-training needs, set when ``meta_train`` is imported,
before JAX creates its CPU backend and before Ray starts (both read it once, then).

- ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: a local Ray instance stays on loopback; without it
  Ray binds the machine's network interface (``distributed.ray_session`` also gives the
  node 127.0.0.1). A cluster across machines sets it to 1.
- ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` in ``XLA_FLAGS``: with XLA's
  concurrency-optimized CPU scheduler on (jaxlib 0.10.2), an LSTM language model under a
  Muon-based learned optimizer stalled for good at 0% CPU within two windows in 5 of 5 runs;
  with it off, 4 of 4 ran 30 windows (``meta_train.watchdog``; docs/architecture.md). Given
  as a compile option instead it did not help: it is read from ``XLA_FLAGS`` only.

Each is left as it is when the environment already sets it. Processes started from this one
(Ray workers, subprocesses) inherit both; a process that ran JAX before importing
``meta_train`` must set the flag itself.
"""

import os

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
if SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SCHEDULER_FLAG}=false".strip()
