"""Meta-training: truncated unrolls, gradient estimators, the learner and the trainer.

    from meta_train import MetaTrainConfig, meta_train
    result = meta_train(MetaTrainConfig(...))   # final theta, history, checkpoint dir, export

or ``python -m meta_train --config smoke [--workers N] [--ray-address ADDR]
[section.field=value ...]``. With workers, estimates come from Ray actors
(``meta_train.distributed``) on a local Ray instance or the cluster at the address.
"""

import os

# A local Ray instance stays on loopback: Ray reads this when it is imported, and without it
# binds the machine's network interface (``distributed.ray_session`` also gives the node
# 127.0.0.1). A cluster across machines sets it to 1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# XLA's CPU runtime wedges for good (0% CPU, no error) on some meta-training programs while
# its concurrency-optimized scheduler is on (jaxlib 0.10.2: an LSTM language model under a
# Muon-based learned optimizer stalled within two windows in 5 of 5 runs; with it off, 4 of 4
# ran 30 windows; other flags did not help: ``meta_train.watchdog``). JAX reads XLA_FLAGS when
# it creates its CPU backend, so it is turned off here, before that, unless XLA_FLAGS names
# it already; processes that import this package (Ray workers too) inherit it.
SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
if SCHEDULER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SCHEDULER_FLAG}=false".strip()

from meta_train.config import (
    ConfigError,
    DistributedConfig,
    EstimatorConfig,
    MetaTrainConfig,
    OptimizerConfig,
    OuterConfig,
    TaskConfig,
)
from meta_train.config_io import load_config
from meta_train.estimators import ESTIMATORS, NRES, PES, FullES, TruncatedBPTT, TruncatedES
from meta_train.learner import Learner, LearnerState, initial_theta
from meta_train.stream import EstimateStream, build_estimator
from meta_train.trainer import MetaTrainResult, meta_train
from meta_train.unroll import MetaLoss, Population, TruncationSchedule, Unroller
from meta_train.validation import ValidationConfig, Validator

__all__ = [
    "ESTIMATORS",
    "NRES",
    "PES",
    "ConfigError",
    "DistributedConfig",
    "EstimateStream",
    "EstimatorConfig",
    "FullES",
    "Learner",
    "LearnerState",
    "MetaLoss",
    "MetaTrainConfig",
    "MetaTrainResult",
    "OptimizerConfig",
    "OuterConfig",
    "Population",
    "TaskConfig",
    "TruncatedBPTT",
    "TruncatedES",
    "TruncationSchedule",
    "Unroller",
    "ValidationConfig",
    "Validator",
    "build_estimator",
    "initial_theta",
    "load_config",
    "meta_train",
]
