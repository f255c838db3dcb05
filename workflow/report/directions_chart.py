"""A multilingual experiment's directions for `snakemake --report`: BLEU and chrF of every direction
(zero-shot ones hatched) with the averages as lines, and each direction's off-target rate (from the
experiment's scores.json, written by pasero-combine-directions)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot(scores, title, output):
    rows = sorted(scores["directions"].items(), key=lambda item: (item[1]["zero_shot"], item[0]))
    names = [pair for pair, _ in rows]
    positions = range(len(rows))
    width = max(6.0, 0.45 * len(rows) + 2) + 3  # and the legend on the right
    fig, (score_ax, off_ax) = plt.subplots(2, 1, figsize=(width, 6.5), sharex=True, constrained_layout=True,
                                           gridspec_kw={"height_ratios": [2, 1]})
    hatches = ["//" if row["zero_shot"] else "" for _, row in rows]
    for shift, key, label in ((-0.2, "bleu", "BLEU"), (0.2, "chrf", "chrF")):
        values = [row.get(key) or 0.0 for _, row in rows]
        bars = score_ax.bar([p + shift for p in positions], values, width=0.4, label=label)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    for (group, mean), style in zip(scores.get("averages", {}).items(), ("-", "--", "-.", ":"), strict=False):
        if mean.get("bleu") is not None:
            score_ax.axhline(mean["bleu"], color="grey", linestyle=style, linewidth=1,
                             label=f"avg BLEU {group} ({mean['bleu']:.1f}, {mean['directions']} directions)")
    score_ax.set(ylabel="score", title=f"{title}: test scores by direction (hatched: zero-shot)")
    score_ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    off_target = [row.get("off_target") for _, row in rows]
    off_ax.bar(positions, [value or 0.0 for value in off_target], color="tab:red",
               tick_label=names)
    for p, value in zip(positions, off_target, strict=True):
        if value is None:
            off_ax.text(p, 1, "n/a", ha="center", fontsize="small")
    off_ax.set(ylabel="off-target %", ylim=(0, 100), title="outputs not in the target language")
    off_ax.tick_params(axis="x", labelrotation=60)
    for ax in (score_ax, off_ax):
        ax.grid(alpha=0.3, axis="y")
    fig.savefig(output)
    plt.close(fig)


if "snakemake" in globals():
    plot(json.loads(Path(snakemake.input[0]).read_text(encoding="utf-8")), snakemake.params.title,  # noqa: F821
         snakemake.output[0])  # noqa: F821
