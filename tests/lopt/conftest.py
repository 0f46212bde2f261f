import jax
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
    "learned-muon": lopt.LearnedMuon(controller_hidden=4, term="momentum"),
}


@pytest.fixture(scope="session", params=sorted(ARCHITECTURES))
def arch(request):
    """(name, architecture, theta, transform) -- one transform per architecture per session,
    so each update function compiles once per parameter signature."""
    lo = ARCHITECTURES[request.param]
    theta = lo.init(jax.random.key(0))
    return request.param, lo, theta, lo.as_optax(theta, num_steps=100)
