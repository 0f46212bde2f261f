"""`make demo`: the most complete end-to-end path that exists so far.

Meta-training is not built yet, so this trains every task in the zoo with ``optax.adam(1e-3)``
for 200 steps through the compiled inner loop (``tasks.fit``) and prints the loss before and
after. It will be replaced by meta-train -> export -> benchmark once those exist.
"""

from __future__ import annotations

import time

import jax
import optax

import tasks


def main(num_steps: int = 200) -> None:
    print("lopt demo: meta-training is not implemented yet; training the task zoo with Adam.")
    print(f"{'task':<22} {'params':>8} {'loss@0':>8} {f'loss@{num_steps}':>9} {'seconds':>8}")
    for name in tasks.names():
        start = time.perf_counter()
        task = tasks.get(name)
        result = tasks.fit(task, optax.adam(1e-3), jax.random.key(0), num_steps)
        size = sum(x.size for x in jax.tree.leaves(result.params))
        print(
            f"{name:<22} {size:>8} {float(result.eval_before):>8.4f} "
            f"{float(result.eval_after):>9.4f} {time.perf_counter() - start:>8.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
