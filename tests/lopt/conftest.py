import jax
import jax.numpy as jnp
import pytest

import lopt

ARCHITECTURES = {
    "mlp": lopt.MLPLOpt(hidden=(4, 4)),  # the defaults: matrix-aware, nominal, scheduled
    "mlp-bare": lopt.MLPLOpt.bare(hidden=(4, 4)),
    "mlp-normalized-scheduled": lopt.MLPLOpt(
        hidden=(4, 4), nominal=True, step_mode="normalized", schedule=True
    ),
    "velo": lopt.VeLO(lstm_hidden=8, bank_size=3),
    "hyper-adam": lopt.HyperAdam(lr=1e-2),
    "schedule-muon": lopt.LearnedSchedule(base="muon", lr=1e-2),
}


@pytest.fixture(scope="session", params=sorted(ARCHITECTURES))
def arch(request):
    """(name, architecture, theta, transform) -- one transform per architecture per session,
    so each update function compiles once per parameter signature."""
    lo = ARCHITECTURES[request.param]
    theta = lo.init(jax.random.key(0))
    return request.param, lo, theta, lo.as_optax(theta, num_steps=100)


def odd_params():
    """Mixed ranks, containers and dtypes, including a zero-size and a bfloat16 leaf."""
    k = jax.random.split(jax.random.key(1), 5)
    return {
        "scalar": jnp.asarray(0.5),
        "vector": jax.random.normal(k[0], (7,)),
        "matrix": jax.random.normal(k[1], (5, 3)),
        "conv": jax.random.normal(k[2], (3, 3, 2, 4)),
        "empty": jnp.zeros((0, 4)),
        "half": [jax.random.normal(k[3], (6,)).astype(jnp.bfloat16)],
        "nested": ({"w": jax.random.normal(k[4], (2, 1))},),
    }


def grads_like(params, seed=2):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves, strict=True)]
    )
