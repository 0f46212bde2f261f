"""``python -m meta_train --config FILE [--resume DIR] [section.field=value ...]``."""

from __future__ import annotations

import argparse
import pathlib
import sys

from meta_train.config import ConfigError, load_config
from meta_train.trainer import meta_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meta_train",
        description="Meta-train a learned optimizer. Overrides look like estimator.sigma=0.03.",
    )
    parser.add_argument("--config", help="YAML/JSON config (defaults for what it omits)")
    parser.add_argument(
        "--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("overrides", nargs="*", help="section.field=value")
    args = parser.parse_args(argv)

    config_path = args.config
    overrides = list(args.overrides)
    if args.resume:
        saved = pathlib.Path(args.resume) / "config.yaml"
        if config_path is None:
            config_path = saved
        overrides.append(f"run_dir={args.resume}")
    try:
        cfg = load_config(config_path, overrides)
        result = meta_train(cfg, resume=bool(args.resume), verbose=not args.quiet)
    except (ConfigError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # e.g. resuming with a different config
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"meta-trained {cfg.num_steps} steps; optimizer written to {result.export_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
