"""What the shipped optimizer gains from a schedule or a rate chosen at deployment.

    python -m bench.deployment [--suite heldout] [--reference RESULTS] [--out DIR]

Runs the shipped ``mlplopt-mix`` (2 seeds, the suite's budget) as shipped and with the whole
update multiplied at deployment by

- ``tail``: 1, then linear to 0 over the last quarter of the run (a warmup-stable-decay tail);
- ``cosine``: cosine decay from 1 to 0 over the run;
- ``x0.25`` … ``x4``: a constant factor; ``per-task best`` is, per task, the factor with the
  lowest final loss — the shipped optimizer given the per-task rate tuning the baselines get;

and prints each one's final smoothed train loss and won / tied / lost (1% margin) against the
tuned baselines recorded in ``--reference`` (a ``bench compare`` ``results.json`` of the same
suite, seeds and selection; the benchmark is deterministic, so they need not run again).
``bench compare`` needs a baseline of its own: it runs Adam at one rate, which is not used.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
from collections.abc import Callable

import optax

import lopt
from bench import compare as compare_lib

FACTORS = (0.25, 0.5, 2.0, 4.0)


def _tail(num_steps: int, fraction: float = 0.25) -> optax.Schedule:
    start = round(num_steps * (1 - fraction))
    return optax.join_schedules(
        [optax.constant_schedule(1.0), optax.linear_schedule(1.0, 0.0, num_steps - start)],
        [start],
    )


def variants(name: str = "mlplopt-mix") -> dict[str, Callable[[int], optax.GradientTransformation]]:
    """``{variant: num_steps -> optax transform}`` for the shipped optimizer ``name``."""
    frozen = lopt.load_pretrained(name)

    def scaled(schedule: Callable[[int], optax.Schedule | float], num_steps: int):
        factor = schedule(num_steps)
        scale = optax.scale_by_schedule(factor) if callable(factor) else optax.scale(factor)
        return optax.chain(frozen.as_optax(num_steps), scale)

    out = {
        "shipped": frozen.as_optax,
        "tail": functools.partial(scaled, _tail),
        "cosine": functools.partial(scaled, lambda n: optax.cosine_decay_schedule(1.0, n)),
    }
    for f in FACTORS:
        out[f"x{f:g}"] = functools.partial(scaled, lambda n, f=f: f)
    return out


def table(reference: dict, results: dict) -> str:
    """Markdown: final losses of the recorded baselines and of each variant, then each
    variant's won / tied / lost against each baseline and against the best of them."""
    baselines = reference["baselines"]
    names = list(next(iter(results["tasks"].values()))["optimizers"])
    names = [n for n in names if n not in baselines and n != "adam"]
    finals = {
        task: {n: v["optimizers"][n]["final_train"] for n in names}
        for task, v in results["tasks"].items()
    }
    for row in finals.values():
        row["per-task best"] = min(row[n] for n in names if n == "shipped" or n.startswith("x"))
    names.append("per-task best")
    lines = [
        "| task | " + " | ".join(baselines + names) + " |",
        "| --- " * (1 + len(baselines) + len(names)) + "|",
    ]
    tuned = {}
    for task, v in reference["tasks"].items():
        tuned[task] = {b: v["optimizers"][b]["final_train"] for b in baselines}
        cells = [f"{tuned[task][b]:.4g}" for b in baselines]
        cells += [f"{finals[task][n]:.4g}" for n in names]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    margin = reference["margin"]
    lines += ["", "| variant | " + " | ".join(f"vs {b}" for b in baselines) + " | vs best |"]
    lines.append("| --- " * (2 + len(baselines)) + "|")
    for n in names:
        cells = []
        for b in [*baselines, None]:
            wtl = [0, 0, 0]
            for task, row in tuned.items():
                ref = min(row.values()) if b is None else row[b]
                ratio = finals[task][n] / ref
                wtl[0 if ratio < 1 - margin else 2 if ratio > 1 + margin else 1] += 1
            cells.append(" / ".join(map(str, wtl)))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deployment", description=__doc__)
    parser.add_argument("--suite", default="heldout")
    parser.add_argument(
        "--reference", default="docs/benchmarks/mlplopt-mix-heldout/results.json"
    )
    parser.add_argument("--out", default="runs/deployment")
    args = parser.parse_args(argv)
    reference = json.loads(pathlib.Path(args.reference).read_text())
    if reference["suite"] != args.suite:
        parser.error(f"--reference is a {reference['suite']!r} comparison, not {args.suite!r}")
    optimizers = [
        compare_lib.Optimizer(name, learned=make) for name, make in variants().items()
    ]
    results = compare_lib.compare(
        optimizers,
        args.suite,
        baselines=("adam",),
        lr_range=(1e-2, 1e-2),
        max_speedup=1,
        seeds=reference["seeds"],
        select=reference["selection"],
        margin=reference["margin"],
        out=args.out,
    )
    print(table(reference, results))


if __name__ == "__main__":
    main()
