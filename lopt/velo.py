"""`VeLO` (Metz et al. 2022): a per-tensor LSTM hypernetwork over per-parameter MLPs."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt import features as F
from lopt.base import LearnedOptimizer, Theta, check_counts, check_positive, check_widths
from lopt.per_param import (
    NUM_OUTPUTS,
    TensorControl,
    check_step_mode,
    init_mlp,
    per_parameter_transform,
)

if TYPE_CHECKING:  # flax is imported when a VeLO builds its LSTM (VeLO._cell)
    import flax.linen as nn

_MAX_RANK = 3  # rank one-hot: 0, 1, 2, >= 3 axes
NUM_TENSOR_FEATURES = (
    F.NUM_GLOBAL_FEATURES + F.NUM_LOSS_FEATURES + (_MAX_RANK + 1) + 3 + len(F.MOMENTUM_DECAYS)
)
_MAX_LOG_LR_MULT = 5.0


class LSTMCarry(NamedTuple):
    c: jax.Array  # [n_tensors, lstm_hidden]
    h: jax.Array  # [n_tensors, lstm_hidden]


def tensor_features(inputs) -> jax.Array:
    """``float32[n_tensors, NUM_TENSOR_FEATURES]``: per tensor, the time and loss features,
    a rank one-hot, log-scales of the gradient second moment, parameter second moment and
    size, and each momentum's power relative to the second moment."""
    shared = jnp.concatenate([inputs.global_features, inputs.loss_features])
    rows = []
    for s, shape in zip(inputs.stats, inputs.shapes, strict=True):
        rank = jax.nn.one_hot(min(len(shape), _MAX_RANK), _MAX_RANK + 1)
        size = jnp.asarray(float(max(1, math.prod(shape))), jnp.float32)
        scales = F.log_scale(jnp.stack([s.mean_v, s.mean_p2, size]))
        snr = jnp.clip(s.mean_m2 / (s.mean_v + F.EPS**2), 0.0, 1.0)
        rows.append(jnp.concatenate([shared, rank, scales, snr]))
    return jnp.stack(rows)


@dataclasses.dataclass(frozen=True)
class VeLO(LearnedOptimizer):
    """A per-tensor LSTM reads per-tensor features (time, fraction of training, loss
    features, rank, gradient/parameter/momentum statistics), shares information across
    tensors by concatenating the mean of all tensors' LSTM outputs to each one's, and emits
    per tensor (a) softmax mixing weights over a bank of ``bank_size`` per-parameter MLPs --
    the tensor's MLP is the weighted average of the bank's *weights* -- and (b) a
    log learning-rate multiplier ``ℓ``. With the mixed MLP's outputs ``(d, m)``::

        update = −step_scale · exp(ℓ) · d · exp(magnitude_scale · m)

    in the default ``step_mode="absolute"``; the other modes of ``per_param.STEP_MODES`` tie
    it to the parameter RMS or normalize it per tensor, and ``orthogonal`` replaces each weight
    matrix's step (``per_param.is_weight_matrix``: 2-D, not an embedding) by its Newton-Schulz
    orthogonalization with singular values near ``step_scale · exp(ℓ)`` (times Muon's width
    factor; there is no nominal term: the direction is the MLPs' from the start).

    The user passes the loss as ``value`` at every step, and the horizon ``num_steps`` up
    front. The defaults are sized for CPU meta-training; :meth:`paper` gives the paper's
    sizes (LSTM 512, bank 256).

    Attributes:
      lstm_hidden: LSTM width.
      bank_size: number of per-parameter MLPs in the bank.
      mlp_hidden: hidden widths of each per-parameter MLP.
      step_scale, magnitude_scale: see the formula.
      out_init_scale: initial scale of the MLPs' output layers (near no-op at init).
      step_mode: what the step is tied to (see the formula).
    """

    lstm_hidden: int = 64
    bank_size: int = 16
    mlp_hidden: tuple[int, ...] = (4, 4)
    step_scale: float = 0.01
    magnitude_scale: float = 1.0
    out_init_scale: float = 0.01
    step_mode: str = "absolute"

    def __post_init__(self):
        check_step_mode("VeLO", self.step_mode)
        object.__setattr__(self, "mlp_hidden", check_widths("VeLO", mlp_hidden=self.mlp_hidden))
        check_counts("VeLO", lstm_hidden=self.lstm_hidden, bank_size=self.bank_size)
        check_positive(
            "VeLO",
            step_scale=self.step_scale,
            magnitude_scale=self.magnitude_scale,
            out_init_scale=self.out_init_scale,
        )

    @classmethod
    def paper(cls, **overrides) -> VeLO:
        """The sizes of Metz et al. 2022: LSTM hidden 512, a bank of 256 MLPs."""
        return cls(**({"lstm_hidden": 512, "bank_size": 256} | overrides))

    def _cell(self) -> nn.OptimizedLSTMCell:
        try:  # flax only here: the rest of lopt needs jax, optax and numpy alone
            import flax.linen as nn
        except ImportError:
            raise ImportError("VeLO's LSTM is flax's: pip install flax (or lopt[train])") from None
        return nn.OptimizedLSTMCell(self.lstm_hidden)

    def init(self, key: jax.Array) -> Theta:
        lstm_key, bank_key, head_key = jax.random.split(key, 3)
        x = jnp.zeros((1, NUM_TENSOR_FEATURES))
        carry = self._cell().initialize_carry(lstm_key, x.shape)
        sizes = (F.NUM_FEATURES, *self.mlp_hidden, NUM_OUTPUTS)
        bank_keys = jax.random.split(bank_key, self.bank_size)
        h2 = 2 * self.lstm_hidden
        return {
            "lstm": self._cell().init(lstm_key, carry, x)["params"],
            "bank": jax.vmap(lambda k: init_mlp(k, sizes, self.out_init_scale))(bank_keys),
            "mix": {"w": jnp.zeros((h2, self.bank_size)), "b": jnp.zeros(self.bank_size)},
            "lr": {
                "w": jax.random.normal(head_key, (h2,)) * 0.01 / jnp.sqrt(h2),
                "b": jnp.zeros([]),
            },
        }

    def as_optax(self, theta: Theta, num_steps: int) -> optax.GradientTransformationExtraArgs:
        cell = self._cell()

        def init_controller(shapes):
            zeros = jnp.zeros((len(shapes), self.lstm_hidden))
            return LSTMCarry(zeros, zeros)

        def controller(inputs, carry):
            if not inputs.shapes:
                return [], carry
            old = (carry.c, carry.h)  # by name: wrappers may change the container
            new, h = cell.apply({"params": theta["lstm"]}, old, tensor_features(inputs))
            carry = LSTMCarry(
                *(jnp.where(inputs.skip, o, n) for o, n in zip(old, new, strict=True))
            )
            h = jnp.concatenate([h, jnp.broadcast_to(h.mean(0), h.shape)], axis=-1)
            mix = jax.nn.softmax(h @ theta["mix"]["w"] + theta["mix"]["b"])  # [n, bank]
            log_lr = jnp.clip(
                h @ theta["lr"]["w"] + theta["lr"]["b"], -_MAX_LOG_LR_MULT, _MAX_LOG_LR_MULT
            )
            controls = []
            for i in range(len(inputs.shapes)):
                layers = jax.tree.map(lambda a, i=i: jnp.tensordot(mix[i], a, 1), theta["bank"])
                controls.append(
                    TensorControl(layers, self.step_scale * jnp.exp(log_lr[i]), jnp.zeros([]))
                )
            return controls, carry

        return per_parameter_transform(
            "VeLO",
            controller,
            init_controller,
            num_steps=num_steps,
            magnitude_scale=self.magnitude_scale,
            uses_loss=True,
            step_mode=self.step_mode,
        )
