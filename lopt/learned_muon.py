"""`LearnedMuon`: optax's Muon with cosine decay, plus learned parts that start at zero.

With its learned parts at their initial values the transform *is*
``optax.contrib.muon(optax.cosine_decay_schedule(lr, T))``, step for step. For a 2-D leaf
``W`` of shape ``[fan_in, fan_out]`` with gradient ``g`` at update ``t = 1, 2, …``::

    μ ← β μ + (1 − β) g                                    (β = 0.95)
    μ̂ = β μ / (1 − β^(t+1)) + (1 − β) g / (1 − β^t)        (Nesterov, debiased)
    ΔW = −η_t · √max(1, fan_out / fan_in) · NS(μ̂ + T_W)     (term="momentum")

with ``NS`` optax's Newton-Schulz orthogonalization (``ns_steps`` quintic iterations), and
every other leaf takes NAdam's step (β 0.9, 0.999, ε 1e-8, as optax's Muon does) at the
same rate. The rate is the cosine decay times learned log-multipliers::

    η_t = lr · ½(1 + cos(π min(t − 1, T) / T)) · exp(s(t/T) + c_t + h_t)

The learned parts, each optional and each exactly zero at ``init``:

* ``schedule``: ``s = clip(w · φ(t/T), ±SCHEDULE_BOUND)`` over the 10 fraction-of-horizon
  features ``φ`` of :mod:`lopt.features` (``w = 0`` at init).
* ``controller_hidden > 0``: a loss-aware rate controller. A GRU of that width reads ``φ`` and
  :data:`NUM_CONTROLLER_LOSS_FEATURES` scale-free loss features (the loss relative to the
  first one, to its EMAs, and the EMAs' slopes) at every step, and ``c_t = max_log_rate ·
  tanh(v · h_t + b)`` is bounded in ``±max_log_rate`` (``v = 0, b = 0`` at init). The user
  passes ``value=loss`` at every step.
* ``distance`` (with a controller): two more controller inputs from the path of the
  parameters so far, ``x_t − x_0 = Σ Δx`` against the steps ``Δx`` taken: its efficiency
  ``‖x_t − x_0‖ / Σ‖Δx‖`` (1 on a straight path, toward 0 when steps cancel) and
  ``tanh(½ log(‖x_t − x_0‖ / √Σ‖Δx‖²))``, DoG's distance over the accumulated step norms
  (0 for a random walk, up to ``tanh(¼ log t)`` for a straight one). Both are free of the
  parameters' scale; they cost a copy of the parameters (``Σ Δx``).
* ``hypergradient``: a log-multiplier ``h_t`` moved by the hypergradient of the last rate.
  With ``d_t`` the direction (the step is ``−η_t d_t``) and ``g_t`` the gradient, the loss's
  derivative with respect to ``log η_{t−1}`` is ``−η_{t−1} ⟨g_t, d_{t−1}⟩``: a gradient
  still along the last direction says the last step was too short, against it too long.
  Over the whole parameter tree::

      h_t = clip(h_{t−1} + HYPER_STEP · a · (cos(g_t, d_{t−1}) − b), ±max_log_rate)

  with learned gain ``a`` and target cosine ``b`` (both 0 at init, so ``h = 0``): the rate
  settles where successive directions and gradients meet at cosine ``b``, per task. It reads
  the gradient ``tx.update`` is given and costs a copy of the parameters (``d_{t−1}``).
* ``term``: a per-parameter MLP over ``g``, ``μ̂`` and ``W``, each divided by its RMS over
  the tensor (clipped to ``±FEATURE_CLIP``; the time features shift its first bias, as in
  ``MLPLOpt``), gives ``d`` shaped like ``W``; its last layer starts at 0. ``term="momentum"``
  adds ``T_W = rms(μ̂) · d`` before the orthogonalization (Celo2's order); ``term="step"``
  adds ``d / √max(fan_in, fan_out)`` (the entry scale of an orthogonal matrix) to
  ``NS(μ̂)`` instead. ``term="none"`` has no learned term.

The state is optax Muon's (a momentum per 2-D leaf; NAdam's moments elsewhere) plus a few
scalars, the controller's ``[controller_hidden]`` carry, with ``distance`` ``Σ Δx`` and with
``hypergradient`` ``d_{t−1}``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib._muon import orthogonalize_via_newton_schulz  # Muon's; not re-exported

from lopt import features as F
from lopt.base import (
    LearnedOptimizer,
    Theta,
    check_counts,
    check_float_params,
    check_num_steps,
    check_rate,
    check_widths,
    require,
)
from lopt.mlp_lopt import schedule_multiplier
from lopt.per_param import NS_COEFFS, NS_STEPS, apply_mlp, init_mlp

if TYPE_CHECKING:  # flax is imported when a controller is built (LearnedMuon._cell)
    import flax.linen as nn

TERMS = ("none", "momentum", "step")
TERM_FEATURES = ("g/rms(g)", "mu/rms(mu)", "p/rms(p)")
NUM_CONTROLLER_LOSS_FEATURES = 1 + len(F.LOSS_DECAYS) + len(F.LOSS_DECAYS) - 1
NUM_CONTROLLER_FEATURES = len(F.FRACTION_THRESHOLDS) + NUM_CONTROLLER_LOSS_FEATURES
NUM_DISTANCE_FEATURES = 2
MUON_BETA = 0.95  # optax.contrib.muon's defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
HYPER_STEP = 0.1  # the hypergradient's log-rate step per unit of gain·cosine
_SLOPE_GAIN = 10.0  # the EMAs' relative differences are small: scaled before the tanh


def is_muon_leaf(p: jax.Array) -> bool:
    """Whether the leaf is orthogonalized: any non-empty 2-D array, embeddings included, as
    ``optax.contrib.muon`` (default arguments) does (an empty one, which its width factor
    would divide by zero, goes to NAdam)."""
    return p.ndim == 2 and p.size > 0


def cosine(count: jax.Array, num_steps: int | jax.Array) -> jax.Array:
    """``optax.cosine_decay_schedule(1, num_steps)(count)``, for a ``num_steps`` that may be
    traced (optax's checks ``num_steps > 0`` eagerly)."""
    t = jnp.minimum(count.astype(jnp.float32), num_steps)
    return 0.5 * (1.0 + jnp.cos(jnp.pi * t / num_steps))


def _normalized(x: jax.Array) -> jax.Array:
    rms = jnp.sqrt(jnp.mean(x * x))
    return jnp.clip(x / (rms + F.EPS), -F.FEATURE_CLIP, F.FEATURE_CLIP)


class MuonDirectionState(NamedTuple):
    count: jax.Array  # int32: updates taken
    mu: Any  # pytree like the 2-D params: Muon's momentum, float32


def scale_by_learned_muon(
    term_theta: Theta | None, term: str, num_steps: int, ns_steps: int
) -> optax.GradientTransformation:
    """Muon's direction ``√max(1, fan_out/fan_in) · NS(μ̂ + T)`` for 2-D leaves (the module
    docstring), with the learned term ``T`` of ``term_theta`` (``None`` for none)."""

    def init_fn(params):
        mu = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        return MuonDirectionState(jnp.zeros([], jnp.int32), mu)

    def update_fn(updates, state, params=None):
        if term_theta is not None:
            require(params, "params", "LearnedMuon")
        count = optax.safe_increment(state.count)
        beta = MUON_BETA
        grads = jax.tree.map(lambda g: jnp.asarray(g, jnp.float32), updates)
        # optax's own moment and debiasing, in its order of operations: Newton-Schulz
        # amplifies rounding differences in μ̂ about 500-fold.
        mu = optax.tree.update_moment(grads, state.mu, beta, 1)
        m_hats = jax.tree.map(
            lambda m, g: beta * m + (1 - beta) * g,
            optax.tree.bias_correction(mu, beta, optax.safe_increment(count)),
            optax.tree.bias_correction(grads, beta, count),
        )
        if term_theta is not None:
            first, *rest = term_theta["mlp"]
            time = F.global_features(state.count, num_steps) @ term_theta["time"]
            layers = [{"w": first["w"], "b": first["b"] + time}, *rest]

        def direction(grad, g, m_hat, p):
            fan_in, fan_out = g.shape
            if term_theta is not None:
                feats = [_normalized(x) for x in (g, m_hat, jnp.asarray(p, jnp.float32))]
                (d,) = apply_mlp(layers, feats)
            if term == "momentum":
                m_hat = m_hat + jnp.sqrt(jnp.mean(m_hat * m_hat)) * d
            step = orthogonalize_via_newton_schulz(m_hat, jnp.asarray(NS_COEFFS), ns_steps)
            if term == "step":
                step = step + d / math.sqrt(max(fan_in, fan_out))
            return (math.sqrt(max(1.0, fan_out / fan_in)) * step).astype(grad.dtype)

        params = updates if params is None else params
        out = jax.tree.map(direction, updates, grads, m_hats, params)
        return out, MuonDirectionState(count, mu)

    return optax.GradientTransformation(init_fn, update_fn)


class PathState(NamedTuple):
    moved: Any  # pytree like the params, float32: x_t − x_0, the sum of the steps taken
    length: jax.Array  # float32: Σ‖Δx‖ over the steps
    squares: jax.Array  # float32: Σ‖Δx‖²


class HyperState(NamedTuple):
    direction: Any  # pytree like the params, float32: d_{t−1}, the last direction (0 at first)
    log_rate: jax.Array  # float32: h_t


class RateState(NamedTuple):
    count: jax.Array  # int32: updates taken
    loss: F.LossState  # EMAs of the loss
    first_loss: jax.Array  # float32: the first finite loss (0 before it)
    carry: Any  # float32[controller_hidden]: the GRU's state; () without one
    rate: jax.Array  # float32: η of the last update (0 before the first)
    path: PathState | tuple  # with ``distance``; () without
    hyper: HyperState | tuple  # with ``hypergradient``; () without


def init_path(params: Any) -> PathState:
    moved = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    return PathState(moved, jnp.zeros([], jnp.float32), jnp.zeros([], jnp.float32))


def update_path(path: PathState, step: Any) -> PathState:
    """``path`` after the step ``step`` (the update applied); unchanged by a non-finite one."""
    norm = optax.tree.norm(step)
    moved = jax.tree.map(lambda m, s: m + jnp.asarray(s, jnp.float32), path.moved, step)
    new = PathState(moved, path.length + norm, path.squares + norm * norm)
    return jax.tree.map(lambda a, b: jnp.where(jnp.isfinite(norm), a, b), new, path)


def distance_features(path: PathState) -> jax.Array:
    """``float32[NUM_DISTANCE_FEATURES]`` (module docstring), 0 before the first step."""
    distance = optax.tree.norm(path.moved)
    efficiency = distance / (path.length + F.EPS)
    dog = jnp.tanh(0.5 * jnp.log((distance + F.EPS) / (jnp.sqrt(path.squares) + F.EPS)))
    return jnp.where(path.length > 0, jnp.stack([efficiency, dog]), 0.0)


def init_hyper(params: Any) -> HyperState:
    direction = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    return HyperState(direction, jnp.zeros([], jnp.float32))


def hyper_cosine(gradient: Any, direction: Any) -> jax.Array:
    """``cos(g_t, d_{t−1})`` over the whole tree: 0 when either is 0 or not finite."""
    gradient = optax.tree.cast(gradient, jnp.float32)
    dot = optax.tree.vdot(gradient, direction)
    cos = dot / (optax.tree.norm(gradient) * optax.tree.norm(direction) + F.EPS)
    return jnp.where(jnp.isfinite(cos), cos, 0.0)


def update_hyper(
    hyper: HyperState, gain_target: Any, gradient: Any, direction: Any, bound: float
) -> HyperState:
    """``h_t`` from ``h_{t−1}`` and ``cos(g_t, d_{t−1})`` (module docstring); ``direction``
    (``d_t``) is kept for the next step unless it is not finite."""
    cos = hyper_cosine(gradient, hyper.direction)
    step = HYPER_STEP * gain_target["gain"] * (cos - gain_target["target"])
    log_rate = jnp.clip(hyper.log_rate + step, -bound, bound)
    direction = optax.tree.cast(direction, jnp.float32)
    finite = jnp.isfinite(optax.tree.norm(direction))
    kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), direction, hyper.direction)
    return HyperState(kept, log_rate)


def current_rate(opt_state: optax.OptState) -> jax.Array | None:
    """The rate ``η`` of the last update of the ``LearnedMuon`` transform whose state is (or
    is inside) ``opt_state``, e.g. under ``optax.chain`` or ``optax.MultiSteps``; ``None``
    if there is none."""
    found = [
        node.rate
        for node in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, RateState))
        if isinstance(node, RateState)
    ]
    return found[0] if found else None


def controller_loss_features(state: RateState, value: jax.Array) -> jax.Array:
    """``float32[NUM_CONTROLLER_LOSS_FEATURES]``, all 0 before the first finite loss:
    ``tanh`` of the loss's relative change against the first loss, against each EMA
    (``lopt.features.loss_features``), and of ``10 ×`` each EMA's relative difference to the
    next slower one (a slope)."""
    seen = state.loss.count > 0
    value = jnp.where(jnp.isfinite(value), value, state.loss.ema[-1]).astype(jnp.float32)
    ema = state.loss.ema
    start = jnp.tanh((value - state.first_loss) / (jnp.abs(state.first_loss) + 1e-6))
    slopes = jnp.tanh(_SLOPE_GAIN * (ema[:-1] - ema[1:]) / (jnp.abs(ema[1:]) + 1e-6))
    feats = jnp.concatenate([start[None], F.loss_features(state.loss, value), slopes])
    return jnp.where(seen, feats, 0.0)


@dataclasses.dataclass(frozen=True)
class LearnedMuon(LearnedOptimizer):
    """optax Muon with cosine decay at ``lr``, and learned parts that start at zero
    (module docstring).

    Attributes:
      lr: the peak rate (optax Muon's usual 0.02).
      schedule: learn a log-multiplier of the rate over the fraction of the horizon.
      controller_hidden: width of the loss-aware rate controller's GRU (0: none).
      max_log_rate: the controller's log-multiplier is bounded in ``±max_log_rate``.
      distance: the controller also reads the parameters' path (module docstring).
      hypergradient: a log-rate moved by the hypergradient of the last rate, bounded in
        ``±max_log_rate`` (module docstring).
      term: where a learned per-parameter term enters: ``none``, ``momentum`` (before the
        orthogonalization) or ``step`` (after it).
      hidden: hidden widths of the learned term's MLP.
      ns_steps: Newton-Schulz iterations (Muon's 5).
    """

    lr: float = 0.02
    schedule: bool = True
    controller_hidden: int = 0
    max_log_rate: float = math.log(8.0)
    distance: bool = False
    hypergradient: bool = False
    term: str = "none"
    hidden: tuple[int, ...] = (4, 4)
    ns_steps: int = NS_STEPS

    def __post_init__(self):
        check_rate("LearnedMuon", self.lr)
        if self.term not in TERMS:
            raise ValueError(f"LearnedMuon.term must be one of {TERMS}, got {self.term!r}")
        if isinstance(self.controller_hidden, bool) or not (
            isinstance(self.controller_hidden, int) and self.controller_hidden >= 0
        ):
            raise ValueError(
                "LearnedMuon.controller_hidden must be an integer >= 0 (0: no controller), "
                f"got {self.controller_hidden!r}"
            )
        if not (isinstance(self.max_log_rate, int | float) and 0 < self.max_log_rate < 20):
            raise ValueError(
                f"LearnedMuon.max_log_rate must be in (0, 20), got {self.max_log_rate!r}"
            )
        if self.distance and not self.controller_hidden:
            raise ValueError("LearnedMuon.distance feeds the controller: set controller_hidden")
        check_counts("LearnedMuon", ns_steps=self.ns_steps)
        object.__setattr__(self, "hidden", check_widths("LearnedMuon", hidden=self.hidden))

    def _cell(self) -> nn.GRUCell:
        try:  # flax only here: the rest of lopt needs jax, optax and numpy alone
            import flax.linen as nn
        except ImportError:
            raise ImportError(
                "LearnedMuon's controller is flax's GRU: pip install flax (or lopt[train])"
            ) from None
        return nn.GRUCell(self.controller_hidden)

    def init(self, key: jax.Array) -> Theta:
        term_key, time_key, cell_key = jax.random.split(key, 3)
        theta = {}
        if self.schedule:
            theta["schedule"] = jnp.zeros(len(F.FRACTION_THRESHOLDS))
        if self.controller_hidden:
            x = jnp.zeros(NUM_CONTROLLER_FEATURES + self.distance * NUM_DISTANCE_FEATURES)
            carry = jnp.zeros(self.controller_hidden)
            theta["controller"] = {
                "gru": self._cell().init(cell_key, carry, x)["params"],
                "out": {"w": jnp.zeros(self.controller_hidden), "b": jnp.zeros([])},
            }
        if self.hypergradient:
            theta["hyper"] = {"gain": jnp.zeros([]), "target": jnp.zeros([])}
        if self.term != "none":
            sizes = (len(TERM_FEATURES), *self.hidden, 1)
            theta["term"] = {
                "mlp": init_mlp(term_key, sizes, out_scale=0.0),
                "time": jax.random.normal(time_key, (F.NUM_GLOBAL_FEATURES, self.hidden[0]))
                / jnp.sqrt(F.NUM_GLOBAL_FEATURES),
            }
        return theta

    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        check_num_steps(num_steps)
        direction = optax.partition(
            {
                "muon": scale_by_learned_muon(
                    theta["term"] if self.term != "none" else None,
                    self.term,
                    num_steps,
                    self.ns_steps,
                ),
                "adam": optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS, nesterov=True),
            },
            lambda params: jax.tree.map(lambda p: "muon" if is_muon_leaf(p) else "adam", params),
        )
        chain = optax.chain(direction, self._rate(theta, num_steps))
        if not self.hypergradient:
            return chain

        def update_fn(updates, state, params=None, **extra_args):
            return chain.update(updates, state, params, gradient=updates, **extra_args)

        return optax.GradientTransformationExtraArgs(chain.init, update_fn)

    def _rate(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        """Multiplies the direction by ``−η_t`` (module docstring)."""
        hidden = self.controller_hidden
        cell = self._cell() if hidden else None

        def init_fn(params):
            check_float_params(params)
            return RateState(
                jnp.zeros([], jnp.int32),
                F.init_loss_state(),
                jnp.zeros([], jnp.float32),
                jnp.zeros(hidden, jnp.float32) if hidden else (),
                jnp.zeros([], jnp.float32),
                init_path(params) if self.distance else (),
                init_hyper(params) if self.hypergradient else (),
            )

        def update_fn(updates, state, params=None, *, value=None, gradient=None, **extra_args):
            del params, extra_args
            global_features = F.global_features(state.count, num_steps)
            rate = self.lr * cosine(state.count, num_steps)
            if self.schedule:
                rate = rate * schedule_multiplier(theta, global_features)
            carry, loss, first = state.carry, state.loss, state.first_loss
            if hidden:
                require(value, "value", "LearnedMuon")
                x = jnp.concatenate(
                    [
                        global_features[len(F.TIME_SCALES) :],
                        controller_loss_features(state, value),
                        *([distance_features(state.path)] if self.distance else []),
                    ]
                )
                carry, h = cell.apply({"params": theta["controller"]["gru"]}, carry, x)
                out = theta["controller"]["out"]
                rate = rate * jnp.exp(self.max_log_rate * jnp.tanh(h @ out["w"] + out["b"]))
                value = jnp.asarray(value, jnp.float32)
                first = jnp.where((loss.count == 0) & jnp.isfinite(value), value, first)
                loss = F.update_loss_state(loss, value)
            hyper = state.hyper
            if self.hypergradient:
                hyper = update_hyper(hyper, theta["hyper"], gradient, updates, self.max_log_rate)
                rate = rate * jnp.exp(hyper.log_rate)
            updates = jax.tree.map(lambda u: (-rate * u).astype(u.dtype), updates)
            count = optax.safe_increment(state.count)
            path = update_path(state.path, updates) if self.distance else ()
            rate = jnp.asarray(rate, jnp.float32)
            return updates, RateState(count, loss, first, carry, rate, path, hyper)

        return optax.GradientTransformationExtraArgs(init_fn, update_fn)
