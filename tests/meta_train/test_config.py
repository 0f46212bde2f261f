import dataclasses
import pathlib
import pickle

import pytest

from meta_train import reference
from meta_train.config import ConfigError, EstimatorConfig, MetaTrainConfig
from meta_train.config_io import apply_overrides, dump_config, from_dict, load_config, to_dict


def test_defaults_round_trip_through_a_dict():
    cfg = MetaTrainConfig()
    assert from_dict(MetaTrainConfig, to_dict(cfg)) == cfg
    assert cfg.task.family == "image-mlp" and cfg.estimator.name == "NRES"


def test_a_dumped_config_loads_back_equal(tmp_path):
    """Strings that read as numbers (``1e5``) are quoted, small floats keep their value."""
    cfg = dataclasses.replace(MetaTrainConfig(), run_dir="1e5", seed=3)
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "task: {name: quadratic}\nestimator: {sigma: 1e-1, schedule: {kind: constant}}\n"
        "outer: {learning_rate: 3.0e4}\n"
    )
    overrides = ["estimator.window=7", "optimizer.hparams={hidden: [3], step_scale: 2e-3}"]
    cfg = load_config(path, [*overrides, "seed=4", "meta_loss.floor=1E-3"])
    assert cfg.task.name == "quadratic" and cfg.task.family is None
    # Scientific notation without a dot or a signed exponent is a number (YAML 1.1: a string).
    assert cfg.estimator.sigma == 0.1 and cfg.outer.learning_rate == 3e4
    assert cfg.meta_loss.floor == 1e-3 and cfg.optimizer.hparams["step_scale"] == 2e-3
    assert cfg.estimator.window == 7
    assert cfg.estimator.schedule.kind == "constant"
    assert cfg.optimizer.build().hidden == (3,)
    assert cfg.seed == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["estimator.sigma=0"], r"estimator.sigma: must be > 0, got 0.0"),
        (["estimator.name=SGD"], r"estimator.name: must be one of \['NRES', 'PES'"),
        (["estimator.sigmaa=1"], r"estimator: unknown field\(s\) \['sigmaa'\]; allowed: \['name'"),
        (["num_steps=ten"], r"num_steps: must be an integer, got 'ten'"),
        (["estimator.stagger=3"], r"estimator.stagger: must be true or false"),
        (["task.name=nope", "task.family=null"], r"task.name: must be one of \["),
        (["task.name=quadratic", "task.family=image-mlp"], r"task: set exactly one of name"),
        (
            ["optimizer.architecture=Shampoo"],
            r"optimizer.architecture: must be one of \['HyperAdam'",
        ),
        (
            ["optimizer.hparams={hidden: [0]}"],
            r"optimizer.hparams: MLPLOpt.hidden must be positive",
        ),
        (["meta_loss.clip=0.5"], r"meta_loss.clip: must be > 1, got 0.5"),
        (["estimator.sigma=.inf"], r"estimator.sigma: must be a finite number, got inf"),
        ([f"outer.clip_norm={10**400}"], r"outer.clip_norm: must be a finite number, got 1000"),
        (["outer.learning_rate=.nan"], r"outer.learning_rate: must be a finite number, got nan"),
        (["task.augment.loss_scale=[1, .inf]"], r"loss_scale\[1\]: must be a finite number"),
        (["validation.horizon=0"], r"validation.horizon: must be >= 1, got 0"),
        (
            ["estimator.difference=size"],
            r"estimator.difference: must be one of \['value', 'sign'\]",
        ),
        (["meta_loss.floor=1"], r"meta_loss.floor: must be in \(0, 1\), got 1.0"),
        (
            ["estimator.schedule={min_length: 50, max_length: 10}"],
            r"estimator.schedule.max_length: must be >= min_length \(50\), got 10",
        ),
        (
            ["outer.max_staleness=200", "num_steps=100"],
            r"outer.max_staleness: must be < num_steps \(100\)",
        ),
        (["noequals"], r"an override must look like section.field=value"),
        (["task.family=[image-mlp, nope]"], r"task.family: must be one of \['char-lm'.*got 'nope'"),
        (["task.family=[]"], r"task.family: must name at least one family"),
        (["task.family=3"], r"task.family: must be a string, got 3 or must be a list, got 3"),
        (
            ["task.augment.param_scale=[2, 1]"],
            r"task.augment.param_scale: must be \[low, high\] with 0 < low <= high",
        ),
        (["task.augment.loss_scale=[1]"], r"task.augment.loss_scale: must have 2 items"),
        (
            ["distributed.worker_env={A: x, B: 3}"],
            r"^distributed.worker_env.B: must be a string, got 3$",
        ),
        (["task.family=[image-mlp, 3]"], r"or task.family\[1\]: must be a string, got 3$"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("estimator: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as error:
        load_config(bad)
    assert "\n" not in str(error.value) and "line 2" in str(error.value)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="config: must be a mapping"):
        load_config(scalar)
    with pytest.raises(ConfigError, match="config: must be a mapping"):
        load_config(scalar, ["seed=1"])


def test_overrides_do_not_mutate_their_input():
    data = {"estimator": {"sigma": 0.1}}
    out = apply_overrides(data, ["estimator.sigma=0.2"])
    assert data["estimator"]["sigma"] == 0.1 and out["estimator"]["sigma"] == 0.2


def test_a_family_mixture_with_augmentation():
    cfg = load_config(
        None,
        ["task.family=[image-mlp, quadratic]", "task.augment={param_scale: [0.5, 2]}"],
    )
    assert cfg.task.families == ("image-mlp", "quadratic")
    assert cfg.task.augment.param_scale == (0.5, 2.0) and cfg.task.augment.active
    assert cfg.task.describe() == "image-mlp + quadratic (augmented)"
    assert from_dict(MetaTrainConfig, to_dict(cfg)) == cfg
    assert MetaTrainConfig().task.families == ("image-mlp",)


def test_the_config_reference_documents_every_field_and_is_current():
    rows = reference.rows()
    paths = [path for path, *_ in rows]
    assert "estimator.schedule.max_length" in paths and "distributed.worker_env" in paths
    assert all(text for *_, text in rows)
    allowed = {path: allowed for path, _, allowed, _ in rows}
    assert allowed["estimator.sigma"] == "> 0" and allowed["estimator.stagger"] == ""
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "config.md"
    assert docs.read_text() == reference.markdown(), (
        "run: python -m meta_train.reference > docs/config.md"
    )

    @dataclasses.dataclass
    class Undocumented:
        """One field documented.

        Attributes:
          a: described.
        """

        a: int = 0
        b: int = 1

    with pytest.raises(ValueError, match=r"Undocumented.b \(x.b\) has no description"):
        reference.rows(Undocumented, "x.")


def test_shipped_configs_load_by_name():
    from meta_train.config_io import CONFIGS

    assert {"demo", "smoke", "pretrained-mlplopt-mix"} <= set(CONFIGS)
    for name in CONFIGS:  # every shipped config passes the schema's rules
        load_config(name)
    demo = load_config("demo")
    assert demo.num_steps == 800 and demo.optimizer.hparams["step_mode"] == "orthogonal"
    with pytest.raises(ConfigError, match=r"no config file 'dmeo' and no shipped config .*'demo'"):
        load_config("dmeo")
    with pytest.raises(ConfigError, match="cannot read config file nowhere.yaml"):
        load_config("nowhere.yaml")
    # The wider recipe is the base one with the overrides its ablation row documents.
    wide = [
        "task.family=[image-mlp, deep-mlp, markov-lm]",
        "task.resample_every=100",
        "num_steps=300",
        "distributed.workers=2",
        "distributed.estimates_per_step=8",
        "run_dir=runs/learned-muon-wide",
    ]
    assert load_config("learned-muon", wide) == load_config("learned-muon-wide")


def test_a_section_names_its_own_fields_and_the_loader_puts_its_path_in_front():
    with pytest.raises(ConfigError, match=r"^sigma: must be > 0, got 'x'$"):
        EstimatorConfig(sigma="x")  # a value the rule cannot compare is not allowed
    with pytest.raises(ConfigError, match=r"^estimator.sigma: must be > 0, got -1.0$"):
        load_config(None, ["estimator.sigma=-1"])
    with pytest.raises(ConfigError, match=r"^task.name: must be one of \["):
        MetaTrainConfig().with_task("nope")  # the section it builds, by its path
    error = ConfigError("must be > 0", field="sigma").within("estimator")
    assert str(pickle.loads(pickle.dumps(error))) == "estimator.sigma: must be > 0"  # Ray-safe
