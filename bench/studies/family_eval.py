"""Score a meta-trained optimizer on held-out members of a task family.

    python -m bench family-eval runs/mlplopt-small/optimizer.lopt [--family image-mlp]
        [--members 6] [--horizon 300] [--out family-eval.json]

For ``--members`` structures sampled with keys the meta-training run does not use (100, 101,
...), reports the mean per-step meta-loss (loss / initial loss, as in meta-training) over
whole episodes of ``--horizon`` steps from 8 fixed inits, for the trained optimizer, its
initialization (rebuilt from the recipe's seed, as the trainer draws it) and Adam at four
fixed learning rates. A quick check of meta-training, not the tuned-baseline benchmark.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np

import lopt
import tasks
from meta_train import MetaLoss, TruncationSchedule, Unroller, initial_theta

ADAM_LRS = (1e-3, 3e-3, 1e-2, 3e-2)


def evaluate(path: str, family: str, members: int, horizon: int) -> dict:
    frozen = lopt.load(path)
    lo = frozen.architecture
    seed = frozen.meta.get("recipe", {}).get("seed", 0)
    candidates = {
        "trained": (lo, frozen.theta),
        "init": (lo, initial_theta(lo, seed)),
        **{
            f"adam {lr:g}": (lopt.HyperAdam(lr=lr), lopt.HyperAdam(lr=lr).init(None))
            for lr in ADAM_LRS
        },
    }
    fam = tasks.family(family)
    schedule = TruncationSchedule("constant", horizon, horizon)
    rows = []
    for i in range(members):
        task = fam.task(fam.sample(jax.random.key(100 + i)))
        scores = {}
        for name, (arch, theta) in candidates.items():
            unroller = Unroller(task, arch, schedule, MetaLoss(), window=horizon)
            score = jax.jit(unroller.episode_loss, static_argnums=2)(
                theta, jax.random.PRNGKey(7), 8
            )
            scores[name] = float(score)
        rows.append({"task": task.name, **scores})
        print(f"{task.name:<42}" + "".join(f"{k}={v:.3f}  " for k, v in scores.items()), flush=True)
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
    try:
        result = evaluate(args.optimizer, args.family, args.members, args.horizon)
    except (FileNotFoundError, lopt.FrozenFileError) as e:
        cli.exit(2, f"error: {e}\n")
    result["command"] = command
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.out}")
