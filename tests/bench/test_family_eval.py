import jax

import lopt
from bench.__main__ import main
from bench.lab.studies import family_eval
from meta_train.validation import held_out_tasks


def test_scores_trained_init_and_adam(tmp_path):
    lo = lopt.MLPLOpt(hidden=(2,))
    theta = lo.init(jax.random.fold_in(jax.random.key(3), 0))  # what the trainer draws for seed 3
    path = lopt.save(tmp_path / "o.lopt", lo, theta, meta={"recipe": {"seed": 3}})
    result = family_eval.evaluate(str(path), "quadratic", members=1, horizon=10)
    (row,) = result["rows"]
    assert set(row) == {"task", "trained", "init", *(f"adam {lr:g}" for lr in family_eval.ADAM_LRS)}
    assert row["trained"] == row["init"]  # an untrained file scores exactly as its init
    assert row["adam 0.03"] < row["init"]  # Adam makes progress; the untrained MLPLOpt barely moves
    # The members meta-validation scores, by the same Validator.
    (task,) = held_out_tasks(None, ("quadratic",), 1)
    assert row["task"] == task.name


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert (
        main(["family-eval", str(tmp_path / "nope.lopt"), "--out", str(tmp_path / "x.json")]) == 2
    )
    assert "no such frozen-optimizer file" in capsys.readouterr().err
