"""A multilingual experiment's table: the scores of its directions and their averages.

Each direction is scored on its own (pasero-score writes {src}-{tgt}/scores.json); this combines them
into the experiment's bleu.txt and scores.json: one row per direction, and the averages over the
trained directions, into and out of the pivot language (X→en, en→X) and over the zero-shot ones — the figures
multilingual papers report — with each direction's off-target rate (outputs in another language).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pasero.aggregate import load_scores
from pasero.files import atomic_output

METRICS = ("bleu", "chrf", "off_target")
PROVENANCE = ("step", "steps", "train_seconds", "params", "n_lines")  # one model: the same in every direction
DETAILS = ("extra_bleu", "test_sets")  # kept per direction for the summary's further columns


def direction_rows(paths: Sequence[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """{src-tgt: {bleu, chrf, off_target, zero_shot, signature, extra_bleu, test_sets}} from
    per-direction scores.json files."""
    rows = {}
    for path in paths:
        scores = load_scores(path)
        pair = scores.get("pair") or Path(path).parent.name
        rows[pair] = {"bleu": scores["bleu"], "chrf": scores.get("chrf"), "off_target": scores.get("off_target"),
                      "zero_shot": bool(scores.get("zero_shot")),
                      "signature": (scores.get("signatures") or {}).get("bleu"),
                      **{key: scores[key] for key in DETAILS if key in scores}}
    return rows


def provenance(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The model's checkpoint steps, training time and size, from the first direction's scores."""
    scores = load_scores(paths[0]) if paths else {}
    return {key: scores[key] for key in PROVENANCE if key in scores}


def averages(rows: dict[str, dict[str, Any]], pivot: str) -> dict[str, dict[str, float]]:
    """Mean BLEU and chrF over groups of directions (a group without directions is left out)."""
    groups = {
        "trained": [p for p, r in rows.items() if not r["zero_shot"]],
        f"x-{pivot}": [p for p, r in rows.items() if not r["zero_shot"] and p.split("-")[1] == pivot],
        f"{pivot}-x": [p for p, r in rows.items() if not r["zero_shot"] and p.split("-")[0] == pivot],
        "zero_shot": [p for p, r in rows.items() if r["zero_shot"]],
    }
    return {name: {metric: _mean(rows[p][metric] for p in pairs) for metric in METRICS}
            | {"directions": len(pairs)} for name, pairs in groups.items() if pairs}


def _mean(values: Iterable[float | None]) -> float | None:
    """The mean of the known values (an off-target rate is unknown for a language the identifier
    does not know)."""
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def combine(paths: Sequence[str | os.PathLike], pivot: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The experiment's scores.json: its BLEU/chrF are the averages over the trained directions
    (the summary's row), beside every direction and every average."""
    rows = direction_rows(paths)
    means = averages(rows, pivot)
    trained = means.get("trained", {})
    return {**provenance(paths), **meta, "bleu": trained.get("bleu"), "chrf": trained.get("chrf"), "pivot": pivot,
            "directions": rows, "averages": means}


def to_text(combined: dict[str, Any]) -> str:
    """bleu.txt of a multilingual experiment: a table a person reads."""
    lines = [f"{'direction':<14} {'BLEU':>6} {'chrF':>6} {'off-target %':>12}"]
    for pair, row in sorted(combined["directions"].items(), key=lambda item: (item[1]["zero_shot"], item[0])):
        lines.append(f"{pair:<14} {row['bleu']:6.2f} {row['chrf']:6.2f} {_percent(row.get('off_target')):>12}"
                     + ("  zero-shot" if row["zero_shot"] else ""))
    for name, mean in combined["averages"].items():
        lines.append(f"{'avg ' + name:<14} {mean['bleu']:6.2f} {mean['chrf']:6.2f} {_percent(mean['off_target']):>12}"
                     f"  ({mean['directions']} directions)")
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def write(combined: dict[str, Any], text_path: str | os.PathLike, json_path: str | os.PathLike) -> None:
    with atomic_output(text_path) as f:
        f.write(to_text(combined))
    with atomic_output(json_path) as f:
        json.dump(combined, f, indent=2, ensure_ascii=False)
        f.write("\n")
