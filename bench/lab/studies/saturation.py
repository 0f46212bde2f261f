"""Does a suite saturate? Tuned Adam's final smoothed train loss ÷ the initial loss, per task.

    python -m bench saturation --suite indist --suite heldout
    python -m bench saturation --family image-mlp --count 40     # members 0..39, unfiltered

A task on which a tuned baseline reaches ~0 cannot tell optimizers apart; the built-in
suites keep every task above ``THRESHOLD`` (5%) at their budget.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NamedTuple

from bench import baselines, protocols, runner, suites
from meta_train import compile_cache

THRESHOLD = 0.05


class Row(NamedTuple):
    suite: str
    task: str
    num_steps: int
    learning_rate: float  # Adam's tuned learning rate
    final: float  # its final smoothed train loss (mean over seeds)
    initial: float  # the validation loss at initialization (mean over seeds)

    @property
    def ratio(self) -> float:
        return self.final / self.initial


def measure(
    suite: str,
    entries: Sequence[suites.Entry],
    seeds: int = 2,
    lr_range: tuple[float, float] = (1e-4, 1.0),
) -> list[Row]:
    """Tunes Adam's learning rate on every task of ``entries`` (half-decade grid × seeds,
    chosen by the final smoothed train loss) and records its final ÷ initial loss; rows are
    labelled with ``suite``."""
    adam, rows = baselines.get("adam"), []
    space = {"learning_rate": protocols.lr_grid(*lr_range)}
    for entry in entries:
        task = entry.make()
        curves = runner.run(task, adam.tx, space, seeds, entry.num_steps, entry.eval_every)
        best, scores = protocols.choose(curves, "train")
        initial = float(curves.valid[best, :, 0].mean())
        lr = float(space["learning_rate"][best])
        rows.append(Row(suite, entry.name, entry.num_steps, lr, float(scores[best]), initial))
    return rows


def markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| suite | task | steps | tuned Adam lr | final smoothed train | initial | final ÷ initial |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        flag = "" if r.ratio >= THRESHOLD else " (saturates)"
        lines.append(
            f"| {r.suite} | {r.task} | {r.num_steps} | {r.learning_rate:.3g} | {r.final:.4g} | "
            f"{r.initial:.4g} | {r.ratio:.3f}{flag} |"
        )
    return "\n".join(lines)


def parser(prog: str = "python -m bench saturation") -> argparse.ArgumentParser:
    """The command line of ``python -m bench saturation``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", action="append", default=[], help=f"of {suites.SUITES}")
    parser.add_argument("--family", help="instead, the first --count members of a task family")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=2)
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> int:
    """Runs ``python -m bench saturation`` with ``args`` parsed by ``cli``."""
    compile_cache.enable()  # $LOPT_COMPILATION_CACHE, default ~/.cache/lopt/jax; off: 'off'
    if args.seeds < 1 or args.count < 1:
        print("error: --seeds and --count must be >= 1", file=sys.stderr)
        return 2
    groups = [(s, suites.get(s)) for s in args.suite]
    if args.family:
        groups.append((args.family, suites.members(args.family, args.count)))
    if not groups:
        raise ValueError("give --suite NAME (repeatable) or --family NAME")
    rows = [row for name, entries in groups for row in measure(name, entries, seeds=args.seeds)]
    print(markdown(rows))
    return 0
