"""``report.md`` and PNG plots from the ``results.json`` content of ``bench.compare``."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _interval(d: dict[str, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(d['estimate'])} [{fmt.format(d['low'])}, {fmt.format(d['high'])}]"


def _speedup(vs: dict[str, Any]) -> str:
    return ("≥" if vs["censored"] else "") + f"{vs['speedup']:.2f}×"


def _chosen(record: dict[str, Any]) -> str:
    if not record["chosen"]:
        return "—"
    return ", ".join(f"{k}={v:.3g}" for k, v in record["chosen"].items())


def markdown(report: dict[str, Any]) -> str:
    baselines, candidates = report["baselines"], report["candidates"]
    lines = [
        f"# {', '.join(candidates)} vs tuned {', '.join(baselines)} on `{report['suite']}`",
        "",
        f"- Command: `{report['command']}`",
        f"- Protocol: `{report['protocol']}` ({report['trials']} configurations × "
        f"{report['seeds']} seeds per baseline and task); the configuration with the lowest "
        f"final {report['selection']} loss (mean over seeds) is chosen. Learned optimizers: "
        "zero tuning trials.",
        f"- Won: a lower final {report['selection']} loss than the tuned baseline.",
        f"- Speedup: {report['speedup_definition']}.",
        "- Intervals: 95% percentile bootstrap over tasks. Normalized loss: final valid loss ÷ "
        "the loss at initialization.",
        f"- {report['date']}, jax {report['versions']['jax']}, optax "
        f"{report['versions']['optax']}, {report['device']}.",
        "",
        "## Summary",
        "",
        "| candidate | vs | tasks won | fraction won | median speedup | IQM speedup | "
        "IQM normalized valid loss | time/step ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in candidates:
        for b in baselines:
            s = report["summary"][c][b]
            lines.append(
                f"| {c} | {b} | {s['won']}/{s['tasks']} | {_interval(s['fraction_won'])} | "
                f"{_interval(s['median_speedup'])} | {_interval(s['iqm_speedup'])} | "
                f"{_interval(s['iqm_normalized_valid'], '{:.3f}')} | {s['median_time_ratio']:.2f} |"
            )
    lines += ["", "## Per task", ""]
    header = "| task | steps | optimizer | tuned hyperparameters | final train | final valid | best valid |"
    header += "".join(f" vs {b} |" for b in baselines)
    lines += [header, "| --- " * (7 + len(baselines)) + "|"]
    for task, t in report["tasks"].items():
        for name, r in t["optimizers"].items():
            row = (
                f"| {task} | {t['num_steps']} | {name} | {_chosen(r)} | {r['final_train']:.4g} | "
                f"{r['final_valid']:.4g} | {r['best_valid']:.4g} |"
            )
            for b in baselines:
                vs = r["vs"][b]
                row += (
                    " — |" if name == b else f" {'won' if vs['won'] else 'lost'}, {_speedup(vs)} |"
                )
            lines.append(row)
    lines += _budget_table(report)
    lines += ["", "![loss curves](curves.png)", "", "![speedups](speedups.png)", ""]
    return "\n".join(lines)


def _budget_table(report: dict[str, Any]) -> list[str]:
    """Random search: the expected best score of ``b`` trials, per task and baseline."""
    if report["protocol"] != "random-search":
        return []
    lines = [
        "",
        "## Tuning budget",
        "",
        f"Expected best final {report['selection']} loss of b random-search trials "
        "(resampled without replacement from the trials run):",
        "",
    ]
    for b in report["baselines"]:
        budgets = next(iter(report["tasks"].values()))["optimizers"][b]["budget_curve"]
        lines += [f"| {b}: task | " + " | ".join(f"b={k}" for k in budgets) + " |"]
        lines += ["| --- " * (1 + len(budgets)) + "|"]
        for task, t in report["tasks"].items():
            curve = t["optimizers"][b]["budget_curve"]
            lines.append(f"| {task} | " + " | ".join(f"{v[0]:.4g}" for v in curve.values()) + " |")
        lines.append("")
    return lines


def plot_curves(report: dict[str, Any], path: pathlib.Path) -> None:
    """Validation loss per task: each optimizer's mean over seeds with its min–max band."""
    tasks = list(report["tasks"].items())
    cols = min(3, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, t) in zip(axes.flat, tasks, strict=False):
        for opt, r in t["optimizers"].items():
            steps = [
                i * t["num_steps"] / (len(r["valid_curve"]) - 1)
                for i in range(len(r["valid_curve"]))
            ]
            (line,) = ax.plot(steps, r["valid_curve"], label=opt)
            ax.fill_between(steps, *r["valid_band"], color=line.get_color(), alpha=0.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("valid loss")
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_speedups(report: dict[str, Any], path: pathlib.Path) -> None:
    """Per candidate and baseline: the speedup on every task (log scale; hollow = lower bound)."""
    pairs = [(c, b) for c in report["candidates"] for b in report["baselines"]]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(pairs)), 3.5))
    for i, (c, b) in enumerate(pairs):
        for t in report["tasks"].values():
            vs = t["optimizers"][c]["vs"][b]
            ax.scatter(
                i,
                max(vs["speedup"], 1e-3),
                facecolors="none" if vs["censored"] else "C0",
                edgecolors="C0",
            )
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(pairs)), [f"{c}\nvs {b}" for c, b in pairs], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("speedup (×)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(report: dict[str, Any], out: pathlib.Path) -> None:
    (out / "report.md").write_text(markdown(report))
    plot_curves(report, out / "curves.png")
    plot_speedups(report, out / "speedups.png")
