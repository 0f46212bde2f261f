"""In-memory datasets with fixed train/valid/test splits, sampled inside compiled code.

Built-in data needs no network:

* :func:`digits` -- scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).
* :func:`mnist1d` -- MNIST-1D (Greydanus 2020), generated procedurally and cached on disk.
* :func:`synthetic_regression`, :func:`synthetic_classification` -- teacher-generated data.
* :func:`pydoc_text` -- English prose from the standard library's ``pydoc_data.topics``.
* :func:`markov_text` -- token streams from a random Markov chain (a language whose loss
  floor is the chain's entropy rate, sharing nothing with prose).

User data comes in through :func:`from_npz`, :func:`from_huggingface` and :func:`from_tfds`
(the last two import their packages lazily).

A dataset's ``sample(key, split, batch_size)`` draws a batch by random index from device
arrays, so it runs under ``jit`` and ``vmap`` with no host round-trip.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import tempfile
import zipfile
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tasks.base import SPLITS, check_split

_VALID_FRACTION = 0.1  # carved from train when a source has no validation split


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Supervised examples: for each split, inputs ``x[n, ...]`` and targets ``y[n, ...]``.

    Attributes:
      name: identifies the data in task names and reports.
      splits: ``{"train"|"valid"|"test": (x, y)}`` as device arrays; ``x`` is float32.
      num_classes: for integer class labels ``y[n]``, the number of classes; ``None`` for
        real-valued targets.
    """

    name: str
    splits: Mapping[str, tuple[jax.Array, jax.Array]]
    num_classes: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"][0].shape[1:])

    def size(self, split: str) -> int:
        check_split(split)
        return int(self.splits[split][0].shape[0])

    def sample(self, key: jax.Array, split: str, batch_size: int) -> dict[str, jax.Array]:
        """A batch ``{"x": [batch_size, ...], "y": [batch_size, ...]}`` drawn with replacement."""
        check_split(split)
        x, y = self.splits[split]
        idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
        return {"x": x[idx], "y": y[idx]}


@dataclasses.dataclass(frozen=True, eq=False)
class TextDataset:
    """A token stream per split for next-token prediction.

    Attributes:
      name: identifies the data.
      splits: ``{split: int32[n]}`` token ids.
      vocab: the characters, ``vocab[i]`` being token ``i``.
    """

    name: str
    splits: Mapping[str, jax.Array]
    vocab: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def size(self, split: str) -> int:
        check_split(split)
        return int(self.splits[split].shape[0])

    def sample(
        self, key: jax.Array, split: str, batch_size: int, seq_len: int
    ) -> dict[str, jax.Array]:
        """Random windows: ``x`` = tokens ``[batch_size, seq_len]``, ``y`` = ``x`` shifted by one."""
        check_split(split)
        tokens = self.splits[split]
        starts = jax.random.randint(key, (batch_size,), 0, tokens.shape[0] - seq_len)
        windows = jax.vmap(lambda s: jax.lax.dynamic_slice(tokens, (s,), (seq_len + 1,)))(starts)
        return {"x": windows[:, :-1], "y": windows[:, 1:]}

    def decode(self, ids) -> str:
        return "".join(self.vocab[int(i)] for i in np.asarray(ids).reshape(-1))


def _split_arrays(
    x: np.ndarray, y: np.ndarray, fractions: tuple[float, float], seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fixed random split into train/valid/test with ``fractions`` = (valid, test)."""
    perm = np.random.default_rng(seed).permutation(len(x))
    n_valid, n_test = (round(f * len(x)) for f in fractions)
    parts = {
        "valid": perm[:n_valid],
        "test": perm[n_valid : n_valid + n_test],
        "train": perm[n_valid + n_test :],
    }
    return {s: (x[i], y[i]) for s, i in parts.items()}


def _to_device(name, splits, num_classes) -> ArrayDataset:
    arrays = {
        s: (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32 if num_classes else jnp.float32))
        for s, (x, y) in splits.items()
    }
    return ArrayDataset(name=name, splits=arrays, num_classes=num_classes)


def digits() -> ArrayDataset:
    """scikit-learn's 8x8 digits as images ``x[n, 8, 8, 1]`` in [0, 1], labels 0..9.

    Fixed split (seed 0): 1258 train, 180 valid, 359 test.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images / 16.0)[..., None]
    return _to_device("digits", _split_arrays(x, raw.target, (0.1, 0.2), seed=0), 10)


def cache_dir() -> pathlib.Path:
    """Where generated data is cached: ``$LOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/lopt``."""
    if "LOPT_CACHE_DIR" in os.environ:
        return pathlib.Path(os.environ["LOPT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "lopt"


def _write_npz_atomic(path: pathlib.Path, arrays: Mapping[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)


def _generate_mnist1d(seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    state = np.random.get_state()  # noqa: NPY002 (make_dataset seeds the global generator)
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return {"x": raw["x"], "y": raw["y"], "x_test": raw["x_test"], "y_test": raw["y_test"]}


def mnist1d(seed: int = 42) -> ArrayDataset:
    """MNIST-1D: ``x[n, 40]`` signals, labels 0..9; 3600 train, 400 valid, 1000 test.

    Generated procedurally by the ``mnist1d`` package (about 2 s) and cached as
    ``cache_dir()/mnist1d-<seed>.npz``; a corrupt cache file is regenerated.
    """
    path = cache_dir() / f"mnist1d-{seed}.npz"
    try:
        with np.load(path) as f:
            raw = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        raw = _generate_mnist1d(seed)
        _write_npz_atomic(path, raw)
    n_valid = round(_VALID_FRACTION * len(raw["x"]))
    splits = {
        "train": (raw["x"][n_valid:], raw["y"][n_valid:]),
        "valid": (raw["x"][:n_valid], raw["y"][:n_valid]),
        "test": (raw["x_test"], raw["y_test"]),
    }
    return _to_device(f"mnist1d-{seed}", splits, 10)


def synthetic_regression(
    num_examples: int = 2048, dim: int = 16, noise: float = 0.1, seed: int = 0
) -> ArrayDataset:
    """``y = tanh(x @ W1) @ w2 + noise`` from a random teacher; ``x[n, dim]``, ``y[n]``, var(y)≈1."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_examples, dim))
    hidden = np.tanh(x @ rng.normal(size=(dim, 32)) / np.sqrt(dim))
    y = hidden @ rng.normal(size=32)
    y = y / y.std() + noise * rng.normal(size=num_examples)
    return _to_device(f"regression-{dim}d", _split_arrays(x, y, (0.1, 0.1), seed), None)


def synthetic_classification(
    num_examples: int = 2048, dim: int = 16, num_classes: int = 4, seed: int = 0
) -> ArrayDataset:
    """Gaussian blobs: class ``c`` has mean ``mu_c`` (norm 2) and identity covariance."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(num_classes, dim))
    means *= 2.0 / np.linalg.norm(means, axis=1, keepdims=True)
    y = rng.integers(num_classes, size=num_examples)
    x = means[y] + rng.normal(size=(num_examples, dim))
    return _to_device(
        f"blobs-{dim}d-{num_classes}c", _split_arrays(x, y, (0.1, 0.1), seed), num_classes
    )


def with_label_noise(dataset: ArrayDataset, fraction: float, seed: int = 0) -> ArrayDataset:
    """``dataset`` with the labels of a random ``fraction`` of the examples of every split
    replaced by uniformly random classes (fixed by ``seed``): a classification problem whose
    loss has a floor, so that it cannot be fit to zero."""
    if dataset.num_classes is None:
        raise ValueError(f"{dataset.name}: label noise needs class labels")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    rng = np.random.default_rng(seed)
    splits = {}
    for split, (x, y) in dataset.splits.items():
        y = np.asarray(y).copy()
        noisy = rng.random(len(y)) < fraction
        y[noisy] = rng.integers(dataset.num_classes, size=int(noisy.sum()))
        splits[split] = (x, jnp.asarray(y))
    return ArrayDataset(f"{dataset.name}-noise{fraction:g}", splits, dataset.num_classes)


# Printable ASCII plus newline: a vocabulary that does not depend on the Python version.
PYDOC_VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))


def pydoc_text() -> TextDataset:
    """Python's bundled documentation topics (about 465k characters of English prose and code).

    Characters outside :data:`PYDOC_VOCAB` (96 symbols) become ``"?"``. The topics are joined
    in sorted order and split contiguously 80/10/10 into train/valid/test.
    """
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    lookup = np.full(0x110000, PYDOC_VOCAB.index("?"), np.int32)
    lookup[[ord(c) for c in PYDOC_VOCAB]] = np.arange(len(PYDOC_VOCAB))
    ids = lookup[np.frombuffer(text.encode("utf-32-le"), np.uint32)]
    a, b = int(0.8 * len(ids)), int(0.9 * len(ids))
    splits = {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}
    return TextDataset("pydoc", {s: jnp.asarray(v) for s, v in splits.items()}, PYDOC_VOCAB)


MARKOV_VOCAB = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def markov_text(
    vocab_size: int = 16,
    order: int = 1,
    concentration: float = 0.3,
    length: int = 1 << 15,
    seed: int = 0,
) -> TextDataset:
    """A stream of ``length`` tokens from a random Markov chain of ``order``, split 80/10/10.

    Each of the ``vocab_size ** order`` contexts (the last ``order`` tokens) has its own
    next-token distribution drawn from ``Dirichlet(concentration)``: the smaller the
    concentration, the more predictable the next token. The stream starts at context 0.
    Token ``i`` is ``MARKOV_VOCAB[i]``.
    """
    if not 2 <= vocab_size <= len(MARKOV_VOCAB) or order < 1 or concentration <= 0:
        raise ValueError(
            f"markov_text needs 2 <= vocab_size <= {len(MARKOV_VOCAB)}, order >= 1 and "
            f"concentration > 0; got {vocab_size}, {order}, {concentration}"
        )
    rng = np.random.default_rng(seed)
    cumulative = rng.dirichlet(np.full(vocab_size, concentration), vocab_size**order).cumsum(1)
    uniform = rng.random(length)
    ids, context = np.empty(length, np.int32), 0
    for t in range(length):
        token = min(int(np.searchsorted(cumulative[context], uniform[t])), vocab_size - 1)
        ids[t], context = token, (context * vocab_size + token) % vocab_size**order
    a, b = int(0.8 * length), int(0.9 * length)
    splits = {"train": ids[:a], "valid": ids[a:b], "test": ids[b:]}
    name = f"markov-v{vocab_size}-o{order}-c{concentration:g}-s{seed}"
    return TextDataset(
        name, {s: jnp.asarray(v) for s, v in splits.items()}, MARKOV_VOCAB[:vocab_size]
    )


# ----------------------------------------------------------------------------- user data


def _check_arrays(source: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> int | None:
    """Validates user arrays; returns the number of classes for integer labels, else None."""
    int_labels = []
    for split, (x, y) in splits.items():
        for key, a in ((f"x_{split}", x), (f"y_{split}", y)):
            if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
                raise ValueError(f"{source}: {key} has dtype {a.dtype}; expected a numeric array")
            if a.ndim == 0:
                raise ValueError(f"{source}: {key} is a scalar; expected one row per example")
        if len(x) != len(y):
            raise ValueError(
                f"{source}: x_{split} has {len(x)} examples but y_{split} has {len(y)}"
            )
        if len(x) == 0:
            raise ValueError(f"{source}: split {split!r} is empty")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{source}: x_{split} contains NaN or infinite values")
        int_labels.append(np.issubdtype(y.dtype, np.integer) and y.ndim == 1)
    if not all(int_labels):
        return None
    labels = np.concatenate([y for _, y in splits.values()])
    if labels.min() < 0:
        raise ValueError(f"{source}: integer labels must be >= 0, found {labels.min()}")
    return int(labels.max()) + 1


def from_arrays(name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> ArrayDataset:
    """An :class:`ArrayDataset` from host arrays ``{split: (x, y)}``.

    ``train`` is required. Without ``valid``, the last 10% of ``train`` (in a fixed shuffled
    order) becomes ``valid``; without ``test``, ``valid`` doubles as ``test``. Integer 1-D labels
    make a classification dataset with ``max(label) + 1`` classes.
    """
    splits = {s: (np.asarray(x), np.asarray(y)) for s, (x, y) in splits.items()}
    unknown = set(splits) - set(SPLITS)
    if unknown or "train" not in splits:
        raise ValueError(
            f"{name}: splits must include 'train' and be among {SPLITS}, got {sorted(splits)}"
        )
    num_classes = _check_arrays(name, splits)
    if "valid" not in splits:
        x, y = splits["train"]
        carved = _split_arrays(x, y, (_VALID_FRACTION, 0.0), seed=0)
        splits["train"], splits["valid"] = carved["train"], carved["valid"]
    splits.setdefault("test", splits["valid"])
    return _to_device(name, splits, num_classes)


def from_npz(path: str | os.PathLike, name: str | None = None) -> ArrayDataset:
    """Loads ``x_train, y_train`` (required) and ``x_valid, y_valid, x_test, y_test`` (optional).

    Arrays are read without unpickling (object arrays are rejected). See :func:`from_arrays`
    for how missing splits are filled and labels interpreted.
    """
    path = pathlib.Path(path)
    source = str(path)
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{source}: not a readable .npz archive ({e})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{source}: holds a single array; expected an .npz archive with x_train, y_train, ..."
        )
    with f:
        keys = set(f.files)
        splits = {}
        for split in SPLITS:
            pair = (f"x_{split}", f"y_{split}")
            present = [k for k in pair if k in keys]
            if split == "train" and len(present) < 2:
                missing = [k for k in pair if k not in keys]
                raise ValueError(
                    f"{source}: missing required array(s) {missing}; found {sorted(keys)}"
                )
            if len(present) == 1:
                raise ValueError(f"{source}: {present[0]} is present but its pair is missing")
            if present:
                try:
                    splits[split] = (f[pair[0]], f[pair[1]])
                except ValueError as e:  # object arrays need pickle, which we refuse
                    raise ValueError(f"{source}: cannot read {split} arrays ({e})") from None
                except (OSError, zipfile.BadZipFile, EOFError) as e:
                    raise ValueError(f"{source}: corrupt archive ({e})") from None
    return from_arrays(name or path.stem, splits)


def _require(module: str, package: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this loader needs the {package!r} package: pip install {package}"
        ) from None


def from_huggingface(
    name: str, x_key: str, y_key: str, *, config: str | None = None, **load_kwargs
) -> ArrayDataset:
    """A Hugging Face ``datasets`` dataset (``train``, plus ``validation``/``test`` if present).

    Columns ``x_key`` and ``y_key`` become ``x`` and ``y``; needs ``pip install datasets``.
    """
    hf = _require("datasets", "datasets")
    ds = hf.load_dataset(name, config, **load_kwargs).with_format("numpy")
    names = {"train": "train", "valid": "validation", "test": "test"}
    splits = {s: (ds[h][x_key], ds[h][y_key]) for s, h in names.items() if h in ds}
    return from_arrays(name, splits)


def from_tfds(name: str, x_key: str = "image", y_key: str = "label", **load_kwargs) -> ArrayDataset:
    """A TensorFlow Datasets dataset, loaded whole into memory; needs ``pip install tensorflow-datasets``."""
    tfds = _require("tensorflow_datasets", "tensorflow-datasets")
    builder = tfds.builder(name, **load_kwargs)
    builder.download_and_prepare()
    names = {"train": "train", "valid": "validation", "test": "test"}
    splits = {}
    for s, t in names.items():
        if t in builder.info.splits:
            data = tfds.as_numpy(builder.as_dataset(split=t, batch_size=-1))
            splits[s] = (data[x_key], data[y_key])
    return from_arrays(name, splits)


# Datasets are immutable, so each is built once per process.
DATASETS: dict[str, Callable[[], ArrayDataset | TextDataset]] = {
    "digits": functools.cache(digits),
    "mnist1d": functools.cache(mnist1d),
    "pydoc": functools.cache(pydoc_text),
    "regression": functools.cache(synthetic_regression),
    "blobs": functools.cache(synthetic_classification),
    "regression-noisy": functools.cache(lambda: synthetic_regression(num_examples=8192, noise=0.5)),
    "digits-noisy": functools.cache(lambda: with_label_noise(digits(), 0.3)),
}


def dataset(name: str) -> ArrayDataset | TextDataset:
    """A built-in dataset by name (see ``DATASETS``)."""
    try:
        return DATASETS[name]()
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}") from None
