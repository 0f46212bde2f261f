"""Does training longer help? Final losses at 4× a suite's budget against 1×, and why not.

    python -m bench stability docs/benchmarks/x-heldout/results.json \\
        docs/benchmarks/x-heldout-4x/results.json

reads two ``bench compare`` reports of the same tasks (``<suite>`` and ``<suite>-4x``) and
prints, per task, each optimizer's final loss (the deciding metric) at both budgets and their
ratio 4× ÷ 1×, each baseline tuned at its own budget. Below 1: the longer run ends lower, as
it does for a stable optimizer; a final ÷ best of one noisy curve would not say that."""

from __future__ import annotations

import argparse

import numpy as np

from bench import results
from bench.results import Results


def ratios(one: Results, four: Results) -> dict[str, dict[str, float]]:
    """``{optimizer: {task: final loss at 4× ÷ final loss at 1×}}`` for the optimizers and
    tasks both reports have (a ``-4x`` suite's tasks are named like the base suite's)."""
    select = one.selection
    if four.selection != select:
        raise ValueError(f"the reports decide by different metrics: {select}, {four.selection}")
    tasks = [t for t in one.tasks if t in four.tasks]
    if not tasks:
        raise ValueError("the two reports have no task in common")
    names = [n for n in one.tasks[tasks[0]].optimizers if n in four.tasks[tasks[0]].optimizers]
    out: dict[str, dict[str, float]] = {}
    for name in names:
        out[name] = {}
        for t in tasks:
            short = one.tasks[t].optimizers[name].final(select)
            long = four.tasks[t].optimizers[name].final(select)
            out[name][t] = _ratio(long, short)
    return out


def _ratio(long: float, short: float) -> float:
    if not (np.isfinite(long) and np.isfinite(short)):
        return float("inf")  # a diverged run
    return long / short


def markdown(one: Results, four: Results) -> str:
    """The per-task table and, per optimizer, the median ratio and the tasks it got worse on."""
    r = ratios(one, four)
    names = list(r)
    tasks = list(next(iter(r.values())))
    lines = [
        "| task | " + " | ".join(f"{n} 4× ÷ 1×" for n in names) + " |",
        "| --- " * (1 + len(names)) + "|",
    ]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(f"{r[n][t]:.2f}" for n in names) + " |")
    lines.append(
        "| median | " + " | ".join(f"{np.median(list(r[n].values())):.2f}" for n in names) + " |"
    )
    lines.append(
        "| worse at 4× | "
        + " | ".join(f"{sum(v > 1 for v in r[n].values())}/{len(tasks)}" for n in names)
        + " |"
    )
    return "\n".join(lines)


def parser(prog: str = "python -m bench stability") -> argparse.ArgumentParser:
    """The command line of ``python -m bench stability``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("one", help="results.json of a suite (e.g. heldout)")
    parser.add_argument("four", help="results.json of its -4x suite")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> int:
    """Runs ``python -m bench stability`` with ``args`` parsed by ``cli``."""
    one, four = (results.load(p) for p in (args.one, args.four))
    print(markdown(one, four))
    return 0
