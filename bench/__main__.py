"""``python -m bench <command> ...`` (also the ``lopt-bench`` command): every benchmark,
study and tool of the package, one subcommand each.

    python -m bench compare --optimizer my.lopt [--optimizer adamw ...] --suite heldout \\
        --baselines adam,adam-cosine,muon-cosine,sf-adamw --protocol lr-grid --out reports/x \\
        [--tuning-free muon-cosine-default,sf-adamw-default,...]
    python -m bench saturation --suite indist --suite heldout
    python -m bench stability reports/x/results.json reports/x-4x/results.json
    python -m bench trace --optimizer mlplopt-mix --task deepmlp-mnist1d --steps 2000
    python -m bench ablation reports/x/results.json --against muon-cosine-default,sf-adamw
    python -m bench demo [section.field=value ...]       # make demo; a docs/recipes.md row
    python -m bench perf sweep                            # and update, unroll, compile, ...
    python -m bench ship NAME runs/x/optimizer.lopt reports/x/results.json

The commands of their own modules (``TOOLS``) are parsed by the module's ``parser`` and run
by its ``run_command``.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

import lopt
from bench import baselines, invocation, protocols, suites
from bench import report as report_lib
from bench.compare import compare
from meta_train import compile_cache

# The subcommands whose module parses its own arguments: name -> (module, what it does).
TOOLS = {
    "demo": ("bench.lab.demo", "make demo: meta-train, export and benchmark one recipe"),
    "perf": (
        "bench.lab.perf",
        "performance benchmarks, each a ratio to a reference in the same run",
    ),
    "estimators": (
        "bench.lab.studies.estimator_curves",
        "gradient estimators' meta-training curves on one task",
    ),
    "deployment": (
        "bench.lab.studies.deployment",
        "a learned optimizer's deployment variants on a suite",
    ),
    "family-eval": (
        "bench.lab.studies.family_eval",
        "a .lopt file against Adam on a family's members",
    ),
    "ablation": (
        "bench.lab.studies.ablation",
        "one row per candidate of a comparison: won/tied/lost against chosen baselines",
    ),
    "ship": ("bench.lab.ship", "a trained .lopt file, with its benchmark, into lopt/pretrained/"),
    "saturation": (
        "bench.lab.studies.saturation",
        "tuned Adam's final ÷ initial loss per task of a suite (Markdown table)",
    ),
    "stability": (
        "bench.lab.studies.stability",
        "per task, final loss at 4x the budget / at 1x, from two compare reports",
    ),
    "trace": (
        "bench.lab.studies.trace",
        "one long run: loss, weight-matrix size and rate at ten points (Markdown table)",
    ),
}


def _prog() -> str:
    """Run as the installed `lopt-bench` command, or as `python -m bench`."""
    return "lopt-bench" if pathlib.Path(sys.argv[0]).name == "lopt-bench" else "python -m bench"


def tool_parser(name: str) -> argparse.ArgumentParser:
    """The command line of the subcommand ``name`` of ``TOOLS``; its module's
    ``run_command(args, cli, command)`` runs it."""
    return importlib.import_module(TOOLS[name][0]).parser(f"{_prog()} {name}")


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench`` (``lopt-bench``); a subcommand of ``TOOLS``
    is listed here and parsed by :func:`tool_parser`."""
    parser = argparse.ArgumentParser(
        prog=_prog(), description="Benchmark optimizers against baselines tuned per task."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "compare",
        help="optimizers vs tuned baselines on a suite",
        description="Writes report.md, results.json, curves.png and speedups.png to --out.",
    )
    p.add_argument(
        "--optimizer",
        action="append",
        required=True,
        metavar="X",
        help=f"a .lopt file, a pretrained name {lopt.list_pretrained()}, a baseline name "
        "(tuned by the protocol) or an import path package.module:factory to a function "
        "num_steps -> optax transform; repeat for several",
    )
    p.add_argument(
        "--suite",
        required=True,
        help=f"one of {suites.SUITES}, or an import path package.module:attribute to a list "
        "of bench.suites.Entry",
    )
    p.add_argument(
        "--baselines",
        default=",".join(baselines.STRONG),
        help=f"comma-separated, of {sorted(baselines.BASELINES)} "
        f"(default: {','.join(baselines.STRONG)})",
    )
    p.add_argument(
        "--tuning-free",
        default=",".join(baselines.TUNING_FREE),
        metavar="NAMES",
        help="comma-separated baselines run once per seed at their published defaults, "
        "untuned (the -default names; 'none' for none; default: "
        f"{','.join(baselines.TUNING_FREE)})",
    )
    p.add_argument("--protocol", default="lr-grid", choices=protocols.PROTOCOLS)
    p.add_argument(
        "--select",
        default="train",
        choices=protocols.SELECT,
        help="the deciding metric: final smoothed train loss (default) or final valid loss",
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16, help="random-search trials per baseline")
    p.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="lr-grid range (default 3.2e-7 1: 14 half-decade points)",
    )
    p.add_argument(
        "--max-speedup",
        type=int,
        default=4,
        metavar="K",
        help="baselines also run up to K x the task's steps, so speedups up to K are measured "
        "(a power of two; default 4)",
    )
    p.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="relative margin of a win or a loss; closer is a tie (default 0.01)",
    )
    p.add_argument("--out", default="reports/compare")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N units (one optimizer on one task, its tuning included) at a time on Ray "
        "workers of one core each (default: one after another in this process)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --workers, the Ray cluster to run on ('auto' or host:port; default: a "
        "local Ray instance)",
    )
    for name, (_, what) in TOOLS.items():
        sub.add_parser(name, help=what, add_help=False)
    return parser


# What a command reports as one "error: ..." line and exit status 2, without a traceback:
# unknown names, bad or damaged files, dead workers.
_USER_ERRORS = (ValueError, OSError, RuntimeError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:  # parsed and run by the tool's module
        cli = tool_parser(argv[0])
        module = importlib.import_module(TOOLS[argv[0]][0])
        args = cli.parse_args(argv[1:])
        try:
            return module.run_command(args, cli, invocation(_prog(), argv)) or 0
        except _USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    cli = parser()
    args = cli.parse_args(argv)
    compile_cache.enable()  # $LOPT_COMPILATION_CACHE, default ~/.cache/lopt/jax; off: 'off'
    return _compare(args, cli, argv)


def _compare(args, cli: argparse.ArgumentParser, argv: list[str]) -> int:
    if args.seeds < 1 or args.trials < 1:
        cli.error("--seeds and --trials must be >= 1")
    if args.ray_address and args.workers is None:
        cli.error("--ray-address needs --workers N")
    if (pathlib.Path(args.out) / "results.json").exists():
        print(f"note: replacing the report in {args.out}", file=sys.stderr)
    try:
        report = compare(
            args.optimizer,
            args.suite,
            [b for b in args.baselines.split(",") if b],
            args.protocol,
            args.out,
            tuning_free=[b for b in args.tuning_free.split(",") if b not in ("", "none")],
            seeds=args.seeds,
            trials=args.trials,
            select=args.select,
            lr_range=tuple(args.lr_range) if args.lr_range else None,
            max_speedup=args.max_speedup,
            margin=args.margin,
            progress=not args.quiet,
            command=invocation(_prog(), argv),
            workers=args.workers,
            address=args.ray_address,
        )
    except _USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c, per_baseline in report.summary.items():
        for b, s in per_baseline.items():
            m = s.median_speedup
            speedup = (
                "speedups not measured (--max-speedup 1)"
                if report.max_speedup == 1
                else f"median speedup {m.estimate:.2f}x [{m.low:.2f}, {m.high:.2f}]"
                + (f" ({s.bounds} of them bounds: see report.md)" if s.bounds else "")
            )
            print(
                f"{c} vs {report_lib.label(report, b)}: won {s.won}, tied {s.tied}, lost "
                f"{s.lost} of {s.tasks} tasks (by valid loss {s.valid.won}/{s.valid.tied}/"
                f"{s.valid.lost}), {speedup}"
            )
    print(f"wrote {args.out}/report.md, results.json, curves.png, speedups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
