"""`pip install lopt` (jax, optax, numpy) is enough to train with a pretrained optimizer: in a
process where the extras' packages cannot be imported, lopt loads and trains."""

import subprocess
import sys
import textwrap

EXTRAS = ("flax", "orbax", "ray", "sklearn", "matplotlib", "yaml", "tqdm", "tasks", "meta_train")


def test_lopt_needs_only_jax_optax_and_numpy():
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {EXTRAS!r}:
                    raise ImportError(f"{{name}} is not installed")

        sys.meta_path.insert(0, Absent())
        import jax, jax.numpy as jnp, optax, lopt

        x = jax.random.normal(jax.random.key(1), (64, 8))
        y = x @ jax.random.normal(jax.random.key(0), (8, 2))
        loss_fn = lambda p: jnp.mean((x @ p["w"] + p["b"] - y) ** 2)
        params = {{"w": jnp.zeros((8, 2)), "b": jnp.zeros(2)}}
        tx = lopt.pretrained("mlplopt-mix", num_steps=200)
        state = tx.init(params)

        @jax.jit
        def step(p, s):
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = tx.update(g, s, p, value=loss)
            return optax.apply_updates(p, u), s

        first = loss_fn(params)
        for _ in range(200):
            params, state = step(params, state)
        assert loss_fn(params) < 0.1 * first, (first, loss_fn(params))
        try:
            lopt.VeLO().init(jax.random.key(0))
        except ImportError as e:
            assert "pip install flax" in str(e)
        else:
            raise AssertionError("VeLO without flax")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
