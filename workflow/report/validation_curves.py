"""Validation BLEU and chrF of several experiments on one plot, for `snakemake --report`: which
run learns faster, and where each one's best checkpoint is (from their train/train.jsonl)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def valid_rows(path):
    path = Path(path)
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("type") == "valid"]


def plot(runs, output):
    """`runs`: (name, train.jsonl) pairs."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    drawn = False
    for name, path in runs:
        rows = valid_rows(path)
        for ax, key in zip(axes, ("bleu", "chrf"), strict=True):
            points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), "o-", markersize=3, label=name)
                drawn = True
    for ax, label in zip(axes, ("BLEU", "chrF"), strict=True):
        ax.set(xlabel="step", ylabel=f"validation {label}", title=f"validation {label} of every experiment")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    if not drawn:
        axes[0].text(0.5, 0.5, "no validation BLEU/chrF yet", ha="center", transform=axes[0].transAxes)
    fig.savefig(output)
    plt.close(fig)


if "snakemake" in globals():
    plot(list(zip(snakemake.params.names, snakemake.params.metrics, strict=True)), snakemake.output[0])  # noqa: F821
