"""``python -m bench compare ...`` (also the ``lopt-bench`` command).

    python -m bench compare --optimizer my.lopt [--optimizer adamw ...] --suite heldout \\
        --baselines adam,adamw --protocol lr-grid --out reports/x
"""

from __future__ import annotations

import argparse
import shlex
import sys

import lopt
from bench import baselines, protocols, suites
from bench.compare import compare


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
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
        help=f"a .lopt file, a pretrained name {lopt.list_pretrained()} or a baseline name "
        "(tuned by the protocol); repeat for several",
    )
    p.add_argument("--suite", required=True, help=f"one of {suites.SUITES}")
    p.add_argument(
        "--baselines",
        default="adam",
        help=f"comma-separated, of {sorted(baselines.BASELINES)} (default: adam)",
    )
    p.add_argument("--protocol", default="lr-grid", choices=protocols.PROTOCOLS)
    p.add_argument("--select", default="valid", choices=protocols.SELECT, help="tuning criterion")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--trials", type=int, default=16, help="random-search trials per baseline")
    p.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="lr-grid range (default 3.2e-7 1: 14 half-decade points)",
    )
    p.add_argument("--out", default="reports/compare")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    if args.seeds < 1 or args.trials < 1:
        parser.error("--seeds and --trials must be >= 1")
    try:
        report = compare(
            args.optimizer,
            args.suite,
            [b for b in args.baselines.split(",") if b],
            args.protocol,
            args.out,
            seeds=args.seeds,
            trials=args.trials,
            select=args.select,
            lr_range=tuple(args.lr_range) if args.lr_range else None,
            progress=not args.quiet,
            command="python -m bench " + shlex.join(argv),
        )
    except (ValueError, OSError) as e:  # unknown names, unreadable or invalid files
        print(f"error: {e}", file=sys.stderr)
        return 2
    for c, per_baseline in report["summary"].items():
        for b, s in per_baseline.items():
            m = s["median_speedup"]
            print(
                f"{c} vs tuned {b}: won {s['won']}/{s['tasks']} tasks, median speedup "
                f"{m['estimate']:.2f}x [{m['low']:.2f}, {m['high']:.2f}]"
            )
    print(f"wrote {args.out}/report.md, results.json, curves.png, speedups.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
