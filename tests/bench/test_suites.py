"""The suites: sizes, membership rules, budgets that fit the longer baseline runs, and the
saturation table."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tasks
from bench import compare, suites
from bench.__main__ import main


def test_suites_have_ten_tasks_each_and_indist_keeps_mnist1d_members():
    indist, heldout = suites.get("indist"), suites.get("heldout")
    assert len(indist) == len(heldout) == 10
    assert len({e.name for e in indist + heldout}) == 20
    assert all(e.make().name.startswith("image-mlp/mnist1d-") for e in indist[:3])
    assert "image-mlp#1" not in {e.name for e in indist}  # a digits member: it memorizes
    four = suites.get("heldout-4x")
    assert [e.num_steps for e in four] == [4 * e.num_steps for e in heldout]


@pytest.mark.parametrize("suite", ["smoke", "indist", "heldout"])
def test_every_budget_from_a_quarter_to_four_times_is_an_evaluation_step(suite):
    compare._check_budgets(suites.get(suite), compare.fractions(4))  # raises if not
    with pytest.raises(ValueError, match="not a multiple of its eval_every"):
        compare._check_budgets(suites.get(suite), compare.fractions(64))
    with pytest.raises(ValueError, match="power of two"):
        compare.fractions(3)


def test_saturation_table(capsys):
    assert main(["saturation", "--suite", "smoke", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| smoke | quadratic | 40 |" in out and "| smoke | logreg-digits | 40 |" in out
    ratio = float(out.splitlines()[2].split("|")[-2].split()[0])
    assert 0 < ratio < 1  # Adam made progress on the quadratic
    assert main(["saturation"]) == 2
    assert "give --suite" in capsys.readouterr().err


KEY = jax.random.key(0)


def _shapes_and_rows(task):
    """A task's parameter shapes, and its data as the first 16 values of each example of a
    64-example training batch drawn with a fixed key."""
    shapes = jax.tree.leaves(jax.tree.map(jnp.shape, jax.eval_shape(task.init_fn, KEY)))
    x = np.asarray(task.batch_fn(KEY, "train", 64)["x"]).reshape(64, -1)[:, :16]
    return tuple(shapes), {row.tobytes() for row in x}


@pytest.mark.parametrize("family", ["deep-mlp", "markov-lm"])
def test_wide_training_families_share_no_structure_or_data_with_heldout(family):
    """The families added to widen meta-training differ from every `heldout` task both in
    their parameter shapes and in their data, so that `heldout` stays outside training."""
    held = [_shapes_and_rows(e.make()) for e in suites.get("heldout")]
    fam = tasks.family(family)
    for i in range(30):
        shapes, rows = _shapes_and_rows(fam.task(fam.sample(jax.random.key(i))))
        for held_shapes, held_rows in held:
            assert shapes != held_shapes and not rows & held_rows, (family, i)


def test_the_docs_list_each_suite_as_the_code_builds_it():
    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "suites.md"
    assert suites.markdown() in doc.read_text(), (
        "docs/benchmarks/suites.md's table is stale: paste the output of python -m bench.suites"
    )


def test_the_benchmark_library_never_imports_the_lab():
    """bench's library modules and its command line import nothing of bench.lab until a lab
    command runs."""
    import subprocess
    import sys

    library = "baselines, compare, metrics, parallel, protocols, report, results, runner, suites"
    script = (
        f"import sys; from bench import {library}; import bench.__main__; "
        "print(sorted(m for m in sys.modules if m.startswith('bench.lab')))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_runner_needs_no_meta_training_stack():
    """bench.runner takes its compiler options from meta_train.compile_cache, which imports
    without the trainer, Ray or orbax (meta_train's names load on first use)."""
    import subprocess
    import sys

    script = (
        "import sys, bench.runner; "
        "print(sorted(m for m in ('ray', 'orbax.checkpoint', 'meta_train.trainer') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
