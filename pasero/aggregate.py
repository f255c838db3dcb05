"""Results tables: one row per experiment, built from the `scores.json` files of a results folder.

`pasero-score` writes every metric of an experiment with its provenance (checkpoint steps, number
of parameters, training time, and the experiment's corpus, pair and variant) into `scores.json`, so
the tables need nothing else: they can be rebuilt at any time, from any subset of experiments.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from pasero.errors import DataError
from pasero.files import atomic_output

SCORES_FILE = "scores.json"
COLUMNS = ("corpus", "pair", "variant", "bleu", "chrf", "signature", "best_step", "train_hours", "params",
           "n_lines", "scores")


def find_scores(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """`scores.json` files: folders are searched recursively, files are taken as they are."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.rglob(SCORES_FILE)))
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return found


def names_from_path(path: Path) -> tuple[str, str, str]:
    """(corpus, pair, variant) of results/{corpus}/{pair}[.{variant}]/scores.json."""
    experiment = path.parent.name
    pair, _, variant = experiment.partition(".")
    return path.parent.parent.name, pair, variant


def _best_step(scores: dict[str, Any]) -> int | str | None:
    """The step of the selected checkpoint, or `s1+s2+...` for an average of several."""
    steps = scores.get("steps", scores.get("step"))
    if isinstance(steps, list):
        return steps[0] if len(steps) == 1 else "+".join(str(s) for s in steps)
    return steps


def read_scores(path: str | os.PathLike) -> dict[str, Any]:
    """One table row from a scores.json file (names come from its folder when it does not say)."""
    path = Path(path)
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read scores ({e})") from None
    if not isinstance(scores, dict) or "bleu" not in scores:
        raise DataError(f"{path}: not a pasero-score JSON file (no 'bleu' field)")
    corpus, pair, variant = names_from_path(path)
    train_seconds = scores.get("train_seconds")
    return {
        "corpus": scores.get("corpus") or corpus,
        "pair": scores.get("pair") or pair,
        "variant": scores.get("variant") if "variant" in scores else variant,
        "bleu": scores["bleu"],
        "chrf": scores.get("chrf"),
        "signature": (scores.get("signatures") or {}).get("bleu"),
        "best_step": _best_step(scores),
        "train_hours": None if train_seconds is None else train_seconds / 3600,
        "params": scores.get("params"),
        "n_lines": scores.get("n_lines"),
        "scores": str(path),
    }


def summary(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per experiment, sorted by corpus, pair and variant."""
    files = find_scores(paths)
    if not files:
        raise DataError(f"no {SCORES_FILE} found in {', '.join(map(str, paths))}: score an experiment first")
    table = pd.DataFrame([read_scores(f) for f in files], columns=list(COLUMNS))
    table["variant"] = table["variant"].fillna("")
    table["params"] = table["params"].astype("Int64")
    table["n_lines"] = table["n_lines"].astype("Int64")
    return table.sort_values(["corpus", "pair", "variant"], kind="stable").reset_index(drop=True)


def bleu_table(table: pd.DataFrame) -> pd.DataFrame:
    """BLEU with one row per experiment (pair or pair.variant) and one column per corpus."""
    experiment = table["pair"] + table["variant"].map(lambda v: f".{v}" if v else "")
    pivot = table.assign(experiment=experiment).pivot_table(
        index="experiment", columns="corpus", values="bleu", aggfunc="max")
    pivot.columns.name = None
    pivot.index.name = "pair"
    return pivot


def _cell(value: Any, digits: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, index: bool = False, digits: int = 2) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned)."""
    frame = table.reset_index() if index else table
    header = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: parameters in millions, no file paths."""
    shown = table.drop(columns=["scores"]).copy()
    shown["params"] = shown["params"].map(lambda n: None if n is pd.NA else f"{n / 1e6:.1f}M")
    return shown.rename(columns={"bleu": "BLEU", "chrf": "chrF", "best_step": "best step",
                                 "train_hours": "training (h)", "n_lines": "lines"})


def markdown_report(table: pd.DataFrame) -> str:
    return ("# Results\n\n" + to_markdown(_display(table))
            + "\n## BLEU by pair and corpus\n\n" + to_markdown(bleu_table(table), index=True))


def write_tsv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as f:
        table.to_csv(f, sep="\t", index=False, float_format="%.6g", lineterminator="\n")


def write_markdown(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as f:
        f.write(markdown_report(table))


def aggregate(paths: Sequence[str | os.PathLike], tsv: str | os.PathLike,
              markdown: str | os.PathLike | None = None) -> pd.DataFrame:
    table = summary(paths)
    write_tsv(table, tsv)
    if markdown:
        write_markdown(table, markdown)
    return table
