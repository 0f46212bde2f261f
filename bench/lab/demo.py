"""``make demo``: the main job end to end, on the defaults in ``meta_train/configs/demo.yaml``.

1. Meta-trains an MLPLOpt with NRES on the ``image-mlp`` family, its estimates computed by
   two Ray workers of an embedded local Ray instance, and exports it to
   ``runs/demo/optimizer.lopt``; its starting point is exported as ``runs/demo/init.lopt``.
2. Benchmarks both against per-task learning-rate-tuned Adam, at a constant rate and with
   cosine decay, and against optax's Muon with cosine decay at its default rate 0.02, untuned
   (``bench.compare``), on the ``indist`` suite (ten image-mlp members the run
   never sampled; its runs shared among as many Ray workers, one core each), writing
   ``runs/demo/indist/`` (``report.md``, ``results.json``, ``curves.png``,
   ``speedups.png``). ``--suites indist,heldout`` adds the ``heldout`` suite (other
   architectures and losses; about 30 more minutes).
3. Prints a summary table and the paths it wrote.

``python -m bench demo [--config C] [section.field=value ...]`` runs the same pipeline on
another recipe (each row of ``docs/recipes.md`` is one such command).

The learned optimizers are meta-trained on training loss, so tasks are compared (and Adam's
learning rate is chosen) by the final EMA-smoothed training loss.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import time
from collections.abc import Sequence

from bench import compare, metrics
from bench.report import interval, label
from bench.results import Results
from meta_train import compile_cache, load_config, meta_train
from meta_train.config import ConfigError, DistributedConfig, MetaTrainConfig

CONFIG = "demo"
SUITES = ("indist",)
# The comparison's settings: constant and cosine-decayed Adam, each tuned from 9 half-decade
# learning rates from 1e-4 to 1 (then refined), and cosine Muon at its default rate, untuned;
# 2 seeds, run up to 4x the task's steps.
BASELINES = ("adam", "adam-cosine")
TUNING_FREE = ("muon-cosine-default",)
COMPARE = {
    "baselines": BASELINES,
    "tuning_free": TUNING_FREE,
    "select": "train",
    "seeds": 2,
    "lr_range": (1e-4, 1.0),
}
CANDIDATES = ("trained", "init")  # the run's optimizer.lopt and init.lopt


def _beats_init(report: Results) -> tuple[int, int]:
    """Tasks on which the trained optimizer wins against its initialization (final smoothed
    train loss more than the report's margin lower), and the number of tasks."""
    wins = [
        metrics.outcome(*(t.optimizers[c].final_train for c in CANDIDATES), report.margin) == "won"
        for t in report.tasks.values()
    ]
    return sum(wins), len(wins)


def summary_table(reports: dict[str, Results]) -> str:
    """A Markdown table: per suite and candidate, won/tied/lost (by the smoothed train loss,
    and by the validation loss) and the median speedup against each tuned baseline, the best
    of them and the best tuning-free one per task, and the tasks on which training beat the
    initialization."""
    lines = [
        "| suite | optimizer | vs | won / tied / lost | by valid loss | median speedup [95% CI] "
        "| beats init |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for suite, report in reports.items():
        wins, total = _beats_init(report)
        for c in CANDIDATES:
            for b in report.comparisons:
                s = report.summary[c][b]
                beats = f"{wins}/{total}" if c == CANDIDATES[0] else "—"
                lines.append(
                    f"| {suite} | {c} | {label(report, b)} | {s.won} / {s.tied} / {s.lost} | "
                    f"{s.valid.won} / {s.valid.tied} / {s.valid.lost} | "
                    f"{interval(s.median_speedup)} | {beats} |"
                )
    return "\n".join(lines)


def parser(prog: str = "python -m bench demo") -> argparse.ArgumentParser:
    """The command line of ``python -m bench demo``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=CONFIG, help=f"meta-training config ({CONFIG})")
    parser.add_argument(
        "--suites", default=",".join(SUITES), help="comma-separated suites (default: indist)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.field=value",
        help="config overrides, as for python -m meta_train (e.g. run_dir=runs/other)",
    )
    return parser


def train(cfg: MetaTrainConfig) -> tuple[pathlib.Path, pathlib.Path]:
    """Meta-trains by ``cfg``; returns the paths of the trained optimizer
    (``optimizer.lopt``) and of the point it started from (``init.lopt``), both in
    ``cfg.run_dir``."""
    result = meta_train(cfg)
    return result.export_path, result.init_path


def benchmark(
    paths: Sequence[pathlib.Path],
    suite: str,
    dist: DistributedConfig,
    out: pathlib.Path,
    command: str,
) -> Results:
    """``bench.compare`` of the files at ``paths`` on ``suite`` with the demo's settings
    (``COMPARE``), on as many Ray workers as ``dist`` gives meta-training; writes ``out``."""
    return compare.compare(
        [compare.resolve(str(p), name) for p, name in zip(paths, CANDIDATES, strict=True)],
        suite,
        out=out,
        command=command,
        workers=dist.workers,
        address=dist.address,
        **COMPARE,
    )


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench demo`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""
    compile_cache.enable()  # $LOPT_COMPILATION_CACHE, default ~/.cache/lopt/jax; off: 'off'
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, OSError) as e:
        cli.error(str(e))
    run_dir = pathlib.Path(cfg.run_dir)
    if run_dir.exists():
        print(f"replacing the previous demo run in {run_dir}/")
        shutil.rmtree(run_dir)
    suites = [s for s in args.suites.split(",") if s]
    workers = cfg.distributed.workers
    where = f"{workers} Ray workers" if workers else "this process"
    print(
        f"[1/{1 + len(suites)}] meta-training {cfg.optimizer.architecture} with "
        f"{cfg.estimator.name} on {cfg.task.describe()} for {cfg.num_steps} outer steps "
        f"({where})",
        flush=True,
    )
    began = time.perf_counter()
    paths = train(cfg)
    print(f"      done in {time.perf_counter() - began:.0f} s; exported {paths[0]}")
    reports = {}
    for i, suite in enumerate(suites, start=2):
        print(
            f"\n[{i}/{1 + len(suites)}] benchmarking on `{suite}` against {', '.join(BASELINES)} "
            f"tuned over learning rates {COMPARE['lr_range'][0]:g}..{COMPARE['lr_range'][1]:g} "
            f"and {', '.join(TUNING_FREE)} untuned ({where})",
            flush=True,
        )
        began = time.perf_counter()
        reports[suite] = benchmark(
            paths, suite, cfg.distributed, run_dir / suite, f"{command}  # {suite}"
        )
        print(f"      done in {time.perf_counter() - began:.0f} s", flush=True)
    if reports:
        print("\nWon / lost = final smoothed train loss (or validation loss) below / above the")
        print("baseline's at the same budget by more than 1% and 2 standard errors over seeds;")
        print("speedup = the budget the baseline needs to reach the optimizer's final loss /")
        print("the optimizer's steps (measured up to 4x).\n")
        print(summary_table(reports))
    print(f"\nwrote {run_dir}/:")
    print("  optimizer.lopt   the meta-trained optimizer (lopt.load(...).as_optax(num_steps))")
    print("  init.lopt        its initialization")
    print("  metrics.jsonl    one record per outer step; config.yaml; checkpoints/")
    for suite in reports:
        print(f"  {suite}/report.md, curves.png, speedups.png, results.json")
