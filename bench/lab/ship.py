"""Ship a trained optimizer as package data: ``lopt/pretrained/<name>.lopt``.

    python -m bench ship mlplopt-mix runs/pretrained-mlplopt-mix/optimizer.lopt \\
        docs/benchmarks/mlplopt-mix-heldout/results.json docs/benchmarks/mlplopt-mix-heldout-4x/results.json

The shipped file keeps the run's metadata (its recipe) and adds ``benchmark``: for each
``bench compare`` report, its suite's summary of the candidate against every baseline
(tasks won, fraction won, median and IQM speedup with 95% intervals), the protocol and the
command that produced it. ``lopt.pretrained(name, num_steps)`` then returns its transform.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import lopt
from bench import results

PRETRAINED_DIR = pathlib.Path(lopt.__file__).parent / "pretrained"


def benchmark_entry(report: results.Results, candidate: str) -> dict[str, Any]:
    """The part of a ``bench compare`` report kept in the metadata (JSON)."""
    if candidate not in report.summary:
        raise ValueError(
            f"report on {report.suite!r} has no candidate {candidate!r}; "
            f"it has {list(report.summary)}"
        )
    return {
        "vs": results.plain(report.summary[candidate]),
        "protocol": report.protocol,
        "selection": report.selection,
        "seeds": report.seeds,
        "command": report.command,
        "date": report.date,
    }


def ship(
    name: str,
    source: str | pathlib.Path,
    reports: list[str | pathlib.Path],
    folder: str | pathlib.Path = PRETRAINED_DIR,
) -> pathlib.Path:
    """Copies the frozen optimizer ``source`` to ``<folder>/<name>.lopt`` (by default
    ``lopt/pretrained``) with the benchmark summaries of ``reports`` (``bench compare``
    ``results.json`` files, whose candidate is named like ``source``) in its metadata."""
    frozen = lopt.load(source)
    candidate = pathlib.Path(source).name.removesuffix(".lopt")
    benchmark = {}
    for path in reports:
        report = results.load(path)
        benchmark[report.suite] = benchmark_entry(report, candidate)
    meta = {**frozen.meta, "name": name, "benchmark": benchmark}
    path = pathlib.Path(folder) / f"{name}.lopt"
    return lopt.save(path, frozen.architecture, frozen.theta, meta)


def parser(prog: str = "python -m bench ship") -> argparse.ArgumentParser:
    """The command line of ``python -m bench ship``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the name users pass to lopt.pretrained")
    parser.add_argument("source", help="the trained .lopt file")
    parser.add_argument("reports", nargs="*", help="bench compare results.json files")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench ship`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""
    print(f"wrote {ship(args.name, args.source, args.reports)}")
