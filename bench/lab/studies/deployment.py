"""What the shipped optimizer gains from a schedule or a rate chosen at deployment.

    python -m bench deployment [--optimizer mlplopt-mix | FILE] [--variants shipped,tail,...]
        [--suite heldout] [--reference RESULTS | none] [--out DIR]

Runs a learned optimizer (the shipped ``mlplopt-mix`` by default; 2 seeds, the suite's
budget) as it is (``shipped``) and with the whole update multiplied at deployment by

- ``tail``: 1, then linear to 0 over the last quarter of the run (a warmup-stable-decay tail);
- ``cosine``: cosine decay from 1 to 0 over the run;
- ``x0.25`` … ``x4``: a constant factor; ``per-task best`` is, per task, the factor with the
  lowest final loss — the shipped optimizer given the per-task rate tuning the baselines get;

and prints each one's final smoothed train loss and won / tied / lost (``bench.metrics.outcome``:
the margin and 2 standard errors over seeds; a diverged variant loses) against the
shipped optimizer and the tuned baselines recorded in ``--reference`` (a ``bench compare``
``results.json`` of the same suite, seeds and selection; the benchmark is deterministic, so
they need not run again).
``bench compare`` needs a baseline of its own: it runs Adam at one rate, which is not used.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import optax

from bench import compare as compare_lib
from bench import metrics
from bench.results import Results
from bench.results import load as load_results

FACTORS = (0.25, 0.5, 2.0, 4.0)
NAMES = ("shipped", "tail", "cosine", *(f"x{f:g}" for f in FACTORS))


class Protocol(NamedTuple):
    """What of a comparison's protocol the variants share with the reference."""

    seeds: int
    selection: str
    margin: float


PROTOCOL = Protocol(seeds=2, selection="train", margin=0.01)  # when no reference gives it


def _tail(num_steps: int, fraction: float = 0.25) -> optax.Schedule:
    start = round(num_steps * (1 - fraction))
    return optax.join_schedules(
        [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, num_steps - start)],
        [start],
    )


def variants(
    optimizer: str = "mlplopt-mix",
) -> dict[str, Callable[[int], optax.GradientTransformation]]:
    """``{variant: num_steps -> optax transform}`` (keys ``NAMES``) for an optimizer as
    ``bench compare --optimizer`` names it: a pretrained name, a ``.lopt`` file, ..."""
    base = compare_lib.resolve(optimizer).learned
    if base is None:
        raise ValueError(f"{optimizer!r} is a baseline; give a learned optimizer")

    def scaled(schedule: Callable[[int], optax.Schedule | float], num_steps: int):
        factor = schedule(num_steps)
        scale = optax.scale_by_schedule(factor) if callable(factor) else optax.scale(factor)
        return optax.chain(base(num_steps), scale)

    out = {
        "shipped": base,
        "tail": functools.partial(scaled, _tail),
        "cosine": functools.partial(scaled, lambda n: optax.cosine_decay_schedule(1.0, n)),
    }
    for f in FACTORS:
        out[f"x{f:g}"] = functools.partial(scaled, lambda n, f=f: f)
    return out


def _mean(seeds: list[float]) -> float:
    """The mean over seeds, +inf when a seed diverged (the worst loss)."""
    return float(metrics.finite_or_inf(np.mean(seeds)))


def table(reference: Results | None, results: Results) -> str:
    """Markdown: the final losses of the recorded baselines (none without ``reference``) and of
    each variant, then each variant's won / tied / lost against the shipped optimizer, each
    baseline and the best baseline of each task."""
    baselines = reference.baselines if reference else []
    margin = (reference or PROTOCOL).margin
    tasks = list(results.tasks)
    names = [
        n
        for n in next(iter(results.tasks.values())).optimizers
        if n not in baselines and n != "adam"
    ]
    # Per task and optimizer, the per-seed final smoothed train losses.
    seeds = {t: {n: results.tasks[t].optimizers[n].finals.train for n in names} for t in tasks}
    for row in seeds.values():
        row["per-task best"] = min(
            (row[n] for n in names if n == "shipped" or n.startswith("x")), key=_mean
        )
    names.append("per-task best")
    for t in tasks:
        for b in baselines:
            seeds[t][b] = reference.tasks[t].optimizers[b].finals.train
        if baselines:
            seeds[t]["best"] = min((seeds[t][b] for b in baselines), key=_mean)
    columns = [*baselines, *names]
    lines = ["| task | " + " | ".join(columns) + " |", "| --- " * (1 + len(columns)) + "|"]
    lines += [
        f"| {t} | " + " | ".join(f"{np.mean(seeds[t][c]):.4g}" for c in columns) + " |"
        for t in tasks
    ]
    against = ["shipped", *baselines, *(["best"] if baselines else [])]
    lines += ["", "| variant | " + " | ".join(f"vs {a}" for a in against) + " |"]
    lines.append("| --- " * (1 + len(against)) + "|")
    for n in names:
        cells = []
        for a in against:
            won = [
                metrics.outcome(
                    np.mean(seeds[t][n]),
                    np.mean(seeds[t][a]),
                    margin,
                    metrics.standard_error(seeds[t][n], seeds[t][a]),
                )
                for t in tasks
            ]
            cells.append(" / ".join(str(won.count(o)) for o in ("won", "tied", "lost")))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parser(prog: str = "python -m bench deployment") -> argparse.ArgumentParser:
    """The command line of ``python -m bench deployment``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--optimizer",
        default="mlplopt-mix",
        help="a learned optimizer as bench compare names it: a pretrained name, a .lopt file, an import path",
    )
    parser.add_argument("--variants", help=f"comma-separated, of {list(NAMES)} (default: all)")
    parser.add_argument("--suite", default="heldout")
    parser.add_argument(
        "--reference",
        default="docs/benchmarks/mlplopt-mix-heldout/results.json",
        help="a results.json of the same suite, or 'none' to compare the variants only",
    )
    parser.add_argument("--out", default="runs/deployment")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench deployment`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""
    reference = None
    if args.reference != "none":
        try:
            reference = load_results(args.reference)
        except (OSError, ValueError) as e:
            cli.error(f"--reference {args.reference}: {e}")
        if reference.suite != args.suite:
            cli.error(f"--reference is a {reference.suite!r} comparison, not {args.suite!r}")
    chosen = args.variants.split(",") if args.variants else list(NAMES)
    if unknown := set(chosen) - set(NAMES):
        cli.error(f"--variants: unknown {sorted(unknown)}; choose from {list(NAMES)}")
    if "shipped" not in chosen:
        cli.error("--variants must include 'shipped', the reference of every other variant")
    try:
        made = variants(args.optimizer)
    except ValueError as e:  # an unknown optimizer, a baseline, a damaged file
        cli.error(f"--optimizer: {e}")
    optimizers = [compare_lib.Optimizer(name, learned=made[name]) for name in chosen]
    results = compare_lib.compare(
        optimizers,
        args.suite,
        baselines=("adam",),
        lr_range=(1e-2, 1e-2),
        max_speedup=1,
        seeds=(reference or PROTOCOL).seeds,
        select=(reference or PROTOCOL).selection,
        margin=(reference or PROTOCOL).margin,
        out=args.out,
        progress=not args.quiet,
        command=command,
    )
    print(table(reference, results))
