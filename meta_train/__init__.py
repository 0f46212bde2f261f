"""Meta-training: truncated unrolls, gradient estimators, the learner and the trainer.

    from meta_train import MetaTrainConfig, meta_train
    result = meta_train(MetaTrainConfig(...))   # final theta, history, checkpoint dir, export

or ``python -m meta_train --config smoke [--workers N] [--ray-address ADDR]
[section.field=value ...]``. With workers, estimates come from Ray actors
(``meta_train.distributed``) on a local Ray instance or the cluster at the address.
"""

import importlib

from meta_train import environment  # noqa: F401  first: sets the environment JAX and Ray read

# The public names and the module of each, imported on first use (PEP 562), so that a light
# submodule (compile_cache, metrics_log) imported alone, as the benchmark's runner imports
# the compiler options, does not load the trainer, Ray and orbax.
_EXPORTS = {
    **dict.fromkeys(
        (
            "ConfigError",
            "DistributedConfig",
            "EstimatorConfig",
            "MetaTrainConfig",
            "OptimizerConfig",
            "OuterConfig",
            "TaskConfig",
        ),
        "config",
    ),
    **dict.fromkeys(("load_config",), "config_io"),
    **dict.fromkeys(
        ("ESTIMATORS", "FullES", "NRES", "PES", "TruncatedBPTT", "TruncatedES"), "estimators"
    ),
    **dict.fromkeys(("Learner", "LearnerState", "initial_theta"), "learner"),
    **dict.fromkeys(("EstimateStream", "build_estimator"), "stream"),
    **dict.fromkeys(("MetaTrainResult", "meta_train"), "trainer"),
    **dict.fromkeys(("MetaLoss", "Population", "TruncationSchedule", "Unroller"), "unroll"),
    **dict.fromkeys(("ValidationConfig", "Validator"), "validation"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'meta_train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"meta_train.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
