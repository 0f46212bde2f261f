"""Task periods compiled ahead: ``EstimateStream.prepare`` compiles exactly the programs a
stream later runs, and the worker pool's precompiler walks the periods in order."""

import jax
import pytest
import ray

from meta_train import load_config
from meta_train.distributed import WorkerPool, ray_session
from meta_train.learner import initial_theta
from meta_train.stream import EstimateStream, StreamSpec

# HyperAdam on a quadratic re-augmented every 2 windows: a new program per period, cheap.
PERIODIC = [
    "optimizer.architecture=HyperAdam",
    "optimizer.hparams={lr: 0.001}",
    "task.name=quadratic",
    "task.family=null",
    "task.augment={loss_scale: [0.5, 2]}",
    "task.resample_every=2",
    "estimator.num_particles=4",
    "estimator.window=5",
    "estimator.schedule={kind: constant, min_length: 20, max_length: 20}",
]


@pytest.fixture
def cache_every_program():
    """The persistent cache keeps every program, however fast it compiled, and the
    in-memory caches start empty; yields ``(seen, recording)``: the names of the cache
    events seen while ``recording[0]`` is true."""
    minimum = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.clear_caches()
    seen, recording = [], [False]
    jax.monitoring.register_event_listener(
        lambda event, **_: seen.append(event) if recording[0] and "cache_" in event else None
    )
    yield seen, recording
    recording[0] = False
    jax.config.update("jax_persistent_cache_min_compile_time_secs", minimum)


def test_a_prepared_period_runs_from_the_persistent_cache(cache_every_program):
    seen, recording = cache_every_program
    cfg = load_config(None, PERIODIC)
    spec = StreamSpec.of(cfg)
    theta = jax.device_get(initial_theta(cfg.optimizer.build(), cfg.seed))
    EstimateStream(spec, stream=1).prepare(2, theta)  # the second period
    jax.clear_caches()  # as in another process: only the persistent cache is shared
    stream = EstimateStream(spec, stream=1)
    recording[0] = True
    stream.estimate(theta, 2)
    prepared = list(seen)
    seen.clear()
    stream.estimate(theta, 4)  # the third period, not prepared
    recording[0] = False
    hits = "/jax/compilation_cache/cache_hits"
    misses = "/jax/compilation_cache/cache_misses"
    assert prepared.count(hits) >= 2 and misses not in prepared  # init and estimate
    assert misses in seen  # the check can fail: an unprepared period compiles


def test_the_pool_compiles_each_streams_next_periods_in_order(tmp_path):
    """Two local workers, 6 windows of periods of 2: the precompiler is asked for windows
    2 and 4 of both streams, earliest first, never for 6 (past the run), and finishes each."""
    cfg = load_config(None, [*PERIODIC, "distributed.workers=2", f"run_dir={tmp_path}"])
    theta = jax.device_get(initial_theta(cfg.optimizer.build(), cfg.seed))
    asked = []
    with ray_session(cfg.distributed, verbose=False):
        pool = WorkerPool(StreamSpec.of(cfg), cfg.distributed, 0, verbose=False, num_steps=6)
        try:
            assert pool.precompiler is not None
            pool.publish(theta, 0)
            for _ in range(6):
                pool.collect()
                if pool._precompiling is not None:  # wait, so the order is deterministic
                    ref, job = pool._precompiling
                    asked.append(job)
                    ray.get(ref)
            assert pool.info()["precompiled"] == 4
        finally:
            pool.close()
    assert asked == [(1, 2), (2, 2), (1, 4), (2, 4)]  # (stream, first window of a period)
