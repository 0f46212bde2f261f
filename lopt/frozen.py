"""Frozen-optimizer files: a trained optimizer as a self-describing, code-free file.

A ``.lopt`` file is a zip archive holding

* ``manifest.json`` -- ``{"format": "lopt", "format_version": 1, "architecture": "MLPLOpt",
  "hparams": {...}, "meta": {...}, "arrays": {"<path>": {"shape": [...], "dtype": "float32"}}}``
* ``arrays/<path>.npy`` -- one ``.npy`` file per leaf of theta (read with
  ``allow_pickle=False``; ``<path>`` is the leaf's key path, e.g. ``mlp/0/w``).

Loading parses JSON and raw arrays only -- nothing is unpickled or executed -- and checks
every array against the architecture's own ``init``: a truncated or corrupt file, an unknown
architecture, a newer format version or a theta of the wrong shapes each raise
:class:`FrozenFileError` saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import tempfile
import warnings
import zipfile
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.architectures import ARCHITECTURES
from lopt.base import LearnedOptimizer, Theta, check_num_steps

FORMAT = "lopt"
FORMAT_VERSION = 1
_NPY_HEADER_MAX = 65_536  # bytes: an .npy header is far smaller
MAX_ARRAY_BYTES = 2**31  # bytes one array of a file may declare (2 GiB)


class FrozenFileError(ValueError):
    """A frozen-optimizer file cannot be read: corrupt, incompatible or inconsistent."""


@dataclasses.dataclass(frozen=True, eq=False)
class Frozen:
    """A loaded optimizer: architecture, meta-parameters and metadata."""

    architecture: LearnedOptimizer
    theta: Theta
    meta: dict[str, Any]

    @property
    def horizons(self) -> tuple[int, int] | None:
        """The shortest and longest run lengths it was meta-trained on (``meta["horizons"]``),
        if the file records them."""
        h = self.meta.get("horizons")
        return (int(h[0]), int(h[1])) if h else None

    def check_horizon(self, num_steps: int) -> None:
        """Warns when a run of ``num_steps`` is outside the horizons it was meta-trained on,
        where nothing shaped its behaviour."""
        h = self.horizons
        if h and not h[0] <= num_steps <= h[1]:
            name = self.meta.get("name", self.architecture.name)
            warnings.warn(
                f"{name} was meta-trained on runs of {h[0]}-{h[1]} steps; num_steps={num_steps} "
                "is outside them, where its behaviour is untrained. Check it against a tuned "
                "baseline on your problem (python -m bench compare) before relying on it.",
                stacklevel=3,
            )

    def as_optax(self, num_steps: int) -> optax.GradientTransformationExtraArgs:
        """The optax transform for a run of ``num_steps`` (:meth:`check_horizon` warns
        outside the horizons it was meta-trained on, once ``num_steps`` is valid)."""
        check_num_steps(num_steps)
        self.check_horizon(num_steps)
        return self.architecture.as_optax(self.theta, num_steps)


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            raise TypeError(f"unsupported pytree key {k!r} in theta")
    return "/".join(parts)


def _flatten(theta: Theta) -> dict[str, np.ndarray]:
    """Key path -> array; float64 leaves (a theta made under x64) are stored as float32."""
    return {
        _path_str(p): np.asarray(x, np.float32 if x.dtype == np.float64 else None)
        for p, x in jax.tree_util.tree_leaves_with_path(theta)
    }


def save(
    path: str | os.PathLike, lo: LearnedOptimizer, theta: Theta, meta: dict | None = None
) -> pathlib.Path:
    """Writes ``lo`` (architecture and hyperparameters), ``theta`` and JSON ``meta`` to ``path``.

    The file is written to a temporary name and renamed, so a crash never leaves a partial
    file under ``path``. Returns the path.
    """
    if lo.name not in ARCHITECTURES:
        raise ValueError(f"cannot save architecture {lo.name!r}; known: {sorted(ARCHITECTURES)}")
    if not isinstance(meta, dict | None):
        raise ValueError(
            f"meta must be a dict of JSON-serializable values, got {type(meta).__name__}"
        )
    arrays = _flatten(theta)
    _check_arrays(lo, _shapes(arrays), source="theta")
    bad = sorted(k for k, a in arrays.items() if not np.all(np.isfinite(a)))
    if bad:
        raise ValueError(f"theta holds non-finite values (NaN or inf) in {bad}; nothing saved")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": lo.name,
        "hparams": lo.hparams(),
        "meta": meta or {},
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()},
    }
    try:
        manifest_json = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must be JSON-serializable (no NaN/inf): {e}") from None
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False)
    try:
        with tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("manifest.json", manifest_json)
            for key, a in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, a, allow_pickle=False)
                zf.writestr(f"arrays/{key}.npy", buf.getvalue())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp.name, 0o666 & ~umask)  # as a plainly created file would be
        os.replace(tmp.name, path)
    except BaseException:
        pathlib.Path(tmp.name).unlink(missing_ok=True)
        raise
    return path


def _template(lo: LearnedOptimizer):
    """The shapes and dtypes of ``lo.init``: 32-bit, as files hold them, also under x64."""
    with jax.enable_x64(False):
        return jax.eval_shape(lo.init, jax.random.key(0))


def _check_arrays(
    lo: LearnedOptimizer, flat: dict[str, tuple[tuple[int, ...], Any]], source: str
) -> None:
    """``flat`` (key path -> (shape, dtype)) must have exactly the leaves, shapes and dtypes
    of ``lo.init``."""
    expected = {
        _path_str(p): (tuple(x.shape), np.dtype(x.dtype))
        for p, x in jax.tree_util.tree_leaves_with_path(_template(lo))
    }
    missing, extra = sorted(expected.keys() - flat.keys()), sorted(flat.keys() - expected.keys())
    if missing or extra:
        raise FrozenFileError(
            f"{source} does not match {lo.name}{lo.hparams()}: missing arrays {missing}, unexpected {extra}"
        )
    for key, (shape, dtype) in expected.items():
        got_shape, got_dtype = flat[key]
        if (tuple(got_shape), str(got_dtype)) != (shape, str(dtype)):
            raise FrozenFileError(
                f"{source}: array {key!r} has shape {tuple(got_shape)} and dtype {got_dtype}, "
                f"but {lo.name} with these hyperparameters needs {shape} {dtype}"
            )


def _shapes(arrays: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], Any]]:
    return {k: (a.shape, a.dtype) for k, a in arrays.items()}


def _read_manifest(zf: zipfile.ZipFile, source: str) -> dict:
    try:
        manifest = json.loads(zf.read("manifest.json"))
    except KeyError:
        raise FrozenFileError(f"{source}: no manifest.json; not a frozen-optimizer file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FrozenFileError(f"{source}: manifest.json is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise FrozenFileError(f"{source}: manifest does not describe a {FORMAT!r} file")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise FrozenFileError(
            f"{source}: manifest's format_version must be a positive integer, got {version!r}"
        )
    if version > FORMAT_VERSION:
        raise FrozenFileError(
            f"{source}: format version {version} is newer than this lopt reads ({FORMAT_VERSION}); "
            "upgrade lopt to load it"
        )
    for field, kind in (("architecture", str), ("hparams", dict), ("meta", dict), ("arrays", dict)):
        if not isinstance(manifest.get(field), kind):
            raise FrozenFileError(
                f"{source}: manifest field {field!r} is missing or not a {kind.__name__}"
            )
    return manifest


def _read_npy(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype):
    """The array in member ``name``; its ``.npy`` header must declare ``shape`` and ``dtype``
    before anything is allocated (a header may claim any size)."""
    with zf.open(name) as f:
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise ValueError(f".npy format version {version} is not supported")
        got_shape, fortran, got_dtype = read_header(f)
    if (tuple(got_shape), got_dtype) != (shape, dtype) or fortran:
        raise ValueError(
            f"its header declares {tuple(got_shape)} {got_dtype}, the manifest {shape} {dtype}"
        )
    return np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)


# What a damaged zip archive raises while it is read: a bad CRC or structure (BadZipFile), a
# broken deflate stream (zlib.error), flag bits asking for unsupported or encrypted data
# (NotImplementedError, RuntimeError), a short read (EOFError, OSError), absurd sizes
# (OverflowError).
_DAMAGE = (
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    OverflowError,
)


def load(path: str | os.PathLike) -> Frozen:
    """Reads a file written by :func:`save`. Raises ``FileNotFoundError`` for a missing path
    and :class:`FrozenFileError` for any content it cannot use, whatever its bytes: damaged,
    incompatible, inconsistent, or declaring arrays beyond ``MAX_ARRAY_BYTES`` (checked
    before anything is allocated)."""
    source = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: no such frozen-optimizer file") from None
    except _DAMAGE as e:
        raise FrozenFileError(
            f"{source}: not a readable frozen-optimizer file (corrupt or truncated: {e})"
        ) from None
    try:
        with zf:
            lo, flat, meta = _read(zf, source)
    except _DAMAGE as e:
        raise FrozenFileError(f"{source}: corrupt ({type(e).__name__}: {e})") from None
    _check_arrays(lo, _shapes(flat), source)
    for key, a in flat.items():
        if not np.all(np.isfinite(a)):
            raise FrozenFileError(f"{source}: array {key!r} holds non-finite values (NaN or inf)")
    template = _template(lo)
    paths = [_path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(template)]
    theta = jax.tree.unflatten(jax.tree.structure(template), [jnp.asarray(flat[p]) for p in paths])
    return Frozen(lo, theta, meta)


def _read(zf: zipfile.ZipFile, source: str) -> tuple[LearnedOptimizer, dict[str, np.ndarray], dict]:
    """The architecture, arrays (key path -> array) and metadata of an open file."""
    manifest = _read_manifest(zf, source)
    name = manifest["architecture"]
    if name not in ARCHITECTURES:
        raise FrozenFileError(
            f"{source}: unknown architecture {name!r}; this lopt knows {sorted(ARCHITECTURES)}"
        )
    try:
        lo = ARCHITECTURES[name](**manifest["hparams"])
    except (TypeError, ValueError, OverflowError) as e:
        raise FrozenFileError(f"{source}: bad hyperparameters for {name}: {e}") from None
    # The declared shapes are checked before anything is decompressed, and each entry's
    # size against its declared shape, so a small file cannot unpack into a huge one.
    declared = {}
    for key, info in manifest["arrays"].items():
        try:
            declared[key] = (tuple(info["shape"]), np.dtype(info["dtype"]))
        except (KeyError, TypeError, ValueError):
            raise FrozenFileError(
                f"{source}: manifest entry of array {key!r} is malformed"
            ) from None
    _check_arrays(lo, declared, source)
    flat = {}
    for key, (shape, dtype) in declared.items():
        name = f"arrays/{key}.npy"
        try:
            size = zf.getinfo(name).file_size
        except KeyError:
            raise FrozenFileError(f"{source}: array {key!r} is listed but missing") from None
        needed = math.prod(shape) * dtype.itemsize
        if needed > MAX_ARRAY_BYTES:
            raise FrozenFileError(
                f"{source}: array {key!r} declares {needed} bytes, more than the "
                f"{MAX_ARRAY_BYTES} an array may have"
            )
        if not needed <= size <= _NPY_HEADER_MAX + needed:
            raise FrozenFileError(
                f"{source}: array {key!r} unpacks to {size} bytes, but a {shape} {dtype} "
                f"array takes {needed} and a header"
            )
        try:
            flat[key] = _read_npy(zf, name, shape, dtype)
        except (ValueError, *_DAMAGE) as e:
            raise FrozenFileError(f"{source}: array {key!r} is corrupt ({e})") from None
    return lo, flat, manifest["meta"]
