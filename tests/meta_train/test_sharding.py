"""The population sharded over 4 simulated CPU devices gives the single-device estimate."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    assert jax.local_device_count() == 4, jax.devices()
    import lopt, tasks
    from meta_train import NRES, PES, MetaLoss, TruncationSchedule, Unroller

    lo = lopt.MLPLOpt.bare(hidden=(2,))
    unroller = Unroller(tasks.get("quadratic"), lo, TruncationSchedule("loguniform", 5, 15), MetaLoss(), window=4)
    theta = lo.init(jax.random.key(0))
    for cls in (NRES, PES):
        est = cls(unroller, num_particles=8, sigma=0.03)
        plain = est.init(jax.random.PRNGKey(0), theta)
        sharded = est.shard(plain)
        assert len(sharded.pop.params["x"].sharding.device_set) == 4
        for step in range(3):  # several windows, so resets and carried state are covered
            key = jax.random.PRNGKey(10 + step)
            g1, plain, _ = est.estimate(theta, plain, key)
            g2, sharded, _ = est.estimate(theta, sharded, key)
            for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert len(sharded.pop.params["x"].sharding.device_set) == 4  # stays distributed
    try:
        NRES(unroller, num_particles=6).shard(plain)
    except ValueError as e:
        assert "does not split evenly over 4 devices" in str(e)
    else:
        raise AssertionError("uneven split accepted")
    # The trainer shards by default; one device gives the same theta.
    from meta_train import load_config, meta_train
    import tempfile
    tiny = ["optimizer.hparams={hidden: [2]}", "task.name=quadratic", "task.family=null",
            "estimator.num_particles=4", "estimator.window=4", "num_steps=3",
            "estimator.schedule={min_length: 5, max_length: 15}"]
    with tempfile.TemporaryDirectory() as d:
        many = meta_train(load_config(None, [*tiny, f"run_dir={d}/many"]), verbose=False)
        one = meta_train(load_config(None, [*tiny, f"run_dir={d}/one"]), verbose=False, devices=jax.local_devices()[:1])
    for a, b in zip(jax.tree.leaves(many.theta), jax.tree.leaves(one.theta), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert [r.devices for r in many.history] == [[4]] * 3
    assert [r.devices for r in one.history] == [[1]] * 3
    print("OK")
    """
)


def test_sharded_estimate_matches_single_device():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("OK"), out.stderr[-3000:]
