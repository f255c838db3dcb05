"""Results tables: one row per experiment, built from the `scores.json` files of a results folder.

`pasero-score` writes every metric of an experiment with its provenance (checkpoint steps, number
of parameters, training time, and the experiment's corpus, pair and variant) into `scores.json`, so
the tables need nothing else: they can be rebuilt at any time, from any subset of experiments.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pasero.errors import DataError
from pasero.files import atomic_output, read_lines
from pasero.scoring import PROTOCOLS, paired_bootstrap

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.json"
# shown only when some row has them
OPTIONAL = ("seeds", "std_bleu", "std_chrf", "off_target", "zero_shot", "baseline", "p_value", "bleu_ci")
PRIMARY = "test"  # the test set whose scores are scores.json's top-level keys (and bleu.txt)
COLUMNS = ("corpus", "pair", "variant", "bleu", "chrf", "seeds", "std_bleu", "std_chrf", "off_target", "zero_shot",
           "baseline", "p_value", "bleu_ci", "signature", "best_step", "train_hours", "params", "n_lines", "scores")


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


def load_scores(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object of a pasero-score file, or a DataError naming it."""
    path = Path(path)
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read scores ({e})") from None
    if not isinstance(scores, dict) or "bleu" not in scores:
        raise DataError(f"{path}: not a pasero-score JSON file (no 'bleu' field)")
    return scores


def _mapping(scores: dict[str, Any], key: str, path: Path) -> dict[str, dict[str, Any]]:
    """An optional {name: JSON object} field ({} when absent: files older than the field still
    aggregate)."""
    value = scores.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise DataError(f"{path}: '{key}' should map names to JSON objects; rerun pasero-score")
    return value


def extra_scores(scores: dict[str, Any], path: Path) -> dict[str, Any]:
    """Columns beyond COLUMNS: the extra BLEU protocols of the primary test set (with their
    signatures), then BLEU, chrF and extra BLEU of every further test set."""
    row: dict[str, Any] = {}
    for protocol, extra in _mapping(scores, "extra_bleu", path).items():
        row[f"bleu_{protocol}"] = extra.get("bleu")
        row[f"bleu_{protocol}_signature"] = extra.get("signature")
    for name, test_set in _mapping(scores, "test_sets", path).items():
        if name == PRIMARY:
            continue
        row[f"bleu_{name}"] = test_set.get("bleu")
        row[f"chrf_{name}"] = test_set.get("chrf")
        for protocol, extra in _mapping(test_set, "extra_bleu", path).items():
            row[f"bleu_{protocol}_{name}"] = extra.get("bleu")
    return row


def read_scores(path: str | os.PathLike, scores: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The table rows of a scores.json file (names come from its folder when it does not say): one
    for a language pair; for a multilingual experiment, one per direction (`{name}/{src}-{tgt}`) and
    one per average (`{name}/avg trained`, `avg x-en`, `avg en-x`, `avg zero_shot`)."""
    path = Path(path)
    scores = load_scores(path) if scores is None else scores  # (already read by the caller)
    corpus, pair, variant = names_from_path(path)
    train_seconds = scores.get("train_seconds")
    model = {
        "corpus": scores.get("corpus") or corpus,
        "variant": scores.get("variant") if "variant" in scores else variant,
        "best_step": _best_step(scores),
        "train_hours": None if train_seconds is None else train_seconds / 3600,
        "params": scores.get("params"),
        "n_lines": scores.get("n_lines"),
        "scores": str(path),
    }
    name = scores.get("pair") or pair
    model["_training"] = scores.get("training") if isinstance(scores.get("training"), dict) else None
    if not isinstance(scores.get("directions"), dict):
        return [{**model, "pair": name, **_metrics(scores, path), "_grid_point": scores.get("grid_point")}]
    rows = [{**model, "pair": f"{name}/{direction}", **_metrics(row, path)}
            for direction, row in sorted(_mapping(scores, "directions", path).items(),
                                         key=lambda item: (bool(item[1].get("zero_shot")), item[0]))]
    for group, mean in _mapping(scores, "averages", path).items():
        rows.append({**model, "pair": f"{name}/avg {group}", "bleu": mean.get("bleu"), "chrf": mean.get("chrf"),
                     "off_target": mean.get("off_target"), "zero_shot": group == "zero_shot"})
    return rows


def add_setting_columns(rows: Sequence[dict[str, Any]]) -> None:
    """`train.{option}` columns for the training options whose values differ between the rows'
    models: what separates the experiments of the table (from the `training` of their scores)."""
    settings = [row.pop("_training", None) for row in rows]
    known = [s for s in settings if s]
    varying = sorted({key for s in known for key in s
                      if len({json.dumps(other.get(key), sort_keys=True) for other in known}) > 1})
    for row, setting in zip(rows, settings, strict=True):
        for key in varying:
            value = (setting or {}).get(key)
            row[f"train.{key}"] = json.dumps(value) if isinstance(value, list | dict) else value


def seed_means(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A row per grid point scored with several seeds: variant = the point, BLEU and chrF as the
    mean over its seeds (`seeds` of them) with their standard deviation, mean training time."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("_grid_point"):
            groups.setdefault((row["corpus"], row["pair"], row["_grid_point"]), []).append(row)
    means = []
    for (corpus, pair, point), members in groups.items():
        if len(members) < 2:
            continue
        mean = {key: _mean_std([m[key] for m in members]) for key in ("bleu", "chrf", "train_hours")}
        means.append({"corpus": corpus, "pair": pair, "variant": point, "seeds": len(members),
                      "bleu": mean["bleu"][0], "std_bleu": mean["bleu"][1], "chrf": mean["chrf"][0],
                      "std_chrf": mean["chrf"][1], "train_hours": mean["train_hours"][0],
                      "params": members[0]["params"], "signature": members[0]["signature"]})
    return means


def _mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return statistics.fmean(known), statistics.stdev(known) if len(known) > 1 else None


def _metrics(scores: dict[str, Any], path: Path) -> dict[str, Any]:
    """The metric columns of one scored direction (an experiment's scores.json, or a direction's
    row in a multilingual one)."""
    return {
        "bleu": scores["bleu"],
        "chrf": scores.get("chrf"),
        "off_target": scores.get("off_target"),
        "zero_shot": scores.get("zero_shot"),
        "signature": scores.get("signature") or (scores.get("signatures") or {}).get("bleu"),
        **extra_scores(scores, path),
    }


def _covered(loaded: dict[Path, dict[str, Any]]) -> set[Path]:
    """The direction files ({name}/{src}-{tgt}/scores.json) of the multilingual experiments among
    `loaded` ({path: scores}): their rows come from the experiment's own scores.json."""
    experiments = {f.parent for f, scores in loaded.items() if isinstance(scores.get("directions"), dict)}
    return {f for f in loaded if f.parent.parent in experiments}


def layout(columns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(extra BLEU protocols, further test sets) named by the columns of `extra_scores`, in table
    order: protocols as pasero-score lists them (unknown ones after, by name), test sets by name."""
    columns = list(columns)
    protocols = [c[len("bleu_"):-len("_signature")] for c in columns
                 if c.startswith("bleu_") and c.endswith("_signature")]
    known = list(PROTOCOLS)
    protocols.sort(key=lambda p: (known.index(p) if p in known else len(known), p))
    test_sets = sorted(c[len("chrf_"):] for c in columns if c.startswith("chrf_"))
    return protocols, test_sets


def extra_columns(present: Iterable[str]) -> list[str]:
    """The extra columns in a fixed order, whatever order the experiments were read in."""
    present = set(present) - set(COLUMNS)
    protocols, test_sets = layout(present)
    ordered = [c for p in protocols for c in (f"bleu_{p}", f"bleu_{p}_signature")]
    for name in test_sets:
        ordered += [f"bleu_{name}", f"chrf_{name}"] + [f"bleu_{p}_{name}" for p in protocols]
    ordered = [c for c in ordered if c in present]
    return ordered + sorted(present - set(ordered))


def summary(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per experiment, sorted by corpus, pair and variant."""
    files = find_scores(paths)
    if not files:
        raise DataError(f"no {SCORES_FILE} found in {', '.join(map(str, paths))}: score an experiment first")
    loaded = {f: load_scores(f) for f in files}  # each file read once
    covered = _covered(loaded)
    rows = [row for f, scores in loaded.items() if f not in covered for row in read_scores(f, scores)]
    rows += seed_means(rows)
    add_setting_columns(rows)
    for row in rows:
        row.pop("_grid_point", None)
    table = pd.DataFrame(rows, columns=list(COLUMNS) + extra_columns(key for row in rows for key in row))
    table["variant"] = table["variant"].fillna("")
    table["zero_shot"] = table["zero_shot"].astype("boolean")
    add_significance(table)
    table["best_step"] = pd.Series([row.get("best_step") for row in rows], dtype=object)  # no 7000.0 next to None
    table["params"] = table["params"].astype("Int64")
    table["seeds"] = table["seeds"].astype("Int64")
    table["n_lines"] = table["n_lines"].astype("Int64")
    return table.sort_values(["corpus", "pair", "variant"], kind="stable").reset_index(drop=True)


def baselines(table: pd.DataFrame) -> dict[int, int]:
    """{row: its baseline's row}: a variant's baseline is its pair without a variant, in the same
    corpus (de-en.big against de-en), when both were scored."""
    plain = {(row.corpus, row.pair): i for i, row in table.iterrows() if not row.variant}
    return {i: plain[(row.corpus, row.pair)] for i, row in table.iterrows()
            if row.variant and (row.corpus, row.pair) in plain}


def add_significance(table: pd.DataFrame, n_samples: int = 1000) -> None:
    """The baseline, p-value and BLEU 95% confidence half-width of each row that has a baseline
    (sacreBLEU's paired bootstrap on the primary test set; rows whose hypotheses are not found from
    the current folder are left out, with a warning)."""
    table["baseline"] = table["baseline"].astype(object)
    for i, j in baselines(table).items():
        try:
            system, baseline = (load_scores(table.at[k, "scores"]) for k in (i, j))
            hyps, refs = _test_set_lines(system, table.at[i, "scores"])
            base_hyps, base_refs = _test_set_lines(baseline, table.at[j, "scores"])
        except DataError as e:
            logger.warning("no significance test of %s: %s", table.at[i, "scores"], e)
            continue
        if base_refs != refs:
            logger.warning("no significance test of %s: its references differ from its baseline's",
                           table.at[i, "scores"])
            continue
        result = paired_bootstrap(hyps, base_hyps, refs, system.get("bleu_tok", "13a"),
                                  bool(system.get("lowercase")), n_samples)
        table.at[i, "baseline"] = table.at[j, "pair"]
        table.at[i, "p_value"] = result.p_value
        table.at[i, "bleu_ci"] = result.ci


def _test_set_lines(scores: dict[str, Any], path: str) -> tuple[list[str], list[str]]:
    test = (scores.get("test_sets") or {}).get(PRIMARY) or scores
    if not test.get("hyp") or not test.get("ref"):
        raise DataError(f"{path} does not name its hypothesis and reference files; rerun pasero-score")
    files = [Path(test["hyp"]), Path(test["ref"])]
    for file in files:
        if not file.is_file():
            raise DataError(f"{file}: no such file (run pasero-aggregate where the experiment was scored)")
    return [list(read_lines(file)) for file in files]


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


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as people read it: the settings that differ after the names, parameters in
    millions, no file paths."""
    columns = [c for c in COLUMNS if c != "scores" and (c not in OPTIONAL or table[c].notna().any())]
    settings = [c for c in table.columns if c.startswith("train.")]
    columns[columns.index("variant") + 1:columns.index("variant") + 1] = settings
    shown = table[columns].copy()
    shown["params"] = shown["params"].map(lambda n: None if n is pd.NA else f"{n / 1e6:.1f}M")
    if "zero_shot" in shown:
        shown["zero_shot"] = shown["zero_shot"].map(lambda z: "yes" if z is True else "")
    if "p_value" in shown:
        shown["p_value"] = shown["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.3f}")
        shown["bleu_ci"] = shown["bleu_ci"].map(lambda ci: "" if pd.isna(ci) else f"±{ci:.2f}")
    return shown.rename(columns={"bleu": "BLEU", "chrf": "chrF", "std_bleu": "BLEU std", "std_chrf": "chrF std",
                                 "off_target": "off-target %",
                                 "zero_shot": "zero-shot", "p_value": "p (vs baseline)", "bleu_ci": "BLEU 95% CI",
                                 "best_step": "best step",
                                 "train_hours": "training (h)", "n_lines": "lines"})


def _test_set_columns(name: str, protocols: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{summary column: (Markdown header, metric)} of one test set; the metric ("BLEU", "chrF",
    "BLEU tokenized"...) names the signature the column shares with every other test set's."""
    suffix = "" if name == PRIMARY else f"_{name}"
    columns = {f"bleu{suffix}": "BLEU", f"chrf{suffix}": "chrF"}
    columns.update({f"bleu_{p}{suffix}": f"BLEU {p}" for p in protocols})
    return {column: (f"{name} {metric}", metric) for column, metric in columns.items()}


def _legend(rows: pd.DataFrame, shown: dict[str, str], protocols: Sequence[str]) -> list[str]:
    """One line per metric: the columns that report it and its signature(s) in these rows."""
    signatures = {"BLEU": rows["signature"], "chrF": None}
    signatures.update({f"BLEU {p}": rows[f"bleu_{p}_signature"] for p in protocols})
    lines = []
    for metric, column in signatures.items():
        headers = [header for header, m in shown.items() if m == metric]
        if not headers:
            continue
        if column is None:
            described = "sacreBLEU chrF2 on the text as given, with BLEU's case setting"
        else:
            described = " or ".join(f"`{sig}`" for sig in dict.fromkeys(column.dropna())) or "unknown"
        lines.append(f"- {', '.join(headers)}: {described}")
    lines.append(f"- `{PRIMARY}` is the primary test set (the one in bleu.txt); every test set is scored "
                 "with the same settings")
    return lines


def corpus_table(table: pd.DataFrame, corpus: str) -> tuple[pd.DataFrame, list[str]]:
    """Every experiment of a corpus with all its test sets and protocols, and a legend that gives
    each column's signature, so that tokenized and detokenized BLEU cannot be confused."""
    protocols, test_sets = layout(table.columns)
    rows = table[table["corpus"] == corpus]
    columns: dict[str, tuple[str, str]] = {}
    for name in [PRIMARY, *test_sets]:
        columns.update(_test_set_columns(name, protocols))
    kept = [c for c in columns if rows[c].notna().any()]
    shown = rows[kept].rename(columns={c: columns[c][0] for c in kept}).reset_index(drop=True)
    shown.insert(0, "experiment", (rows["pair"] + rows["variant"].map(lambda v: f".{v}" if v else "")).tolist())
    return shown, _legend(rows, dict(columns[c] for c in kept), protocols)


def markdown_report(table: pd.DataFrame) -> str:
    report = ("# Results\n\n" + to_markdown(display_table(table))
              + "\n## BLEU by pair and corpus\n\n" + to_markdown(bleu_table(table), index=True))
    for corpus in dict.fromkeys(table["corpus"]):
        shown, legend = corpus_table(table, corpus)
        report += (f"\n## {corpus}: every test set and BLEU protocol\n\n" + to_markdown(shown)
                   + "\nColumns and their signatures:\n\n" + "\n".join(legend) + "\n")
    return report


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
