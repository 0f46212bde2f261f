"""Meta-training: truncated unrolls, gradient estimators, the learner and the trainer.

    from meta_train import MetaTrainConfig, meta_train
    result = meta_train(MetaTrainConfig(...))   # final theta, history, checkpoint dir, export

or ``python -m meta_train --config smoke [--workers N] [--ray-address ADDR]
[section.field=value ...]``. With workers, estimates come from Ray actors
(``meta_train.distributed``) on a local Ray instance or the cluster at the address.
"""

from meta_train import environment  # noqa: F401  first: sets the environment JAX and Ray read
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
