"""``report.md`` and PNG plots from the :class:`bench.results.Results` of ``bench.compare``."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from bench.baselines import BASELINES
from bench.metrics import Interval
from bench.results import BEST, BEST_FREE, Counts, Record, Results, Versus


def interval(d: Interval, fmt: str = ".2f") -> str:
    """``estimate [low, high]`` of a bootstrap interval."""
    return f"{d.estimate:{fmt}} [{d.low:{fmt}}, {d.high:{fmt}}]"


def _speedup(vs: Versus) -> str:
    return {">=": "≥", "<=": "≤", "": ""}[vs.bound] + f"{vs.speedup:.2f}×"


def _chosen(record: Record) -> str:
    if not record.chosen:
        return "—"
    chosen = ", ".join(f"{k}={v:.3g}" for k, v in record.chosen.items())
    return f"{chosen} ({record.tuning_trials})" if record.tuning_trials else f"{chosen} (default)"


def label(report: Results, comparison: str) -> str:
    """How the summary names a comparison: ``tuned adam``, ``adam-default``, ``best tuned``
    (an untuned baseline, ``Baseline.tuned`` false, is never called tuned)."""
    baseline = BASELINES.get(comparison) if comparison in report.baselines else None
    return f"tuned {comparison}" if baseline is not None and baseline.tuned else comparison


def markdown(report: Results) -> str:
    comparisons, candidates = report.comparisons, report.candidates
    metric = {"train": "smoothed train", "valid": "validation"}[report.selection]
    if report.protocol == "lr-grid":
        protocol = (
            f"a half-decade learning-rate grid ({report.trials} points) plus the default rate, "
            "refined around the best (quarter-decade neighbours while the best moves, then "
            "eighth-decade ones)"
        )
    else:
        protocol = f"the defaults and {report.trials - 1} Halton points over all hyperparameters"
    noise = (
        "and by more than 2 standard errors of the difference (each side's seeds treated as "
        "independent samples)"
        if report.seeds > 1
        else "(one seed: no standard error, the margin alone)"
    )
    lines = [
        f"# {', '.join(candidates)} vs {', '.join(label(report, b) for b in report.baselines)}"
        + (" and tuning-free baselines" if report.tuning_free else "")
        + f" on `{report.suite}`",
        "",
        f"- Command: `{report.command}`",
        f"- Deciding metric: the final {metric} loss (mean over seeds); it chooses each "
        "baseline's configuration, defines speedups and gives the first won/tied/lost; the "
        "other metric is counted beside it, for the same runs.",
        f"- Tuned baselines (`{report.protocol}`): {protocol}, × {report.seeds} seeds per "
        "baseline, task and budget; the configurations tried per task are in the per-task "
        "table.",
        *(
            [
                f"- Tuning-free baselines, one run per seed at their published defaults: "
                f"{', '.join(f'`{b}`' for b in report.tuning_free)}. Learned optimizers: zero "
                "tuning trials, run at the task's budget."
            ]
            if report.tuning_free
            else ["- Learned optimizers: zero tuning trials, run at the task's budget."]
        ),
        *(f"- `{b}`: {how}." for b, how in report.runs.items()),
        *(
            [
                "- `best tuned`: per task, the tuned baseline whose loss at the task's budget "
                "is lowest (named in the per-task table)."
            ]
            if BEST in comparisons
            else []
        ),
        *(
            ["- `best tuning-free`: per task, the tuning-free baseline lowest at the budget."]
            if BEST_FREE in comparisons
            else []
        ),
        f"- Won / lost: a final loss below / above the baseline's at the task's budget by more "
        f"than {100 * report.margin:g}% {noise}; otherwise tied.",
        f"- Speedup: {report.speedup_definition}.",
        "- Time/step ratio: the candidate's wall time per step ÷ the baseline's, each run "
        "by itself (the baseline at its chosen configuration), compilation excluded.",
        "- Intervals: 95% percentile bootstrap over tasks. Normalized loss: final "
        "smoothed train loss ÷ the validation loss at initialization.",
        f"- {report.date}, jax {report.versions['jax']}, optax "
        f"{report.versions['optax']}, {report.device}.",
        "",
        "## Summary",
        "",
        "| candidate | vs | won / tied / lost, train | won / tied / lost, valid | fraction won | "
        "median speedup | IQM speedup | speedups that are bounds | IQM normalized loss | "
        "time/step ratio |",
        "| --- " * 10 + "|",
    ]
    for c in candidates:
        for b in comparisons:
            s = report.summary[c][b]
            lines.append(
                f"| {c} | {label(report, b)} | {_counts(s.train, s.tasks)} | "
                f"{_counts(s.valid, s.tasks)} | "
                f"{interval(s.fraction_won)} | {interval(s.median_speedup)} | "
                f"{interval(s.iqm_speedup)} | {s.bounds} | "
                f"{interval(s.iqm_normalized_train, '.3f')} | "
                f"{s.median_time_ratio:.2f} |"
            )
    lines += ["", *_self_check(report), "", *_calibration(report), ""]
    lines += _final_losses(report)
    lines += ["", "## Per task", ""]
    header = (
        "| task | steps | optimizer | hyperparameters (tried) | final train | ÷ initial | "
        "final valid | best valid |"
    )
    header += "".join(f" vs {b} |" for b in comparisons)
    lines += [header, "| --- " * (8 + len(comparisons)) + "|"]
    for task, t in report.tasks.items():
        for name, r in t.optimizers.items():
            row = (
                f"| {task} | {t.num_steps} | {name} | {_chosen(r)} | {r.final_train:.4g} | "
                f"{r.normalized_train:.3f} | {r.final_valid:.4g} | {r.best_valid:.4g} |"
            )
            for b in comparisons:
                vs = r.vs[b]
                of = f" ({vs.baseline})" if vs.baseline else ""
                row += " — |" if name == b else f" {vs.outcome}, {_speedup(vs)}{of} |"
            lines.append(row)
    lines += _budget_table(report)
    lines += ["", "![loss curves](curves.png)", "", "![speedups](speedups.png)", ""]
    return "\n".join(lines)


def _counts(counts: Counts | None, tasks: int) -> str:
    if counts is None:
        return "—"
    return f"{counts.won} / {counts.tied} / {counts.lost} of {tasks}"


def _self_check(report: Results) -> list[str]:
    """The report's check of its own tuning: tuned never worse than the default."""
    head = (
        "Self-check — every tuned baseline against its own default configuration, on every "
        "task, by both metrics (a loss beyond the margin and the noise means the search "
        "missed the rate): "
    )
    if not report.self_check:
        return [head + "all hold."]
    n = len(report.self_check)
    lines = [head + f"{n} violation{'s' if n > 1 else ''}:", ""]
    lines += ["| task | baseline | metric | tuned | default |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {c.task} | {c.baseline} | {c.metric} | {c.tuned:.4g} | {c.default:.4g} |"
        for c in report.self_check
    ]
    return lines


def _final_losses(report: Results) -> list[str]:
    """Per task, every optimizer's final loss by the deciding metric, then by the other (the
    lowest in bold)."""
    names = list(next(iter(report.tasks.values())).optimizers)
    lines = ["## Final losses", ""]
    for metric in ("train", "valid") if report.selection == "train" else ("valid", "train"):
        what = {"train": "smoothed train", "valid": "validation"}[metric]
        lines += [f"Final {what} loss (mean over seeds; bold: the lowest):", ""]
        lines += ["| task | " + " | ".join(names) + " |", "| --- " * (1 + len(names)) + "|"]
        for task, t in report.tasks.items():
            values = [t.optimizers[n].final(metric) for n in names]
            low = min(values, key=lambda v: v if math.isfinite(v) else math.inf)
            cells = [f"**{v:.4g}**" if v == low else f"{v:.4g}" for v in values]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _calibration(report: Results) -> list[str]:
    """Each tuned baseline scored against its own tuned curve: how far from 1 a speedup is
    from noise alone (the final loss of one configuration against a fit over all of them)."""
    lines = ["Calibration — each tuned baseline against its own tuned curve (1 without noise):", ""]
    for b in report.baselines:
        s = [t.optimizers[b].vs[b].speedup for t in report.tasks.values()]
        lines.append(
            f"- `{b}`: median speedup {np.median(s):.2f}, range {min(s):.2f}–{max(s):.2f} "
            "over tasks."
        )
    return lines


def _budget_table(report: Results) -> list[str]:
    """Random search: the expected best score of ``b`` trials, per task and baseline."""
    if report.protocol != "random-search":
        return []
    lines = [
        "",
        "## Tuning budget",
        "",
        f"Expected best final {report.selection} loss of b random-search trials "
        "(resampled without replacement from the trials run):",
        "",
    ]
    for b in report.baselines:
        budgets = next(iter(report.tasks.values())).optimizers[b].budget_curve
        lines += [f"| {b}: task | " + " | ".join(f"b={k}" for k in budgets) + " |"]
        lines += ["| --- " * (1 + len(budgets)) + "|"]
        for task, t in report.tasks.items():
            curve = t.optimizers[b].budget_curve
            lines.append(f"| {task} | " + " | ".join(f"{v[0]:.4g}" for v in curve.values()) + " |")
        lines.append("")
    return lines


def plot_curves(report: Results, path: pathlib.Path) -> None:
    """Per task, two panels: the deciding metric and the validation loss, each optimizer's
    mean over seeds at the task's budget; for each baseline also its tuned curve over the
    longer budgets (dashed), from which speedups are read."""
    tasks = list(report.tasks.items())
    metric = {"train": "smoothed train loss", "valid": "valid loss"}[report.selection]
    cols = min(2, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(3.6 * 2 * cols, 2.9 * rows), squeeze=False)
    for i, (name, t) in enumerate(tasks):
        left, right = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        for opt, r in t.optimizers.items():
            valid_steps = np.linspace(0, t.num_steps, len(r.valid_curve))
            if report.selection == "train":  # the loss before update j, recorded at j + 1
                steps, curve = np.arange(1, t.num_steps + 1), r.train_curve
            else:
                steps, curve = valid_steps, r.valid_curve
            (line,) = left.plot(steps, curve, label=opt, linewidth=1)
            if (tuned := r.tuned_curve) is not None:
                stride = max(1, len(tuned.steps) // 400)
                left.plot(
                    tuned.steps[::stride],
                    tuned.loss[::stride],
                    linestyle="--",
                    marker="." if len(tuned.steps) < 20 else None,
                    color=line.get_color(),
                    linewidth=0.8,
                )
            right.plot(valid_steps, r.valid_curve, color=line.get_color(), linewidth=1)
            right.fill_between(valid_steps, *r.valid_band, color=line.get_color(), alpha=0.2)
        left.axvline(t.num_steps, color="gray", linewidth=0.6)
        left.set_title(f"{name}: {metric}", fontsize=8)
        right.set_title(f"{name}: valid loss", fontsize=8)
        for ax in (left, right):
            ax.set_yscale("log")
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[2 * len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_speedups(report: Results, path: pathlib.Path) -> None:
    """Per candidate and baseline, the speedup on every task (log scale): one colour per task,
    filled where measured, hollow where a bound (the baseline never reached the candidate's
    loss within its largest budget, or had at its smallest)."""
    pairs = [(c, b) for c in report.candidates for b in report.comparisons]
    names = list(report.tasks)
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(pairs) + 2.5), 3.8))
    for i, (c, b) in enumerate(pairs):
        for k, t in enumerate(report.tasks.values()):
            vs = t.optimizers[c].vs[b]
            colour = colours(k % colours.N)
            ax.scatter(
                i + 0.3 * (k / max(len(names) - 1, 1) - 0.5),  # spread the tasks apart
                max(vs.speedup, 1e-3),
                facecolors="none" if vs.bound else colour,
                edgecolors=colour,
            )
    dot = lambda face, edge, label: Line2D(
        [], [], marker="o", linestyle="", markerfacecolor=face, markeredgecolor=edge, label=label
    )
    handles = [dot(colours(k % colours.N), colours(k % colours.N), n) for k, n in enumerate(names)]
    handles += [dot("black", "black", "measured"), dot("none", "black", "a bound (≥ or ≤)")]
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(pairs)), [f"{c}\nvs {b}" for c, b in pairs], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("speedup (×)")
    ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(report: Results, out: pathlib.Path) -> None:
    (out / "report.md").write_text(markdown(report))
    plot_curves(report, out / "curves.png")
    plot_speedups(report, out / "speedups.png")
