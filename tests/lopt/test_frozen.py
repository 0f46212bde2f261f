"""Frozen-optimizer files: round trips and every way a file can be bad."""

import io
import json
import warnings
import zipfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt


def _rewrite(src, dst, manifest_fn=None, drop=(), replace=None, compression=zipfile.ZIP_STORED):
    """Copies a .lopt zip, editing its manifest / dropping or replacing members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for item in zin.namelist():
            if item in drop:
                continue
            data = zin.read(item)
            if item == "manifest.json" and manifest_fn:
                manifest = json.loads(data)
                manifest_fn(manifest)
                data = json.dumps(manifest)
            if replace and item in replace:
                data = replace[item]
            zout.writestr(item, data)
    return dst


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    lo = lopt.MLPLOpt(hidden=(4, 4))
    theta = lo.init(jax.random.key(3))
    path = lopt.save(
        tmp_path_factory.mktemp("frozen") / "opt.lopt", lo, theta, meta={"recipe": "x"}
    )
    return lo, theta, path


def test_round_trip_gives_identical_updates(arch, tmp_path):
    _, lo, theta, tx = arch
    path = lopt.save(tmp_path / "a.lopt", lo, theta, meta={"steps": 3, "note": "test"})
    frozen = lopt.load(path)
    assert frozen.architecture == lo
    assert frozen.meta == {"steps": 3, "note": "test"}
    for a, b in zip(jax.tree.leaves(frozen.theta), jax.tree.leaves(theta), strict=True):
        np.testing.assert_array_equal(a, b)
    params = {"w": jnp.linspace(-1, 1, 12).reshape(4, 3)}
    grads = {"w": jnp.linspace(1, -2, 12).reshape(4, 3)}
    tx2 = frozen.as_optax(num_steps=100)
    u1, _ = tx.update(grads, tx.init(params), params, value=jnp.float32(1.0))
    u2, _ = tx2.update(grads, tx2.init(params), params, value=jnp.float32(1.0))
    np.testing.assert_array_equal(u1["w"], u2["w"])


def test_file_is_self_describing(saved):
    _, _, path = saved
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = zf.namelist()
    assert manifest["architecture"] == "MLPLOpt" and manifest["format_version"] == 1
    assert manifest["hparams"]["hidden"] == [4, 4]
    assert "arrays/mlp/0/w.npy" in names and manifest["arrays"]["mlp/0/w"]["dtype"] == "float32"


def test_save_rejects_bad_meta_and_theta(saved, tmp_path):
    lo, theta, _ = saved
    with pytest.raises(ValueError, match="JSON-serializable"):
        lopt.save(tmp_path / "m.lopt", lo, theta, meta={"x": object()})
    with pytest.raises(ValueError, match="meta must be a dict"):
        lopt.save(tmp_path / "m.lopt", lo, theta, meta=["not", "a", "dict"])
    with pytest.raises(lopt.FrozenFileError, match="missing arrays"):
        lopt.save(tmp_path / "m.lopt", lo, {"mlp": theta["mlp"]})
    diverged = jax.tree.map(lambda x: x * jnp.nan, theta)
    with pytest.raises(ValueError, match="theta holds non-finite values"):
        lopt.save(tmp_path / "m.lopt", lo, diverged)
    assert not (tmp_path / "m.lopt").exists()
    assert not list(tmp_path.glob("*.tmp"))  # no temporary files left behind


def test_missing_truncated_and_garbage_files(saved, tmp_path):
    _, _, path = saved
    with pytest.raises(FileNotFoundError, match="no such frozen-optimizer file"):
        lopt.load(tmp_path / "nope.lopt")
    data = path.read_bytes()
    truncated = tmp_path / "t.lopt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(lopt.FrozenFileError, match="corrupt or truncated"):
        lopt.load(truncated)
    garbage = tmp_path / "g.lopt"
    garbage.write_bytes(b"\x89PNG not an optimizer")
    with pytest.raises(lopt.FrozenFileError, match="not a readable frozen-optimizer file"):
        lopt.load(garbage)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format_version=2), "format version 2 is newer than this lopt reads"),
        (lambda m: m.update(architecture="Shampoo"), "unknown architecture 'Shampoo'"),
        (lambda m: m.update(format="zip"), "does not describe a 'lopt' file"),
        (
            lambda m: m["hparams"].update(hidden=[4, 5]),
            r"array 'mlp/1/b' has shape \(4,\).*needs \(5,\)",
        ),
        (lambda m: m["hparams"].update(hidden=[0]), "bad hyperparameters for MLPLOpt"),
        (lambda m: m["hparams"].update(widths=[3]), "bad hyperparameters for MLPLOpt"),
        (lambda m: m.pop("meta"), "manifest field 'meta' is missing"),
        (lambda m: m.update(format_version=0), "format_version must be a positive integer, got 0"),
        (lambda m: m.update(format_version=True), "must be a positive integer, got True"),
        (lambda m: m["arrays"]["mlp/0/b"].pop("dtype"), "entry of array 'mlp/0/b' is malformed"),
    ],
)
def test_incompatible_manifests(saved, tmp_path, edit, message):
    _, _, path = saved
    with pytest.raises(lopt.FrozenFileError, match=message):
        lopt.load(_rewrite(path, tmp_path / "e.lopt", manifest_fn=edit))


def test_damaged_members(saved, tmp_path):
    _, _, path = saved
    with pytest.raises(lopt.FrozenFileError, match="no manifest.json"):
        lopt.load(_rewrite(path, tmp_path / "a.lopt", drop=("manifest.json",)))
    with pytest.raises(lopt.FrozenFileError, match="'mlp/0/w' is listed but missing"):
        lopt.load(_rewrite(path, tmp_path / "b.lopt", drop=("arrays/mlp/0/w.npy",)))
    with pytest.raises(lopt.FrozenFileError, match=r"'mlp/0/b' unpacks to 11 bytes, but a"):
        lopt.load(
            _rewrite(path, tmp_path / "c.lopt", replace={"arrays/mlp/0/b.npy": b"\x93NUMPY junk"})
        )
    with pytest.raises(lopt.FrozenFileError, match="not valid JSON"):
        lopt.load(_rewrite(path, tmp_path / "d.lopt", replace={"manifest.json": b"{not json"}))
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"code": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(lopt.FrozenFileError, match="'mlp/0/b' is corrupt"):
        lopt.load(
            _rewrite(
                path, tmp_path / "e.lopt", replace={"arrays/mlp/0/b.npy": pickled.read_bytes()}
            )
        )


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def test_non_finite_and_oversized_arrays_are_rejected(saved, tmp_path):
    _, theta, path = saved
    shape = np.shape(theta["mlp"][0]["b"])
    nan = {"arrays/mlp/0/b.npy": _npy(np.full(shape, np.nan, np.float32))}
    with pytest.raises(lopt.FrozenFileError, match="'mlp/0/b' holds non-finite values"):
        lopt.load(_rewrite(path, tmp_path / "nan.lopt", replace=nan))
    # 64 MiB of zeros compresses to a small file: refused before it is unpacked.
    huge = {"arrays/mlp/0/b.npy": _npy(np.zeros(2**24, np.float32))}
    bomb = _rewrite(path, tmp_path / "bomb.lopt", replace=huge, compression=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2**20
    with pytest.raises(lopt.FrozenFileError, match=r"'mlp/0/b' unpacks to \d+ bytes, but a"):
        lopt.load(bomb)
    # A header may claim a terabyte: it is compared with the manifest before reading.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)}
    )
    data = header.getvalue() + bytes(4 * shape[0])  # the size the manifest's shape needs
    liar = _rewrite(path, tmp_path / "liar.lopt", replace={"arrays/mlp/0/b.npy": data})
    with pytest.raises(lopt.FrozenFileError, match=r"'mlp/0/b' is corrupt \(its header declares"):
        lopt.load(liar)
    # A manifest may declare huge arrays consistently (hyperparameters and shapes): refused
    # before anything is allocated.
    wide = lopt.MLPLOpt(hidden=(4, 1_500_000_000))
    shapes = {
        lopt.frozen._path_str(k): list(x.shape)
        for k, x in jax.tree_util.tree_leaves_with_path(lopt.frozen._template(wide))
    }

    def declare_wide(m):
        m["hparams"]["hidden"] = [4, 1_500_000_000]
        for key, entry in m["arrays"].items():
            entry["shape"] = shapes[key]

    with pytest.raises(lopt.FrozenFileError, match=r"declares \d+ bytes, more than the 2147483648"):
        lopt.load(_rewrite(path, tmp_path / "wide.lopt", manifest_fn=declare_wide))


def test_any_damage_to_a_file_is_a_frozen_file_error(tmp_path):
    """Whatever the bytes, ``lopt.load`` loads (a flip in a field zip ignores) or raises
    FrozenFileError: one bit flipped in every byte, 300 random multi-byte corruptions and
    50 truncations of a small file."""
    lo = lopt.MLPLOpt.bare(hidden=(2,))
    data = lopt.save(tmp_path / "s.lopt", lo, lo.init(jax.random.key(0))).read_bytes()
    rng = np.random.default_rng(0)
    cases = []
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        cases.append(bytes(flipped))
    for _ in range(300):
        damaged = np.frombuffer(data, np.uint8).copy()
        at = rng.integers(0, len(data), rng.integers(2, 17))
        damaged[at] = rng.integers(0, 256, len(at), dtype=np.uint8)
        cases.append(damaged.tobytes())
    cases += [data[:n] for n in rng.integers(0, len(data), 50)]
    bad, outcomes = tmp_path / "bad.lopt", {"loaded": 0, "refused": 0}
    for case in cases:
        bad.write_bytes(case)
        try:
            lopt.load(bad)
            outcomes["loaded"] += 1
        except lopt.FrozenFileError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > len(cases) // 2, outcomes


def test_a_run_length_outside_the_trained_horizons_warns(saved, tmp_path):
    lo, theta, path = saved
    assert lopt.load(path).horizons is None  # not recorded: no guard
    frozen = lopt.load(lopt.save(tmp_path / "h.lopt", lo, theta, meta={"horizons": [100, 2000]}))
    assert frozen.horizons == (100, 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for num_steps in (100, 2000):
            frozen.as_optax(num_steps)
    for num_steps in (50, 10_000):
        with pytest.warns(UserWarning, match=f"runs of 100-2000 steps; num_steps={num_steps}"):
            frozen.as_optax(num_steps)


def test_files_load_and_save_under_x64(saved, tmp_path):
    lo, theta, path = saved
    params = {"w": jnp.ones((3, 2))}
    expected = (
        lopt.load(path).as_optax(10).update(params, lo.as_optax(theta, 10).init(params), params)[0]
    )
    with jax.enable_x64(True):
        frozen = lopt.load(path)  # float32 arrays, where lo.init would now give float64
        tx = frozen.as_optax(10)
        params64 = {"w": jnp.ones((3, 2), jnp.float64)}
        u, _ = tx.update(params64, tx.init(params64), params64)
        assert u["w"].dtype == jnp.float64
        np.testing.assert_allclose(u["w"], expected["w"], rtol=1e-6)
        theta64 = lo.init(jax.random.key(3))
        again = lopt.load(lopt.save(tmp_path / "x64.lopt", lo, theta64))
    for a in jax.tree.leaves(again.theta):
        assert a.dtype == np.float32


def test_pretrained_registry():
    assert "mlplopt-mix" in lopt.list_pretrained()
    with pytest.raises(ValueError, match="no pretrained optimizer 'nope'; available: \\["):
        lopt.pretrained("nope", num_steps=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not first warned about as untrained
        with pytest.raises(ValueError, match="must be from 1 to 2147483647"):
            lopt.pretrained("mlplopt-mix", num_steps=2**31)


def test_shipped_optimizer_trains_a_model_in_a_plain_optax_loop():
    """The README's few lines: a flax model, ``lopt.pretrained`` and a hand-written loop."""
    x = jax.random.normal(jax.random.key(0), (64, 8))
    y = (x @ jnp.arange(8.0) > 0).astype(jnp.int32)  # a linearly separable labelling
    model = nn.Dense(2)
    params = model.init(jax.random.key(1), x)

    def loss_fn(params):
        logits = model.apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train(tx, params):
        opt_state = tx.init(params)

        @jax.jit
        def step(params, opt_state):
            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, opt_state = tx.update(grads, opt_state, params, value=loss)
            return optax.apply_updates(params, updates), opt_state

        for _ in range(100):
            params, opt_state = step(params, opt_state)
        return loss_fn(params)

    first = loss_fn(params)
    final = train(lopt.pretrained("mlplopt-mix", num_steps=100), params)
    # It trains the model, further than optax's Adam at its usual 1e-3 in the same steps.
    assert jnp.isfinite(final) and final < 0.5 * first, (first, final)
    assert final < train(optax.adam(1e-3), params)

    meta = lopt.load_pretrained("mlplopt-mix").meta
    assert meta["recipe"]["optimizer"]["architecture"] == "MLPLOpt"
    assert meta["benchmark"]["heldout"]["vs"]["adam"]["tasks"] == 10
