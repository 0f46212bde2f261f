"""An ablation table from one ``bench compare`` of several candidates: one row each.

    python -m bench ablation RESULTS [--against muon-cosine-default,"best tuning-free",...]
        [--per-task]

Reads a ``results.json`` and prints, per candidate, its won / tied / lost by the final
train loss and by the final validation loss (the noise-aware outcomes the comparison
recorded) against each of ``--against`` (baselines or the comparison's ``best tuned`` /
``best tuning-free``), and its median time per step as a ratio to the first of them.
Candidates compared in one run share every baseline run, so rows differ only by their
candidates. ``--per-task`` adds one row per task: the final train loss (mean over seeds) of
the first of ``--against`` and of each candidate, ``+`` / ``−`` where the candidate won /
lost against it.
"""

from __future__ import annotations

import argparse
import statistics

from bench.results import BEST, BEST_FREE, Results
from bench.results import load as load_results

AGAINST = ("muon-cosine-default", BEST_FREE, "muon-cosine", "sf-adamw", BEST)


def counts(results: Results, candidate: str, against: str, metric: str) -> tuple[int, int, int]:
    """(won, tied, lost) of ``candidate`` against ``against`` over the tasks, by ``metric``
    (``train`` or ``valid``)."""
    outcomes = [
        getattr(task.optimizers[candidate].vs[against], f"{metric}_outcome")
        for task in results.tasks.values()
    ]
    return tuple(outcomes.count(o) for o in ("won", "tied", "lost"))


def table(results: Results, against: tuple[str, ...] = AGAINST) -> str:
    """The Markdown table (module docstring)."""
    fmt = lambda c: "/".join(map(str, c))
    head = ["candidate", *(f"vs {a}: train · valid" for a in against)]
    head.append(f"time/step ÷ {against[0]}")
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    for c in results.candidates:
        cells = [
            f"{fmt(counts(results, c, a, 'train'))} · {fmt(counts(results, c, a, 'valid'))}"
            for a in against
        ]
        ratio = statistics.median(
            task.optimizers[c].vs[against[0]].time_ratio for task in results.tasks.values()
        )
        lines.append(f"| {c} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def per_task(results: Results, against: str) -> str:
    """The ``--per-task`` Markdown table (module docstring); ``against`` is a baseline run
    in the comparison."""
    mark = {"won": " +", "lost": " −"}
    head = ["task", against, *results.candidates]
    lines = ["| " + " | ".join(head) + " |", "| --- " * len(head) + "|"]
    for name, task in results.tasks.items():
        cells = [f"{task.optimizers[against].final_train:.4g}"]
        for c in results.candidates:
            record = task.optimizers[c]
            cells.append(
                f"{record.final_train:.4g}{mark.get(record.vs[against].train_outcome, '')}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parser(prog: str = "python -m bench ablation") -> argparse.ArgumentParser:
    """The command line of ``python -m bench ablation``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="a results.json of bench compare")
    parser.add_argument(
        "--against",
        default=",".join(AGAINST),
        help=f"comma-separated baselines or comparisons (default: {','.join(AGAINST)})",
    )
    parser.add_argument(
        "--per-task",
        action="store_true",
        help="also each task's final train loss, of the first of --against and each candidate",
    )
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Prints the table of ``args.results`` (``command``: the command line, unused)."""
    del command
    try:
        results = load_results(args.results)
    except (OSError, ValueError) as e:
        cli.error(f"{args.results}: {e}")
    against = tuple(args.against.split(","))
    compared = set(next(iter(results.tasks.values())).optimizers) | {BEST, BEST_FREE}
    if unknown := [a for a in against if a not in compared]:
        cli.error(
            f"--against: {unknown} were not in this comparison; choose from {sorted(compared)}"
        )
    print(table(results, against))
    if args.per_task:
        if against[0] in (BEST, BEST_FREE):
            cli.error(f"--per-task needs a baseline first in --against, not {against[0]!r}")
        print()
        print(per_task(results, against[0]))
