"""The per-parameter update machinery shared by `MLPLOpt` and `VeLO`.

Both apply a tiny MLP to every parameter's features (:mod:`lopt.features`). They differ in
where each tensor's MLP weights and step scale come from: `MLPLOpt` uses one learned MLP for
all tensors; `VeLO` mixes a bank of MLPs per tensor with weights computed by an LSTM. That
difference is the *controller* passed to :func:`per_parameter_transform`.

The per-parameter MLP is written as scalar-weighted sums of whole feature arrays (never
stacking features into ``[N, F]``), so XLA fuses a tensor's MLP into one elementwise loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib._muon import orthogonalize_via_newton_schulz  # Muon's; not re-exported

from lopt import features as F
from lopt.base import check_float_params, check_num_steps, require

Layers = Sequence[dict[str, jax.Array]]  # [{"w": [fan_in, fan_out], "b": [fan_out]}, ...]
NUM_OUTPUTS = 2  # direction d and log-magnitude m


def init_mlp(key: jax.Array, sizes: Sequence[int], out_scale: float) -> list[dict[str, jax.Array]]:
    """LeCun-normal layers ``sizes[0] → … → sizes[-1]`` with zero biases; the last layer's
    weights are multiplied by ``out_scale`` (small: the optimizer starts near a no-op)."""
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        w = jax.random.normal(k, (fan_in, fan_out)) / jnp.sqrt(fan_in)
        if i == len(sizes) - 2:
            w = w * out_scale
        layers.append({"w": w, "b": jnp.zeros(fan_out)})
    return layers


def apply_mlp(layers: Layers, inputs: Sequence[jax.Array]) -> list[jax.Array]:
    """ReLU MLP applied independently at every element of ``inputs`` (``F`` same-shape arrays).

    Returns one array per output unit. ``w[i, j] * x_i`` sums keep everything elementwise.
    """
    h = list(inputs)
    for n, layer in enumerate(layers):
        w, b = layer["w"], layer["b"]
        h = [sum(w[i, j] * x for i, x in enumerate(h)) + b[j] for j in range(w.shape[1])]
        if n < len(layers) - 1:
            h = [jax.nn.relu(x) for x in h]
    return h


class TensorControl(NamedTuple):
    """What a controller decides for one tensor at one step."""

    layers: Layers  # the per-parameter MLP (F inputs -> ... -> 2 outputs)
    step_scale: jax.Array  # scalar: learned step = step_scale · d · exp(magnitude_scale · m)
    nominal_scale: jax.Array  # scalar: plus nominal_scale · (Adam direction m̂₀/√v̂)


class ControlInputs(NamedTuple):
    stats: list[F.TensorStats]  # per tensor
    shapes: list[tuple[int, ...]]  # per tensor
    global_features: jax.Array  # [NUM_GLOBAL_FEATURES]
    loss_features: jax.Array  # [NUM_LOSS_FEATURES] (zeros when the loss is not used)
    skip: jax.Array  # bool: this step is skipped; the controller must return its old state


# (inputs, controller state) -> (one TensorControl per tensor, new controller state)
Controller = Callable[[ControlInputs, Any], tuple[list[TensorControl], Any]]


class PerParamState(NamedTuple):
    """Optimizer state. Memory cost: ``len(MOMENTUM_DECAYS) + 1`` floats per parameter plus a
    few scalars (Adafactor's row/column statistics are recomputed from the second moment)."""

    count: jax.Array  # int32: steps taken
    momenta: Any  # pytree like params: float32 [len(MOMENTUM_DECAYS), *shape] per leaf
    rms: Any  # pytree like params: float32 second moment, the leaf's shape
    loss: F.LossState
    nonfinite: jax.Array  # int32: steps whose gradient had a NaN/inf entry (zeroed)
    controller_state: Any  # the controller's own state (e.g. VeLO's LSTM carry)


_ADAM_FEATURE = F.FEATURE_NAMES.index(f"m{F.MOMENTUM_DECAYS[0]}/sqrt(v)")
_MAX_LOG_STEP = 10.0  # exp() of the magnitude output is clipped here, so steps stay finite
# What a tensor's step is tied to, with u = d · exp(magnitude_scale · m) and a the nominal
# Adam direction:
#   absolute:   step_scale · u + nominal · a           (step_scale in parameter units);
#   param_rms:  step_scale · max(rms(p), PARAM_RMS_FLOOR) · u + nominal · a   (Celo);
#   normalized: the absolute step rescaled to RMS step_scale over the tensor (Celo2's
#               normalized direction; with a nominal term it starts as per-tensor normalized
#               Adam, the learned term a correction of the direction);
#   orthogonal: a 2-D tensor's absolute step [fan_in, fan_out] replaced by its Newton-Schulz
#               orthogonalization (optax's Muon: NS_STEPS quintic iterations) times
#               step_scale · √max(1, fan_out / fan_in), Muon's width scaling: its singular
#               values are all near that factor (Celo2's matrix-aware update; with a nominal
#               term it starts as orthogonalized Adam); tensors that are not weight
#               matrices (``is_weight_matrix``) as absolute.
STEP_MODES = ("absolute", "param_rms", "normalized", "orthogonal")
PARAM_RMS_FLOOR = 1e-3
NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Muon's quintic Newton-Schulz coefficients
NS_STEPS = 5  # Muon's number of iterations


def check_step_mode(owner: str, mode: str) -> None:
    """Raises ``ValueError`` naming ``owner.step_mode`` unless ``mode`` is in ``STEP_MODES``."""
    if mode not in STEP_MODES:
        raise ValueError(f"{owner}.step_mode must be one of {STEP_MODES}, got {mode!r}")


def is_weight_matrix(path: tuple, shape: tuple[int, ...]) -> bool:
    """Whether the orthogonal step mode orthogonalizes the leaf at ``path`` (a jax key path).

    A non-empty 2-D leaf unless its path names an embedding (a key containing ``embed``,
    as flax's ``nn.Embed`` table ``embedding`` does): an embedding's gradient touches only
    the rows of the tokens seen, and orthogonalizing it spreads the step over every row.
    Biases, scales, convolution kernels and embeddings take the absolute step. To send some
    leaves to another rule altogether (AdamW, say), wrap the transform in
    ``optax.partition`` with a label function.
    """
    return len(shape) == 2 and 0 not in shape and "embed" not in jax.tree_util.keystr(path).lower()


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x) / max(x.size, 1))  # 0, not NaN, for an empty tensor


def without_growth(learned: jax.Array, p: jax.Array) -> jax.Array:
    """``u`` less its component along ``−p`` where it has one: the step ``−u`` then never
    grows ``‖p‖`` to first order (``⟨u, p⟩ ≥ 0``); a shrinking or norm-preserving ``u`` is
    returned unchanged. Two reductions over the tensor.

    The learned term of a meta-trained optimizer finds on short horizons that growing the
    weights (sharpening the logits) lowers the loss quickly; orthogonalizing the step turns
    that consistent, low-rank component into steady growth at the full step size, which a deep
    network does not survive on long runs. This removes the growth from the learned term
    only: the nominal term still moves ``‖p‖`` wherever the gradient does.
    """
    inner = jnp.minimum(jnp.sum(learned * p), 0.0)  # 0 where p = 0
    return learned - inner / jnp.maximum(jnp.sum(p * p), jnp.finfo(p.dtype).tiny) * p


def tensor_step(
    learned: jax.Array,
    nominal: jax.Array,
    control: TensorControl,
    mode: str,
    stats: F.TensorStats,
    ns_steps: int = NS_STEPS,
) -> jax.Array:
    """One tensor's step (to be subtracted) from the learned ``u`` and the nominal ``a``
    (``ns_steps``: Newton-Schulz iterations of the orthogonal mode)."""
    if mode == "param_rms":
        learned = learned * jnp.maximum(jnp.sqrt(stats.mean_p2), PARAM_RMS_FLOOR)
    step = control.step_scale * learned + control.nominal_scale * nominal
    if mode == "normalized":
        rms = _rms(step)  # where it is 0 the step is 0 everywhere and stays 0
        step = control.step_scale * step / jnp.where(rms > 0, rms, 1.0)
    elif mode == "orthogonal":  # ``step`` is a weight matrix (``is_weight_matrix``)
        fan_in, fan_out = step.shape
        step = orthogonalize_via_newton_schulz(step, jnp.asarray(NS_COEFFS), ns_steps)  # 0 stays 0
        step = control.step_scale * max(1.0, fan_out / fan_in) ** 0.5 * step
    return step


def per_parameter_transform(
    owner: str,
    controller: Controller,
    init_controller: Callable[[list[tuple[int, ...]]], Any],
    num_steps: int,
    magnitude_scale: float,
    uses_loss: bool,
    step_mode: str = "absolute",
    no_growth: bool = False,
    ns_steps: int = NS_STEPS,
) -> optax.GradientTransformationExtraArgs:
    """Builds the optax transform of a per-parameter learned optimizer.

    ``update(grads, state, params, value=loss)``: ``params`` is required; ``value`` is required
    when ``uses_loss``. A step whose gradient has any NaN or infinite entry, or whose sum of
    squares overflows float32 (a finite gradient too large for the second moment), is
    skipped, as by ``optax.apply_if_finite``: the updates are zero, the state is unchanged but for
    ``state.nonfinite``, which counts such steps. (Detection is one cheap reduction over the
    gradients, done first so that the memory can be updated in place.) A non-finite ``value`` is
    ignored. Updates have the parameters' dtype; the memory is float32. With ``no_growth`` the
    learned term ``u`` of every tensor goes through :func:`without_growth` first; the orthogonal
    step mode runs ``ns_steps`` Newton-Schulz iterations.

    Args:
      owner: the architecture's name, for error messages.
      controller: ``(ControlInputs, state) -> (one TensorControl per tensor, state)``: the
        per-parameter MLP and the scales each tensor gets this step.
      init_controller: the controller's initial state from the tensors' shapes.
      num_steps: the training horizon the optimizer is told.
      magnitude_scale: the ``m`` output's factor in ``exp(magnitude_scale · m)``.
      uses_loss: whether ``update`` needs ``value`` (the loss features).
      step_mode: one of ``STEP_MODES``.
      no_growth: pass each tensor's learned term through :func:`without_growth`.
      ns_steps: Newton-Schulz iterations of the orthogonal step mode.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a :class:`PerParamState`.

    Example: a controller with a zero MLP and a nominal Adam term at 0.01 is Adam at 0.01,
    whose first step moves each parameter by 0.01 against its gradient's sign::

        >>> import jax.numpy as jnp
        >>> from lopt import features as F
        >>> from lopt.per_param import TensorControl, per_parameter_transform
        >>> zero_mlp = [{"w": jnp.zeros((F.NUM_FEATURES, 2)), "b": jnp.zeros(2)}]
        >>> def adam_only(inputs, state):
        ...     control = TensorControl(zero_mlp, jnp.float32(0.0), jnp.float32(0.01))
        ...     return [control for _ in inputs.shapes], state
        >>> tx = per_parameter_transform("AdamOnly", adam_only, lambda shapes: (),
        ...     num_steps=100, magnitude_scale=1.0, uses_loss=False)
        >>> params = {"w": jnp.ones(3)}
        >>> updates, _ = tx.update({"w": jnp.array([2.0, -3.0, 0.5])}, tx.init(params), params)
        >>> updates["w"]
        Array([-0.01,  0.01, -0.01], dtype=float32)
    """
    check_num_steps(num_steps)
    check_step_mode(owner, step_mode)

    def init_fn(params):
        check_float_params(params)
        shapes = [p.shape for p in jax.tree.leaves(params)]
        return PerParamState(
            count=jnp.zeros([], jnp.int32),
            # Two trees of arrays (not a tree of Accumulators), as optax's own states are:
            # wrappers such as flax.nnx.Optimizer then keep the state's structure from the
            # first step on, and a jitted step compiles once.
            momenta=jax.tree.map(lambda p: F.init_accumulators(p).momenta, params),
            rms=jax.tree.map(lambda p: F.init_accumulators(p).rms, params),
            loss=F.init_loss_state(),
            nonfinite=jnp.zeros([], jnp.int32),
            controller_state=init_controller(shapes),
        )

    def update_fn(grads, state, params=None, *, value=None, **extra_args):
        del extra_args
        require(params, "params", owner)
        if uses_loss:
            require(value, "value", owner)
        paths, treedef = jax.tree_util.tree_flatten_with_path(params)
        ps = [p for _, p in paths]
        modes = [
            step_mode
            if step_mode != "orthogonal" or is_weight_matrix(path, p.shape)
            else "absolute"
            for path, p in paths
        ]
        gs = [jnp.asarray(g, jnp.float32) for g in treedef.flatten_up_to(grads)]
        accs = [
            F.Accumulators(m, r)
            for m, r in zip(
                treedef.flatten_up_to(state.momenta), treedef.flatten_up_to(state.rms), strict=True
            )
        ]
        loss = F.LossState(state.loss.ema, state.loss.count)

        # Σ g² is non-finite iff g has a NaN or inf entry or squares past float32 (|g| ≳ 1e19,
        # where the second moment would overflow): one cheap read of the gradient, done first
        # so that every later pass can update the memory in place.
        bad = ~jnp.isfinite(sum((jnp.sum(g * g) for g in gs), jnp.zeros([])))
        count = jnp.where(bad, state.count, state.count + 1)
        accs = [F.update_accumulators(a, g, skip=bad) for a, g in zip(accs, gs, strict=True)]
        pf = [jnp.asarray(p, jnp.float32) for p in ps]
        stats = [F.tensor_stats(a, p, jnp.maximum(count, 1)) for a, p in zip(accs, pf, strict=True)]
        if uses_loss:
            loss_feats = F.loss_features(loss, value)
            loss = F.update_loss_state(loss, value, skip=bad)
        else:
            loss_feats = jnp.zeros(F.NUM_LOSS_FEATURES)
        inputs = ControlInputs(
            stats, [p.shape for p in ps], F.global_features(count, num_steps), loss_feats, bad
        )
        controls, controller_state = controller(inputs, state.controller_state)

        updates = []
        for a, g, p, s, c, mode in zip(accs, gs, pf, stats, controls, modes, strict=True):
            feats = F.parameter_features(a, g, p, jnp.maximum(count, 1), s)
            d, m = apply_mlp(c.layers, feats)
            learned = d * jnp.exp(jnp.minimum(magnitude_scale * m, _MAX_LOG_STEP))
            if no_growth:
                learned = without_growth(learned, p)
            step = tensor_step(learned, feats[_ADAM_FEATURE], c, mode, s, ns_steps)
            updates.append(jnp.where(bad, 0.0, -step))
        updates = [u.astype(p.dtype) for u, p in zip(updates, ps, strict=True)]
        new_state = PerParamState(
            count=count,
            momenta=treedef.unflatten([a.momenta for a in accs]),
            rms=treedef.unflatten([a.rms for a in accs]),
            loss=loss,
            nonfinite=state.nonfinite + bad.astype(jnp.int32),
            controller_state=controller_state,
        )
        return treedef.unflatten(updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
