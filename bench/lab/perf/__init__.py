"""Performance benchmarks. Every figure is a ratio against a reference measured in the same run.

    python -m bench perf update [--sizes 270k,1M,4M,16M] [--out perf-update.json]
    python -m bench perf unroll [--tasks mlp-digits,...] [--out perf-unroll.json]
    python -m bench perf sweep [--task mlp-digits] [--steps 200] [--out perf-sweep.json]
    python -m bench perf scaling [--workers 1,2] [--rounds 3] [--out perf-scaling.json] [overrides]
    python -m bench perf compile [--tasks mlp-digits,conv-digits] [--out perf-compile.json]
    python -m bench perf steps [--suite heldout] [--optimizer X ...] [--out perf-steps.json]
    python -m bench perf compare [--suite indist] [--optimizer X ...] [--workers 2] [--out perf-compare.json]
    python -m bench perf partition [--steps 300] [--out perf-partition.json] [overrides]
    python -m bench perf demo [--out perf-demo.json] [overrides]
    python -m bench perf soak [--nodes 4] [--steps 2000] [--events 6] [--schedules 1] [--out perf-soak.json] [overrides]

Each benchmark lives in the module of what it measures: ``update`` in ``bench.lab.perf.update``
(learned optimizers' update step); ``unroll``, ``compile``, ``scaling`` and ``partition`` in
``bench.lab.perf.meta_training``; ``sweep``, ``steps`` and ``compare`` in ``bench.lab.perf.benchmarking`` (the
benchmark's own runner); ``demo`` in ``bench.lab.perf.demo``; ``soak`` (meta-training on a cluster
whose nodes leave and join) in ``bench.lab.perf.cluster``. Their docstrings say what each
measures against what.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform

import jax

import tasks
from bench.lab.perf import benchmarking, cluster, demo, meta_training, update
from bench.lab.perf.benchmarking import bench_compare, bench_steps, bench_sweep
from bench.lab.perf.cluster import bench_soak
from bench.lab.perf.demo import bench_demo
from bench.lab.perf.meta_training import bench_compile, bench_partition, bench_scaling, bench_unroll
from bench.lab.perf.update import SIZES, bench_update

_MODULES = {
    "update": update,
    "unroll": meta_training,
    "compile": meta_training,
    "scaling": meta_training,
    "partition": meta_training,
    "sweep": benchmarking,
    "steps": benchmarking,
    "compare": benchmarking,
    "demo": demo,
    "soak": cluster,
}


def parser(prog: str = "python -m bench perf") -> argparse.ArgumentParser:
    """The command line of ``python -m bench perf``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, rounds: int | None = None, overrides: bool = False):
        """A subcommand writing ``perf-<name>.json``, timed over ``rounds`` rounds if given,
        taking meta_train config ``overrides`` if asked."""
        p = sub.add_parser(name, help=summary)
        p.add_argument("--out", default=f"perf-{name}.json")
        if rounds is not None:
            p.add_argument("--rounds", type=int, default=rounds)
        if overrides:
            p.add_argument("overrides", nargs="*", help="meta_train config overrides")
        return p

    p = command("update", "learned-optimizer update cost relative to Adam", rounds=7)
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {list(SIZES)}")
    p = command("unroll", "meta-training unroll throughput relative to SGD", rounds=7)
    p.add_argument("--tasks", default="mlp-digits,mlp-mnist1d,autoencoder-digits,conv-digits")
    p = command("sweep", "vmapped lr sweep relative to one run at a time", rounds=3)
    p.add_argument("--task", default="mlp-digits")
    p.add_argument("--steps", type=int, default=200)
    p = command(
        "scaling", "meta-training throughput on 1, 2, ... Ray workers", rounds=3, overrides=True
    )
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--steps", type=int, default=100, help="timed outer steps per run")
    p.add_argument("--warmup", type=int, default=20, help="untimed first steps")
    p = command("compile", "seconds to compile a meta-training window", rounds=3)
    p.add_argument("--tasks", default="mlp-digits,conv-digits")
    p = command(
        "steps", "time per training step on a suite's tasks relative to optax Muon", rounds=5
    )
    p.add_argument("--suite", default="heldout")
    p.add_argument(
        "--optimizer",
        action="append",
        help="as bench compare takes (repeatable; default: LearnedMuon's variants at init)",
    )
    p.add_argument("--reference", default="muon-cosine-default")
    p.add_argument("--steps", type=int, default=100, help="steps per timed run")
    p = command("compare", "make demo's benchmark on Ray workers relative to in-process")
    p.add_argument("--suite", default="indist")
    p.add_argument(
        "--optimizer",
        action="append",
        help="a .lopt file or pretrained name (repeatable; default: mlplopt-mix)",
    )
    p.add_argument("--workers", type=int, default=2)
    p = command(
        "partition",
        "the demo's meta-training split by particles relative to by streams",
        overrides=True,
    )
    p.add_argument("--steps", type=int, default=300)
    command("demo", "make demo's wall time against its CPU time, per phase", overrides=True)
    p = command(
        "soak", "meta-training on nodes that leave and join relative to one node", overrides=True
    )
    p.add_argument("--nodes", type=int, default=4, help="simulated nodes, 1 worker each")
    p.add_argument("--steps", type=int, default=2000, help="outer steps per run")
    p.add_argument("--events", type=int, default=6, help="removals and additions per run")
    p.add_argument("--schedules", type=int, default=1, help="runs, each its own events")
    p.add_argument("--seed", type=int, default=0, help="the first schedule's seed")
    for name, p in sub.choices.items():  # each --help says what it measures against what
        p.description = _MODULES[name].__doc__
        p.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench perf`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""

    if args.command == "update":
        sizes = args.sizes.split(",")
        unknown = [s for s in sizes if s not in SIZES]
        if unknown:
            cli.error(f"unknown --sizes {unknown}; choose from {list(SIZES)}")
        rows = bench_update(sizes, rounds=args.rounds)
    elif args.command == "sweep":
        if args.task not in tasks.names():
            cli.error(f"unknown --task {args.task!r}; choose from {tasks.names()}")
        rows = bench_sweep(args.task, args.steps, args.rounds)
    elif args.command == "scaling":
        try:
            workers = [int(k) for k in args.workers.split(",")]
        except ValueError:
            cli.error(f"--workers must be comma-separated integers, got {args.workers!r}")
        if min(workers) < 1:
            cli.error(f"--workers must be >= 1, got {args.workers!r}")
        rows = bench_scaling(workers, args.rounds, args.steps, args.warmup, args.overrides)
    elif args.command == "steps":
        if args.steps < 1 or args.rounds < 1:
            cli.error("steps needs --steps >= 1 and --rounds >= 1")
        rows = bench_steps(args.suite, args.optimizer, args.reference, args.steps, args.rounds)
    elif args.command == "compare":
        rows = bench_compare(args.suite, args.optimizer or ["mlplopt-mix"], args.workers)
    elif args.command == "partition":
        rows = bench_partition(args.steps, args.overrides)
    elif args.command == "soak":
        if args.nodes < 2 or args.events < 0 or args.steps < 10 * (args.events + 1):
            cli.error("soak needs --nodes >= 2, --events >= 0 and --steps >= 10 x (events + 1)")
        if not pathlib.Path("/proc/self/status").exists():
            cli.error("perf soak reads the driver's memory from /proc (Linux only)")
        rows = bench_soak(
            args.nodes, args.steps, args.events, args.schedules, args.seed, overrides=args.overrides
        )
    elif args.command == "demo":
        if not pathlib.Path("/proc/stat").exists():
            cli.error("perf demo reads the machine's CPU time from /proc/stat (Linux only)")
        rows = bench_demo(args.overrides, command)
    else:
        names = args.tasks.split(",")
        unknown = [n for n in names if n not in tasks.names()]
        if unknown:
            cli.error(f"unknown --tasks {unknown}; choose from {tasks.names()}")
        run = bench_unroll if args.command == "unroll" else bench_compile
        rows = run(names, rounds=args.rounds)
    report = {
        "benchmark": args.command,
        "command": command,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
