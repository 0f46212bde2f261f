import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tasks import data


def test_digits_split_is_fixed_and_complete():
    a, b = data.digits(), data.digits()
    sizes = {s: a.size(s) for s in data.SPLITS}
    assert sizes == {"train": 1258, "valid": 180, "test": 359}
    assert a.input_shape == (8, 8, 1) and a.num_classes == 10
    assert jnp.array_equal(a.splits["test"][0], b.splits["test"][0])
    x = a.splits["train"][0]
    assert x.dtype == jnp.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_mnist1d_is_generated_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LOPT_CACHE_DIR", str(tmp_path))
    ds = data.mnist1d()
    path = tmp_path / "mnist1d-42.npz"
    assert path.exists()
    assert {s: ds.size(s) for s in data.SPLITS} == {"train": 3600, "valid": 400, "test": 1000}
    assert ds.input_shape == (40,)
    again = data.mnist1d()  # read back from the cache
    assert jnp.array_equal(ds.splits["train"][0], again.splits["train"][0])
    path.write_bytes(b"garbage")  # a corrupt cache is regenerated, not fatal
    regenerated = data.mnist1d()
    assert jnp.array_equal(ds.splits["valid"][1], regenerated.splits["valid"][1])


def test_pydoc_text_windows_are_shifted_targets():
    ds = data.pydoc_text()
    assert ds.vocab_size == 96
    assert ds.size("train") > 300_000
    batch = jax.jit(lambda k: ds.sample(k, "valid", 4, 16))(jax.random.key(0))
    assert batch["x"].shape == batch["y"].shape == (4, 16)
    assert jnp.array_equal(batch["x"][:, 1:], batch["y"][:, :-1])
    text = ds.decode(ds.splits["train"][:2000])
    assert sum(c.isalpha() for c in text) > 1000  # English prose, not noise


def test_synthetic_data_is_reproducible():
    r1, r2 = data.synthetic_regression(seed=3), data.synthetic_regression(seed=3)
    assert jnp.array_equal(r1.splits["train"][1], r2.splits["train"][1])
    assert r1.num_classes is None
    c = data.synthetic_classification(num_classes=5)
    assert c.num_classes == 5 and int(c.splits["train"][1].max()) == 4


def test_label_noise_replaces_a_fixed_fraction_of_labels():
    clean = data.synthetic_classification(num_examples=4000, num_classes=4)
    noisy = data.with_label_noise(clean, 0.4, seed=1)
    y0, y1 = (np.asarray(d.splits["train"][1]) for d in (clean, noisy))
    # A replaced label is a uniform draw, so it changes with probability 1 − 1/4.
    assert np.mean(y0 != y1) == pytest.approx(0.4 * 0.75, abs=0.03)
    assert np.array_equal(noisy.splits["train"][0], clean.splits["train"][0])
    again = data.with_label_noise(clean, 0.4, seed=1)
    assert np.array_equal(again.splits["valid"][1], noisy.splits["valid"][1])
    assert noisy.num_classes == 4 and noisy.name.endswith("noise0.4")
    with pytest.raises(ValueError, match="needs class labels"):
        data.with_label_noise(data.synthetic_regression(), 0.1)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        data.with_label_noise(clean, 1.5)


def _npz(tmp_path, **arrays):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_from_npz_roundtrip_fills_missing_valid(tmp_path):
    rng = np.random.default_rng(0)
    path = _npz(
        tmp_path,
        x_train=rng.normal(size=(50, 3)),
        y_train=rng.integers(0, 3, 50),
        x_test=rng.normal(size=(10, 3)),
        y_test=rng.integers(0, 3, 10),
    )
    ds = data.from_npz(path)
    assert ds.name == "d" and ds.num_classes == 3
    assert (ds.size("train"), ds.size("valid"), ds.size("test")) == (45, 5, 10)
    batch = ds.sample(jax.random.key(0), "train", 7)
    assert batch["x"].shape == (7, 3) and batch["y"].dtype == jnp.int32


def test_from_npz_regression_targets(tmp_path):
    path = _npz(tmp_path, x_train=np.ones((20, 2)), y_train=np.linspace(0, 1, 20))
    ds = data.from_npz(path)
    assert ds.num_classes is None and ds.size("test") == ds.size("valid") == 2


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.ones((4, 2))}, r"missing required array\(s\) \['y_train'\]"),
        (
            {"x_train": np.ones((4, 2)), "y_train": np.ones(3)},
            "x_train has 4 examples but y_train has 3",
        ),
        ({"x_train": np.array(["a", "b"]), "y_train": np.ones(2)}, "x_train has dtype <U1"),
        (
            {"x_train": np.ones((2, 2)), "y_train": np.ones(2), "x_test": np.ones((2, 2))},
            "x_test is present but its pair is missing",
        ),
        ({"x_train": np.ones((0, 2)), "y_train": np.ones(0)}, "split 'train' is empty"),
        ({"x_train": np.full((2, 2), np.nan), "y_train": np.ones(2)}, "NaN or infinite"),
        ({"x_train": np.ones((2, 2)), "y_train": np.array([0, -1])}, "labels must be >= 0"),
    ],
)
def test_from_npz_rejects_bad_arrays(tmp_path, arrays, message):
    with pytest.raises(ValueError, match=message):
        data.from_npz(_npz(tmp_path, **arrays))


def test_from_npz_refuses_pickled_objects(tmp_path):
    path = _npz(tmp_path, x_train=np.array([{"a": 1}, None], dtype=object), y_train=np.ones(2))
    with pytest.raises(ValueError, match="cannot read train arrays"):
        data.from_npz(path)


def test_from_npz_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.from_npz(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00not an archive")
    with pytest.raises(ValueError, match="not a readable .npz archive"):
        data.from_npz(bad)
    single = tmp_path / "single.npy"
    np.save(single, np.ones(3))
    with pytest.raises(ValueError, match="single array"):
        data.from_npz(single)


@pytest.mark.parametrize(
    ("loader", "module", "package"),
    [
        (lambda: data.from_huggingface("mnist", "image", "label"), "datasets", "datasets"),
        (lambda: data.from_tfds("mnist"), "tensorflow_datasets", "tensorflow-datasets"),
    ],
)
def test_optional_loaders_say_what_to_install(monkeypatch, loader, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(ImportError, match=f"pip install {package}"):
        loader()


def test_markov_text_is_deterministic_and_predictable_from_its_context():
    ds = data.markov_text(vocab_size=8, order=1, concentration=0.1, length=4000, seed=1)
    again = data.markov_text(vocab_size=8, order=1, concentration=0.1, length=4000, seed=1)
    assert [ds.size(s) for s in ("train", "valid", "test")] == [3200, 400, 400]
    assert np.array_equal(ds.splits["train"], again.splits["train"])
    ids = np.asarray(ds.splits["train"])
    assert ids.min() >= 0 and ids.max() < 8 and ds.vocab == "abcdefgh"
    # Conditional entropy of the next token given the last one, from bigram counts: peaked
    # Dirichlet(0.1) transitions leave it far below the ln 8 of uniform tokens.
    counts = np.zeros((8, 8))
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    p = counts / counts.sum()
    cond = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    entropy = -np.sum(p * np.log(np.where(cond > 0, cond, 1)))
    assert entropy < 0.6 * np.log(8)
    with pytest.raises(ValueError, match="vocab_size"):
        data.markov_text(vocab_size=1)
