"""A picture of a meta-training run: ``python -m meta_train.plot RUN_DIR`` writes
``RUN_DIR/metrics.png`` from ``RUN_DIR/metrics.jsonl``.

Four panels over the outer step: the meta-loss (each step's, and its running mean over
``window`` steps: one step's value jumps with its task), meta-validation with its best so
far (when the run validates), the norm of the meta-gradient estimate, and inner steps per
second.
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from meta_train import metrics_log


def read_metrics(run_dir: str | pathlib.Path) -> list[metrics_log.StepRecord]:
    """The records of ``run_dir/metrics.jsonl`` (``meta_train.metrics_log``: a half-written
    last line is skipped)."""
    path = pathlib.Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; is {run_dir} a meta-training run_dir?")
    records = metrics_log.read(path)
    if not records:
        raise ValueError(f"{path} holds no records yet")
    return records


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each step (fewer at the start)."""
    c = np.cumsum(np.insert(x, 0, 0.0))
    n = np.minimum(np.arange(1, len(x) + 1), window)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def plot(run_dir: str | pathlib.Path, window: int = 50) -> pathlib.Path:
    """Writes ``run_dir/metrics.png``: the meta-loss, meta-validation (the initial theta's
    score first), the estimate's norm and inner steps/s, with a grey line where the task
    changed and a red dotted one where the run resumed; returns its path."""
    records = read_metrics(run_dir)
    step = np.array([r.step for r in records])
    loss = np.array([r.meta_loss for r in records], float)
    fig, ax = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    ax[0, 0].plot(step, loss, color="0.75", lw=0.6, label="per step")
    ax[0, 0].plot(step, _running_mean(loss, window), color="C0", label=f"mean of {window}")
    ax[0, 0].set(title="meta-loss", ylabel="meta-loss")
    ax[0, 0].legend()
    valid = [r for r in records if r.valid is not None]
    if valid:
        initial = [(r.step - 1, r.valid_initial) for r in records if r.valid_initial is not None]
        vs = [s for s, _ in initial] + [r.step for r in valid]
        scores = [v for _, v in initial] + [r.valid for r in valid]
        ax[0, 1].plot(vs, scores, "o-", color="C1", label="score")
        ax[0, 1].plot(
            vs[len(initial) :],
            [r.valid_best for r in valid],
            "--",
            color="C2",
            label="best so far",
        )
        for s, v in initial:
            ax[0, 1].annotate(
                "initial theta", (s, v), fontsize=7, textcoords="offset points", xytext=(4, 4)
            )
        ax[0, 1].legend()
    else:
        ax[0, 1].text(0.5, 0.5, "no meta-validation in this run", ha="center", va="center")
    ax[0, 1].set(title="meta-validation (lower is better)")
    ax[1, 0].semilogy(step, [max(r.grad_norm, 1e-12) for r in records], color="C3", lw=0.8)
    ax[1, 0].set(title="estimate norm", xlabel="outer step")
    ax[1, 1].semilogy(step, [max(r.inner_steps_per_s, 1e-12) for r in records], color="C4", lw=0.8)
    ax[1, 1].set(title="inner steps / s", xlabel="outer step")
    # Where the task changed (a new period) and where the run resumed, on every panel.
    periods = [r.step for prev, r in itertools.pairwise(records) if r.task != prev.task]
    resumes = [r.step - 0.5 for r in records if r.resumed]
    for a in ax.flat:
        for s in periods:
            a.axvline(s - 0.5, color="0.85", lw=0.5, zorder=0)
        for s in resumes:
            a.axvline(s, color="C3", ls=":", lw=1.2)
    plural = lambda n, what: f"{n} {what}" + ("s" if n > 1 else "")
    marks = f"; grey lines: {plural(len(periods), 'task change')}" if periods else ""
    marks += f"; red dotted: {plural(len(resumes), 'resume')}" if resumes else ""
    fig.suptitle(f"{run_dir}{marks}")
    fig.tight_layout()
    out = pathlib.Path(run_dir) / "metrics.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m meta_train.plot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_dir")
    parser.add_argument("--window", type=int, default=50, help="running-mean window (steps)")
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be >= 1")
    try:
        print(f"wrote {plot(args.run_dir, args.window)}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
