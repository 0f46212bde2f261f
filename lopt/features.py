"""Optimizer memory and input features shared by every per-parameter learned optimizer.

For one parameter tensor ``p`` with gradient ``g`` (both of shape ``S``) the memory is

* ``momenta[k] ← β_k · momenta[k] + (1 − β_k) · g`` for ``β ∈ MOMENTUM_DECAYS`` (``[K, *S]``),
* ``rms ← β₂ · rms + (1 − β₂) · g²`` (``S``),

both float32 whatever the parameter dtype. For ``ndim ≥ 2`` the features also use Adafactor's
factored second moment over the last two axes, ``row = mean_{-1}(v)``, ``col = mean_{-2}(v)``,
``v_fac = row ⊗ col / mean(row)``; since the EMA is linear, ``row`` and ``col`` equal the EMAs
of ``mean(g²)`` that Adafactor keeps, so they need no memory of their own. From it come :data:`NUM_FEATURES` per-parameter
features, each dimensionless (invariant to rescaling the loss) and clipped to
``±FEATURE_CLIP``, and per-tensor scalar features of time and loss.

Everything is elementwise or a per-tensor mean, so XLA fuses a tensor's features into a few
loops over memory -- no ``[N, F]`` array is ever materialized.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAY = 0.999
EPS = 1e-8
FEATURE_CLIP = 10.0
# tanh(t / x): how far into training, on scales from one step to 10^5 steps.
TIME_SCALES = (1, 3, 10, 30, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)
# tanh(10 · (t / T − τ)): fraction of the horizon T passed, around these thresholds.
FRACTION_THRESHOLDS = (0.03, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LOSS_DECAYS = (0.9, 0.99, 0.999)

NUM_GLOBAL_FEATURES = len(TIME_SCALES) + len(FRACTION_THRESHOLDS)
NUM_LOSS_FEATURES = len(LOSS_DECAYS)
FEATURE_NAMES = (
    "g/s",
    *(f"m{b}/s" for b in MOMENTUM_DECAYS),
    "p/rms(p)",
    "g/sqrt(v)",
    *(f"m{b}/sqrt(v)" for b in MOMENTUM_DECAYS),
    "s/sqrt(v)",
    "g/sqrt(v_factored)",
    f"m{MOMENTUM_DECAYS[0]}/sqrt(v_factored)",
)
NUM_FEATURES = len(FEATURE_NAMES)


class Accumulators(NamedTuple):
    """A tensor's optimizer memory; see the module docstring."""

    momenta: jax.Array  # [K, *S]
    rms: jax.Array  # S


def factored(shape: tuple[int, ...]) -> bool:
    return len(shape) >= 2


def init_accumulators(p: jax.Array) -> Accumulators:
    zeros = lambda s: jnp.zeros(s, jnp.float32)
    return Accumulators(zeros((len(MOMENTUM_DECAYS), *p.shape)), zeros(p.shape))


def _ema(old, new, decay):
    return decay * old + (1.0 - decay) * new


def _mean(x: jax.Array, axis=None) -> jax.Array:
    """Mean that is 0, not NaN, over empty axes (zero-size tensors)."""
    n = x.size if axis is None else x.shape[axis]
    return jnp.sum(x, axis=axis) / max(n, 1)


def update_accumulators(
    acc: Accumulators, g: jax.Array, skip: jax.Array | bool = False
) -> Accumulators:
    """One step of every EMA with the float32 gradient ``g`` (none if ``skip``)."""
    betas = jnp.asarray(MOMENTUM_DECAYS, jnp.float32).reshape((-1,) + (1,) * g.ndim)
    momenta = _ema(acc.momenta, g[None], betas)
    rms = _ema(acc.rms, g * g, RMS_DECAY)
    return Accumulators(jnp.where(skip, acc.momenta, momenta), jnp.where(skip, acc.rms, rms))


def _debias(decay: float, count: jax.Array) -> jax.Array:
    """``1 / (1 − decay^count)``: corrects an EMA started at zero (``expm1`` keeps it accurate
    in float32 when ``decay^count`` is close to 1)."""
    return -1.0 / jnp.expm1(count.astype(jnp.float32) * math.log(decay))


class TensorStats(NamedTuple):
    """Per-tensor reductions of the updated memory, computed before the per-parameter pass."""

    mean_v: jax.Array  # mean of the debiased second moment v: s² with s the gradient scale
    mean_p2: jax.Array  # mean of p²
    mean_m2: jax.Array  # [K] mean of the debiased momenta squared (XLA drops it if unused)
    row: jax.Array  # mean_{-1}(v) for factored tensors, else shape (0,)
    col: jax.Array  # mean_{-2}(v) for factored tensors, else shape (0,)


def tensor_stats(acc: Accumulators, p: jax.Array, count: jax.Array) -> TensorStats:
    """Reductions of the memory after ``count`` updates."""
    debias = _debias(RMS_DECAY, count)  # applied after reducing: the reductions read acc.rms
    if factored(p.shape):
        row, col = _mean(acc.rms, -1) * debias, _mean(acc.rms, -2) * debias
        mean_v = _mean(row)
    else:
        row, col = jnp.zeros((0,)), jnp.zeros((0,))
        mean_v = _mean(acc.rms) * debias
    m_debias = jnp.stack([_debias(b, count) for b in MOMENTUM_DECAYS])
    mean_m2 = jax.vmap(lambda m: _mean(m * m))(acc.momenta) * m_debias**2
    return TensorStats(mean_v, _mean(p * p), mean_m2, row, col)


def parameter_features(
    acc: Accumulators, g: jax.Array, p: jax.Array, count: jax.Array, stats: TensorStats
) -> list[jax.Array]:
    """The :data:`FEATURE_NAMES` features of one tensor: ``NUM_FEATURES`` arrays shaped like ``p``.

    ``count`` is the number of updates folded into ``acc`` (>= 1); ``s = sqrt(mean(v))``
    is the tensor's gradient scale and ``v`` the debiased second moment.
    """
    v = acc.rms * _debias(RMS_DECAY, count)
    m = [acc.momenta[k] * _debias(b, count) for k, b in enumerate(MOMENTUM_DECAYS)]
    inv_s = jax.lax.rsqrt(stats.mean_v + EPS**2)
    inv_rms_p = 1.0 / (jnp.sqrt(stats.mean_p2) + EPS)
    inv_sqrt_v = 1.0 / (jnp.sqrt(v) + EPS)
    if factored(p.shape):
        row_mean = _mean(stats.row, -1)[..., None, None]
        v_fac = stats.row[..., :, None] * stats.col[..., None, :] / (row_mean + EPS**2)
        inv_sqrt_vf = 1.0 / (jnp.sqrt(v_fac) + EPS)
    else:
        inv_sqrt_vf = inv_sqrt_v
    feats = [
        g * inv_s,
        *(mk * inv_s for mk in m),
        p * inv_rms_p,
        g * inv_sqrt_v,
        *(mk * inv_sqrt_v for mk in m),
        jnp.sqrt(stats.mean_v) * inv_sqrt_v,
        g * inv_sqrt_vf,
        m[0] * inv_sqrt_vf,
    ]
    return [jnp.clip(f, -FEATURE_CLIP, FEATURE_CLIP) for f in feats]


def global_features(count: jax.Array, num_steps: int) -> jax.Array:
    """``float32[NUM_GLOBAL_FEATURES]``: ``tanh(t/x)`` for ``x`` in TIME_SCALES, then
    ``tanh(10 (t/T − τ))`` for ``τ`` in FRACTION_THRESHOLDS, with ``t = count``, ``T = num_steps``."""
    t = count.astype(jnp.float32)
    time = jnp.tanh(t / jnp.asarray(TIME_SCALES, jnp.float32))
    frac = jnp.tanh(10.0 * (t / num_steps - jnp.asarray(FRACTION_THRESHOLDS, jnp.float32)))
    return jnp.concatenate([time, frac])


class LossState(NamedTuple):
    ema: jax.Array  # float32[len(LOSS_DECAYS)] EMAs of the loss
    count: jax.Array  # int32: finite losses seen


def init_loss_state() -> LossState:
    return LossState(jnp.zeros(len(LOSS_DECAYS), jnp.float32), jnp.zeros([], jnp.int32))


def update_loss_state(
    state: LossState, value: jax.Array, skip: jax.Array | bool = False
) -> LossState:
    """Folds in a finite ``value``; a non-finite one (or ``skip``) leaves the state unchanged."""
    value = jnp.asarray(value, jnp.float32)
    ok = jnp.isfinite(value) & jnp.logical_not(skip)
    ema = _ema(state.ema, value, jnp.asarray(LOSS_DECAYS, jnp.float32))
    ema = jnp.where(state.count == 0, value, ema)  # start each EMA at the first loss
    return LossState(jnp.where(ok, ema, state.ema), state.count + ok.astype(jnp.int32))


def loss_features(state: LossState, value: jax.Array) -> jax.Array:
    """``float32[NUM_LOSS_FEATURES]``: relative change of the loss against each EMA,
    ``tanh((value − ema_k) / (|ema_k| + ε))`` -- scale-free, bounded, 0 before the first loss."""
    value = jnp.where(jnp.isfinite(value), value, state.ema[-1]).astype(jnp.float32)
    rel = (value - state.ema) / (jnp.abs(state.ema) + 1e-6)
    return jnp.where(state.count > 0, jnp.tanh(rel), 0.0)


def log_scale(x: jax.Array) -> jax.Array:
    """A bounded log-magnitude feature: ``log(x + 1e-30) / log(1e30)`` ∈ about [−1, 1]."""
    return jnp.log(x + 1e-30) / math.log(1e30)
