"""``python -m meta_train --config FILE [--resume DIR] [--workers N] [--ray-address ADDR]
[section.field=value ...]``."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import warnings

from meta_train import compile_cache
from meta_train.config_io import CONFIGS, load_config
from meta_train.trainer import meta_train


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m meta_train``."""
    parser = argparse.ArgumentParser(
        prog="python -m meta_train",
        description="Meta-train a learned optimizer. Overrides look like estimator.sigma=0.03.",
    )
    parser.add_argument(
        "--config",
        help="a YAML/JSON config file (defaults for what it omits), or the name of a shipped "
        f"one: {CONFIGS}",
    )
    parser.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="compute estimates on N Ray workers (distributed.workers)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="connect to this Ray cluster ('auto' or host:port) instead of starting a local "
        "instance (distributed.address)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the libraries' logging (orbax, absl, Ray) and where each warning "
        "was raised",
    )
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)  # overrides before or after flags
    if not args.verbose:
        _quiet_libraries()
    compile_cache.enable()  # $LOPT_COMPILATION_CACHE, default ~/.cache/lopt/jax; off: 'off'

    config_path = args.config
    overrides = list(args.overrides)
    if args.resume:
        saved = pathlib.Path(args.resume) / "config.yaml"
        if config_path is None:
            config_path = saved
        overrides.append(f"run_dir={args.resume}")
    if args.workers is not None:
        overrides.append(f"distributed.workers={args.workers}")
    if args.ray_address is not None:
        overrides.append(f"distributed.address={args.ray_address}")
    cfg = None
    try:
        cfg = load_config(config_path, overrides)
        result = meta_train(cfg, resume=bool(args.resume), verbose=not args.quiet)
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback
        print(f"\n{_interrupted(cfg)}", file=sys.stderr, flush=True)
        # Out at once, as a kill would: a checkpoint save it interrupted stays a temporary
        # directory that resuming ignores, and its writer threads cannot print tracebacks
        # while the interpreter shuts down around them.
        os._exit(130)
    # A bad config (ConfigError is a ValueError) or resume (e.g. with a different config), a
    # run_dir in use or missing, a cluster out of reach.
    except (ValueError, FileExistsError, FileNotFoundError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a run_dir that cannot be written: read-only, under a file, full
        where = f" ({e.filename})" if e.filename else ""
        print(f"error: cannot write the run: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. workers that cannot start or keep failing
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"meta-trained {cfg.num_steps} steps; optimizer written to {result.export_path}")
    return 0


def _quiet_libraries() -> None:
    """Library logging below errors off (orbax logs through absl; Ray's own logger), and
    each warning in one line: ``warning: <message>``."""
    for name in ("absl", "orbax", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def _interrupted(cfg) -> str:
    """What an interrupted run left: its newest checkpoint and how to resume from it."""
    if cfg is None:
        return "interrupted"
    run_dir = pathlib.Path(cfg.run_dir)
    # The step directories, listed rather than asked of orbax: a checkpoint manager made in a
    # process interrupted during a save was seen to hang.
    steps = [int(p.name) for p in (run_dir / "checkpoints").glob("*") if p.name.isdigit()]
    if not steps:
        return f"interrupted before the first checkpoint of {run_dir}: nothing to resume"
    return (
        f"interrupted; the newest checkpoint is of step {max(steps)}: resume with "
        f"python -m meta_train --resume {run_dir}"
    )


if __name__ == "__main__":
    sys.exit(main())
