"""Score a meta-trained optimizer on held-out members of a task family.

    python -m bench family-eval runs/mlplopt-small/optimizer.lopt [--family image-mlp]
        [--members 6] [--horizon 300] [--out family-eval.json]

Scores, as meta-validation does (``meta_train.validation``: the same members, drawn with
keys the task source never uses, and the mean per-step meta-loss — loss ÷ initial loss — of
whole episodes of ``--horizon`` steps from 8 fixed inits), the trained optimizer, its
initialization (rebuilt from the recipe's seed, as the trainer draws it) and Adam at four
fixed learning rates. A quick check of meta-training, not the tuned-baseline benchmark.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import lopt
import tasks
from meta_train import MetaLoss, initial_theta
from meta_train.validation import ValidationConfig, Validator, held_out_tasks

ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
PARTICLES = 8


def evaluate(path: str, family: str, members: int, horizon: int) -> dict:
    frozen = lopt.load(path)
    lo = frozen.architecture
    seed = frozen.meta.get("recipe", {}).get("seed", 0)
    held_out = held_out_tasks(None, (family,), members)
    cfg = ValidationConfig(members=members, horizon=horizon, particles=PARTICLES)
    adam = lopt.HyperAdam()  # its theta is the rate: one compiled episode for every rate
    validators = {arch: Validator(cfg, held_out, arch, MetaLoss()) for arch in (lo, adam)}
    candidates = {
        "trained": (lo, frozen.theta),
        "init": (lo, initial_theta(lo, seed)),
        **{f"adam {lr:g}": (adam, lopt.HyperAdam(lr=lr).init(None)) for lr in ADAM_LRS},
    }
    scores = {name: validators[arch](theta) for name, (arch, theta) in candidates.items()}
    rows = [
        {"task": task, **{name: s.tasks[task] for name, s in scores.items()}}
        for task in scores["trained"].tasks
    ]
    for row in rows:
        print(f"{row['task']:<42}" + "".join(f"{k}={row[k]:.3f}  " for k in candidates))
    mean = {name: float(np.mean([r[name] for r in rows])) for name in candidates}
    print("mean  " + "".join(f"{k}={v:.3f}  " for k, v in mean.items()))
    return {"optimizer": path, "family": family, "horizon": horizon, "rows": rows, "mean": mean}


def parser(prog: str = "python -m bench family-eval") -> argparse.ArgumentParser:
    """The command line of ``python -m bench family-eval``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("optimizer", help="a .lopt file written by meta-training")
    parser.add_argument("--family", default="image-mlp", choices=tasks.families())
    parser.add_argument("--members", type=int, default=6)
    parser.add_argument("--horizon", type=int, default=300)
    parser.add_argument("--out", default="family-eval.json")
    return parser


def run_command(args: argparse.Namespace, cli: argparse.ArgumentParser, command: str) -> None:
    """Runs ``python -m bench family-eval`` with ``args`` parsed by ``cli``; ``command`` is the
    command line as typed, for the results files."""
    result = evaluate(args.optimizer, args.family, args.members, args.horizon)
    result["command"] = command
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
