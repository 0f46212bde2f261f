"""Small flax (linen) models for the inner problems.

Every model maps a batch of inputs to outputs with no state besides ``params`` (no batch
statistics, no dropout), so a task's loss is a pure function of ``(params, batch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "silu": nn.silu,
    "elu": nn.elu,
}


def activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


class MLP(nn.Module):
    """``x[B, ...]`` -> flatten -> Dense(h) + act for each ``h`` in ``hidden`` -> Dense(out)."""

    hidden: Sequence[int]
    out: int
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = activation(self.act)(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class ConvNet(nn.Module):
    """``x[B, H, W, C]`` -> 3x3 convs (stride 2 after the first) -> global mean pool -> Dense(out)."""

    channels: Sequence[int]
    out: int
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, c in enumerate(self.channels):
            x = activation(self.act)(nn.Conv(c, (3, 3), strides=1 if i == 0 else 2)(x))
        return nn.Dense(self.out)(x.mean(axis=(1, 2)))


class Autoencoder(nn.Module):
    """``x[B, ...]`` -> MLP encoder to ``bottleneck`` -> mirrored decoder -> sigmoid, shaped like x."""

    hidden: Sequence[int]
    bottleneck: int
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        code = MLP(self.hidden, self.bottleneck, self.act)(x)
        out = MLP(tuple(reversed(self.hidden)), x[0].size, self.act)(activation(self.act)(code))
        return nn.sigmoid(out).reshape(x.shape)


class CharLSTM(nn.Module):
    """Tokens ``[B, T]`` -> embedding -> LSTM -> logits ``[B, T, vocab]``."""

    vocab_size: int
    embed: int = 32
    hidden: int = 64

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = nn.Embed(self.vocab_size, self.embed)(tokens)
        x = nn.RNN(nn.OptimizedLSTMCell(self.hidden))(x)
        return nn.Dense(self.vocab_size)(x)


class _Block(nn.Module):
    heads: int

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        d = x.shape[-1]
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(nn.LayerNorm()(x), mask=mask)
        h = nn.Dense(4 * d)(nn.LayerNorm()(x))
        return x + nn.Dense(d)(nn.gelu(h))


class Transformer(nn.Module):
    """Causal pre-LayerNorm transformer LM: tokens ``[B, T]`` -> logits ``[B, T, vocab]``."""

    vocab_size: int
    max_len: int
    d_model: int = 32
    heads: int = 2
    layers: int = 2

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        t = tokens.shape[1]
        x = nn.Embed(self.vocab_size, self.d_model)(tokens)
        pos = self.param("pos", nn.initializers.normal(0.02), (self.max_len, self.d_model))
        x = x + pos[:t]
        mask = nn.make_causal_mask(tokens)
        for _ in range(self.layers):
            x = _Block(self.heads)(x, mask)
        return nn.Dense(self.vocab_size)(nn.LayerNorm()(x))
