"""The results as one HTML page (`pasero-aggregate --html`, shown by `snakemake --report`): the
summary table with what each experiment cost, BLEU by pair and corpus, every test set with its
signatures, and a few test translations per experiment (source, reference, hypothesis), so that
numbers and outputs are read side by side.
"""

from __future__ import annotations

import csv
import html
import itertools
import os
from pathlib import Path
from typing import Any

import pandas as pd

from pasero.aggregate import bleu_table, corpus_table, display_table, load_scores
from pasero.errors import DataError
from pasero.files import atomic_output, read_lines

STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.samples td { text-align: left; vertical-align: top; max-width: 40em; }
"""


def experiment_name(row: Any) -> str:
    return f"{row.corpus}/{row.pair}" + (f".{row.variant}" if row.variant else "")


def cost(table: pd.DataFrame) -> pd.DataFrame:
    """Per row: decoding speed and device from its scores.json, and the training job's peak memory
    from Snakemake's benchmark file beside it (benchmarks/train.tsv), where they exist."""
    rows = []
    for row in table.itertuples():
        scores = _scores(row.scores)
        rows.append({"experiment": experiment_name(row),
                     "training (h)": row.train_hours,
                     "device": " ".join(str(scores[k]) for k in ("device", "dtype") if scores.get(k)) or None,
                     "decode sent/s": scores.get("sentences_per_second"),
                     "training peak RSS (MB)": _peak_rss(Path(row.scores).parent / "benchmarks" / "train.tsv")})
    return pd.DataFrame(rows)


def _scores(path: Any) -> dict[str, Any]:
    """A row's scores.json ({} for a row without one: a mean over seeds, a file gone since)."""
    try:
        return load_scores(path) if isinstance(path, str) else {}
    except DataError:
        return {}


def _peak_rss(path: Path) -> float | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        values = [row.get("max_rss") for row in csv.DictReader(f, delimiter="\t")]
    numbers = [float(v) for v in values if v not in (None, "", "NA", "-")]
    return max(numbers) if numbers else None


def samples(table: pd.DataFrame, n: int = 3) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The first `n` test sentences of each experiment: (source, reference, hypothesis)."""
    out = []
    for row in table.itertuples():
        scores = _scores(row.scores)
        test = (scores.get("test_sets") or {}).get("test") or scores
        paths = [(scores.get("inputs") or [None])[0], test.get("ref"), test.get("hyp")]
        if not all(p and os.path.isfile(p) for p in paths):
            continue
        columns = [list(itertools.islice(read_lines(p), n)) for p in paths]
        out.append((experiment_name(row), list(zip(*columns, strict=False))))
    return out


def _table(frame: pd.DataFrame, index: bool = False) -> str:
    text_columns = {c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])}
    shown = frame.reset_index() if index else frame
    head = "".join(f'<th class="{"text" if c in text_columns or index else ""}">{html.escape(str(c))}</th>'
                   for c in shown.columns)
    body = []
    for values in shown.itertuples(index=False):
        cells = []
        for column, value in zip(shown.columns, values, strict=True):
            klass = "text" if column in text_columns else ""
            cells.append(f'<td class="{klass}">{html.escape(_cell(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def html_report(table: pd.DataFrame, n_samples: int = 3, title: str = "Results") -> str:
    parts = [f"<h1>{html.escape(title)}</h1>", _table(display_table(table)),
             "<h2>What each experiment cost</h2>", _table(cost(table)),
             "<h2>BLEU by pair and corpus</h2>", _table(bleu_table(table), index=True)]
    for corpus in dict.fromkeys(table["corpus"]):
        shown, legend = corpus_table(table, corpus)
        parts += [f"<h2>{html.escape(corpus)}: every test set and BLEU protocol</h2>", _table(shown),
                  "<ul>" + "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in legend) + "</ul>"]
    translated = samples(table, n_samples)
    if translated:
        parts.append("<h2>Test translations</h2>")
    for name, rows in translated:
        lines = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (i, *texts)) + "</tr>"
                        for i, texts in enumerate(rows, 1))
        parts.append(f'<h3>{html.escape(name)}</h3><table class="samples"><thead><tr><th>#</th><th>source</th>'
                     f"<th>reference</th><th>hypothesis</th></tr></thead><tbody>{lines}</tbody></table>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_html(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_output(path) as f:
        f.write(html_report(table))
