"""`MLPLOpt`: one small MLP applied to every parameter (AdafacMLP-style)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from lopt import features as F
from lopt.base import LearnedOptimizer, Theta, check_counts, check_positive, check_widths
from lopt.per_param import (
    NS_STEPS,
    NUM_OUTPUTS,
    TensorControl,
    check_step_mode,
    init_mlp,
    per_parameter_transform,
)


@dataclasses.dataclass(frozen=True)
class MLPLOpt(LearnedOptimizer):
    """A per-parameter MLP learned optimizer.

    For each parameter, the ``NUM_FEATURES`` features of :mod:`lopt.features` go through an
    MLP ``F → hidden… → 2`` whose first-layer bias is shifted by a learned linear function
    of the time features (so time costs nothing per parameter). With outputs ``(d, m)``, the
    learned term ``u = d · exp(magnitude_scale · m)`` and the nominal Adam direction
    ``a = m̂₀.₉ / √v̂``, each tensor's step is (``step_mode``, ``per_param.STEP_MODES``)::

        absolute:   −ρ(t/T) · (step_scale · u + nominal_lr · 2σ(ν) · a)
        param_rms:  as absolute, with u multiplied by the tensor's parameter RMS
        normalized: the absolute step rescaled to RMS ρ · step_scale over the tensor
        orthogonal: for a weight matrix (``per_param.is_weight_matrix``: 2-D, not an
                    embedding), the absolute step replaced by its Newton-Schulz
                    orthogonalization with singular values near
                    ρ · step_scale · √max(1, fan_out / fan_in) (Muon's width factor);
                    every other tensor as absolute

    (the ``nominal_lr`` term only with ``nominal=True``). With ``schedule=True``,
    ``ρ = exp(clip(w · φ(t/T), ±SCHEDULE_BOUND))`` is a learned schedule over the 10
    fraction-of-horizon features ``φ`` (``w`` starts at 0, so ``ρ`` starts at exactly 1);
    otherwise ``ρ = 1``. With ``no_growth=True``, ``u`` loses its component that would grow
    the tensor's norm (``per_param.without_growth``) before the terms are combined.

    The output layer starts at ``out_init_scale`` × its usual size, so the learned term starts
    near zero; the nominal multiplier ``2σ(ν)`` is bounded in (0, 2) and starts at 1.

    The defaults are the recipe that won the measured ablations (the shipped ``mlplopt-mix``
    architecture): untrained, it is Adam's direction orthogonalized per weight matrix at
    0.02 and Adam at 1e-2 elsewhere. :meth:`bare` is the per-parameter MLP alone
    (learned_optimization's AdafacMLP-style rule: absolute step, no nominal term, no
    schedule), which starts near a no-op.

    Attributes:
      hidden: hidden layer widths of the per-parameter MLP.
      step_scale, magnitude_scale: see the formula.
      nominal: add the Adam-like nominal term.
      nominal_lr: its learning rate.
      out_init_scale: initial scale of the output layer.
      step_mode: what the step is tied to (see the formula).
      schedule: learn the schedule ``ρ`` of the whole step.
      no_growth: the learned term may shrink a tensor's norm but never grow it.
      ns_steps: Newton-Schulz iterations of the orthogonal step (Muon's 5). Fewer cost less
        and orthogonalize less: each multiplies a small singular value by about 3.4.
    """

    hidden: tuple[int, ...] = (4, 4)
    step_scale: float = 0.02
    magnitude_scale: float = 1.0
    nominal: bool = True
    nominal_lr: float = 1e-2
    out_init_scale: float = 0.01
    step_mode: str = "orthogonal"
    schedule: bool = True
    no_growth: bool = True
    ns_steps: int = NS_STEPS

    @classmethod
    def bare(cls, **overrides) -> MLPLOpt:
        """The per-parameter MLP alone: ``step_scale · u`` in absolute units, no nominal term,
        no schedule, no growth bound (``overrides`` change any field)."""
        bare = dict(
            step_scale=0.01, nominal=False, step_mode="absolute", schedule=False, no_growth=False
        )
        return cls(**(bare | overrides))

    def __post_init__(self):
        check_step_mode("MLPLOpt", self.step_mode)
        check_counts("MLPLOpt", ns_steps=self.ns_steps)
        object.__setattr__(self, "hidden", check_widths("MLPLOpt", hidden=self.hidden))
        check_positive(
            "MLPLOpt",
            step_scale=self.step_scale,
            magnitude_scale=self.magnitude_scale,
            nominal_lr=self.nominal_lr,
            out_init_scale=self.out_init_scale,
        )

    def init(self, key: jax.Array) -> Theta:
        mlp_key, time_key = jax.random.split(key)
        sizes = (F.NUM_FEATURES, *self.hidden, NUM_OUTPUTS)
        theta = {
            "mlp": init_mlp(mlp_key, sizes, self.out_init_scale),
            # time features -> shift of the first hidden layer's bias
            "time": jax.random.normal(time_key, (F.NUM_GLOBAL_FEATURES, self.hidden[0]))
            / jnp.sqrt(F.NUM_GLOBAL_FEATURES),
        }
        if self.nominal:
            theta["nominal_logit"] = jnp.zeros([])
        if self.schedule:
            theta["schedule"] = jnp.zeros(len(F.FRACTION_THRESHOLDS))
        return theta

    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        def controller(inputs, state):
            first, *rest = theta["mlp"]
            shifted = {"w": first["w"], "b": first["b"] + inputs.global_features @ theta["time"]}
            layers = [shifted, *rest]
            nominal = (
                self.nominal_lr * 2.0 * jax.nn.sigmoid(theta["nominal_logit"])
                if self.nominal
                else jnp.zeros([])
            )
            rho = schedule_multiplier(theta, inputs.global_features) if self.schedule else 1.0
            control = TensorControl(layers, rho * self.step_scale, rho * nominal)
            return [control] * len(inputs.shapes), state

        return per_parameter_transform(
            "MLPLOpt",
            controller,
            init_controller=lambda shapes: (),
            num_steps=num_steps,
            magnitude_scale=self.magnitude_scale,
            uses_loss=False,
            step_mode=self.step_mode,
            no_growth=self.no_growth,
            ns_steps=self.ns_steps,
        )


SCHEDULE_BOUND = 5.0  # the learned schedule multiplies the step by at most e^±5


def schedule_multiplier(theta: Theta, global_features: jax.Array) -> jax.Array:
    """``ρ = exp(clip(theta["schedule"] · φ, ±SCHEDULE_BOUND))`` with ``φ`` the fraction-of-
    horizon part of the global features: a scalar, exactly 1 while the weights are 0."""
    fraction = global_features[len(F.TIME_SCALES) :]
    return jnp.exp(jnp.clip(theta["schedule"] @ fraction, -SCHEDULE_BOUND, SCHEDULE_BOUND))
