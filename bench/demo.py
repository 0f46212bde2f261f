"""`make demo`: the most complete end-to-end path that exists so far.

Meta-training is not built yet. This exports an *untrained* MLPLOpt (with its nominal
Adam-like term, so it starts close to Adam) to a frozen-optimizer file, loads it back, and
trains every task in the zoo with it and with ``optax.adam(1e-3)`` through the same
compiled loop (``tasks.fit``), printing the loss before and after. It will become
meta-train -> export -> benchmark once those exist.
"""

from __future__ import annotations

import pathlib
import time

import jax
import optax

import lopt
import tasks


def main(num_steps: int = 200, out: str = "runs/demo") -> None:
    print("lopt demo: meta-training is not implemented yet, so the learned optimizer below is")
    print("UNTRAINED (random meta-parameters; its nominal Adam term does the work).\n")
    lo = lopt.MLPLOpt(nominal=True)
    path = lopt.save(
        pathlib.Path(out) / "untrained-mlplopt.lopt",
        lo,
        lo.init(jax.random.key(0)),
        meta={"trained": False, "note": "random init, written by `make demo`"},
    )
    frozen = lopt.load(path)
    print(f"exported and reloaded {path} ({frozen.architecture.name}, meta={frozen.meta})\n")
    optimizers = {"adam(1e-3)": optax.adam(1e-3), "untrained lopt": frozen.as_optax(num_steps)}
    head = "".join(f"{name + f' loss@{num_steps}':>26}" for name in optimizers)
    print(f"{'task':<22}{'loss@0':>8}{head}{'seconds':>9}")
    for name in tasks.names():
        start = time.perf_counter()
        task = tasks.get(name)
        results = [tasks.fit(task, tx, jax.random.key(0), num_steps) for tx in optimizers.values()]
        finals = "".join(f"{float(r.eval_after):>26.4f}" for r in results)
        print(
            f"{name:<22}{float(results[0].eval_before):>8.4f}{finals}"
            f"{time.perf_counter() - start:>9.1f}",
            flush=True,
        )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
