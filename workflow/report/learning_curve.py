"""Learning curve of one training run for `snakemake --report`: the training and validation loss,
and the validation BLEU and chrF, against the update step (from train/train.jsonl)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_rows(path):
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def series(rows, kind, key):
    points = [(r["step"], r[key]) for r in rows if r.get("type") == kind and r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot(rows, title, output):
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_ax.plot(*series(rows, "train", "loss"), label="train loss", linewidth=1)
    loss_ax.plot(*series(rows, "valid", "loss"), "o-", label="valid loss", markersize=3)
    loss_ax.set(xlabel="step", ylabel="label-smoothed loss (base 2)", title=f"{title}: loss")
    scored = False
    for key in ("bleu", "chrf"):
        steps, values = series(rows, "valid", key)
        if steps:
            score_ax.plot(steps, values, "o-", label=f"valid {'chrF' if key == 'chrf' else 'BLEU'}", markersize=3)
            scored = True
    if not scored:
        score_ax.text(0.5, 0.5, "no validation BLEU/chrF\n(valid_decode: false)", ha="center", va="center",
                      transform=score_ax.transAxes)
    best = [r for r in rows if r.get("type") == "valid" and r.get("best_step") is not None]
    if best:
        for ax in (loss_ax, score_ax) if scored else (loss_ax,):
            ax.axvline(best[-1]["best_step"], color="grey", linestyle=":",
                       label=f"best {best[-1]['best_metric']} (step {best[-1]['best_step']})")
    score_ax.set(xlabel="step", ylabel="score", title=f"{title}: validation")
    for ax in (loss_ax, score_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not rows:
        loss_ax.text(0.5, 0.5, "no training metrics found", ha="center", transform=loss_ax.transAxes)
    fig.savefig(output)
    plt.close(fig)


if "snakemake" in globals():
    plot(read_rows(snakemake.params.metrics), snakemake.params.title, snakemake.output[0])  # noqa: F821
