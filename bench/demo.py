"""`make demo`: the most complete end-to-end path that exists so far.

1. Meta-trains an MLPLOpt with NRES on the image-mlp family (``configs/demo.yaml``).
2. Loads the exported frozen optimizer and trains held-out image-mlp tasks (structures the
   run did not sample) and two fixed tasks through a plain optax loop (``tasks.fit``), next
   to its untrained initialization and Adam at two fixed learning rates.

Not yet here: the Ray-distributed outer loop and the benchmark against per-task *tuned*
baselines (they are separate pieces of work); Adam below is not tuned per task.
"""

from __future__ import annotations

import pathlib
import shutil
import time

import jax
import optax

import lopt
import tasks
from meta_train import load_config, meta_train

HORIZON = 300


def _eval_tasks() -> list[tasks.Task]:
    fam = tasks.family("image-mlp")
    held_out = [fam.task(fam.sample(jax.random.key(100 + i))) for i in range(4)]
    return [*held_out, tasks.get("mlp-digits"), tasks.get("mlp-mnist1d")]


def main() -> None:
    cfg = load_config("configs/demo.yaml")
    if pathlib.Path(cfg.run_dir).exists():
        print(f"replacing the previous demo run in {cfg.run_dir}/")
        shutil.rmtree(cfg.run_dir)
    print(
        f"[1/2] meta-training {cfg.optimizer.architecture} with {cfg.estimator.name} on the "
        f"{cfg.task.family} family for {cfg.num_steps} outer steps",
        flush=True,
    )
    started = time.perf_counter()
    result = meta_train(cfg)
    print(f"      done in {time.perf_counter() - started:.0f} s; exported {result.export_path}\n")

    frozen = lopt.load(result.export_path)
    untrained = frozen.architecture.init(jax.random.fold_in(jax.random.key(cfg.seed), 0))
    optimizers = {
        "trained": frozen.as_optax(HORIZON),
        "untrained": frozen.architecture.as_optax(untrained, HORIZON),
        "adam 1e-3": optax.adam(1e-3),
        "adam 1e-2": optax.adam(1e-2),
    }
    print(
        f"[2/2] final training loss after {HORIZON} steps (mean of 8 fixed batches; "
        "lower is better; Adam is NOT tuned per task)",
        flush=True,
    )
    print(f"{'task':<42}" + "".join(f"{name:>12}" for name in optimizers))
    wins, eval_tasks = 0, _eval_tasks()
    for task in eval_tasks:
        losses = {
            name: float(tasks.fit(task, tx, jax.random.key(0), HORIZON).eval_after)
            for name, tx in optimizers.items()
        }
        wins += losses["trained"] <= min(losses["adam 1e-3"], losses["adam 1e-2"])
        print(f"{task.name:<42}" + "".join(f"{v:>12.4f}" for v in losses.values()), flush=True)
    print(f"\ntrained optimizer at or below both Adam settings on {wins}/{len(eval_tasks)} tasks")
    print(f"wrote {result.run_dir}/ (config.yaml, metrics.jsonl, checkpoints/, optimizer.lopt)")


if __name__ == "__main__":
    main()
