"""pasero-score: sacreBLEU BLEU, chrF and chrF++ of hypothesis files, with provenance.

Writes `bleu.txt` (the lines `sacrebleu -f text` prints, signatures included, then one line per
extra BLEU protocol) for the primary test set, and a `scores.json` with every test set's scores
and where the hypotheses came from (checkpoint, step, decoding time...), so a results table can be
built from the JSON files alone.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pasero import language_id, scoring
from pasero.cli.common import command, setup_logging
from pasero.errors import ConfigError, DataError
from pasero.files import atomic_output, lang_of, read_lines

logger = logging.getLogger("pasero.score")

PRIMARY = "test"
TEST_SET_NAME = re.compile(r"[A-Za-z0-9_]+")
# Per-test-set fields of scores.json; the primary test set's are also its top-level keys.
TEST_SET_FIELDS = ("bleu", "chrf", "chrf++", "signatures", "score_lines", "bleu_details", "n_lines", "bleu_tok",
                   "lowercase", "lang", "off_target", "extra_bleu", "hyp", "ref")


def read_text(path: str) -> list[str]:
    """Lines without trailing whitespace, as sacreBLEU's command line reads them."""
    return [line.rstrip() for line in read_lines(path)]


def load_info(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file (--info)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object (--info)")
    return info


def parse_meta(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values that parse as JSON (numbers, true, null...) keep their type."""
    meta: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--meta expects KEY=VALUE, got '{item}'")
        try:
            meta[key] = json.loads(value)
        except json.JSONDecodeError:
            meta[key] = value
    return meta


def merge_provenance(result: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """Add provenance keys to the scores; the scores' own values win over a conflicting one."""
    merged = dict(result)
    for key, value in provenance.items():
        if key in merged and merged[key] != value:
            logger.warning("provenance key '%s' (%r) conflicts with the scores (%r): keeping the latter",
                           key, value, merged[key])
            continue
        merged[key] = value
    return merged


def collect_test_sets(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """{name: (hyp, ref)}, the primary test set first.

    Names become column names in the results tables (`bleu_tst2016`), so they must be plain
    identifiers that cannot be mistaken for a BLEU protocol's columns (`bleu_tokenized`).
    """
    sets = {PRIMARY: (args.hyp, args.ref)}
    reserved = re.compile(rf"(?:{'|'.join(map(re.escape, scoring.PROTOCOLS))})(?:_.*)?")
    for name, hyp, ref in args.test_set:
        if not TEST_SET_NAME.fullmatch(name):
            raise ConfigError(f"--test-set '{name}': a name may only have letters, digits and '_' (e.g. tst2016)")
        if name in sets:
            raise ConfigError(f"--test-set '{name}': the name is already used; give each test set its own name")
        if reserved.fullmatch(name):
            raise ConfigError(f"--test-set '{name}': the name clashes with a BLEU protocol's columns; rename it")
        sets[name] = (hyp, ref)
    return sets


def read_pair(hyp: str, ref: str) -> tuple[list[str], list[str]]:
    """Hypotheses and references, refused when they are empty or not aligned line by line."""
    hyps, refs = read_text(hyp), read_text(ref)
    if not hyps and refs:
        raise DataError(f"{hyp}: empty hypothesis file ({len(refs)} references in {ref})")
    if not refs:
        raise DataError(f"{ref}: empty reference file")
    if len(hyps) != len(refs):
        raise DataError(f"{hyp} has {len(hyps)} lines but {ref} has {len(refs)}: "
                        "the hypotheses must be aligned line by line with the references")
    return hyps, refs


def read_samples(paths: Sequence[str]) -> dict[str, list[str]]:
    """{language: its first lines} of --lang-sample files (several files of a language pool)."""
    samples: dict[str, list[str]] = {}
    for path in paths:
        lines = samples.setdefault(lang_of(path), [])
        lines += itertools.islice(read_lines(path), max(0, language_id.SAMPLE_LINES - len(lines)))
    return samples


def stdout_report(results: dict[str, dict[str, Any]]) -> str:
    """Every test set's lines; a `[name]` heading before each block when there are several."""
    if len(results) == 1:
        return scoring.format_report(next(iter(results.values())))
    return "\n".join(f"[{name}]\n{scoring.format_report(result)}" for name, result in results.items())


def scores_json(results: dict[str, dict[str, Any]], provenance: dict[str, Any]) -> dict[str, Any]:
    """The primary test set's fields at the top level (as before test sets existed), every test
    set's under `test_sets`, then the provenance."""
    per_set = {name: {key: result[key] for key in TEST_SET_FIELDS} for name, result in results.items()}
    return merge_provenance({**per_set[PRIMARY], "test_sets": per_set}, provenance)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasero-score",
        description="Score detokenized hypotheses against references with sacreBLEU (BLEU, chrF, chrF++).")
    parser.add_argument("-H", "--hyp", required=True, help="hypotheses, one detokenized sentence per line")
    parser.add_argument("-r", "--ref", required=True, help="references, aligned line by line with --hyp")
    parser.add_argument("--bleu-tok", default="13a", choices=scoring.bleu_tokenizers(), metavar="TOK",
                        help="sacreBLEU tokenization for BLEU: 13a (default), none (pre-tokenized text, e.g. "
                             "TED talks), intl, char, zh, ...")
    parser.add_argument("--lowercase", "-lc", action="store_true", help="case-insensitive BLEU and chrF")
    parser.add_argument("--extra-bleu", action="append", default=[], choices=list(scoring.PROTOCOLS),
                        metavar="PROTOCOL",
                        help="also report BLEU under this protocol (needs --lang); repeatable. "
                             + "; ".join(f"{name}: {p.help}" for name, p in scoring.PROTOCOLS.items()))
    parser.add_argument("--lang", help="target language code (Moses rules of --extra-bleu), e.g. en")
    parser.add_argument("--lang-sample", action="append", default=[], metavar="FILE",
                        help="text in one language, named by its extension (train.xx): samples of the "
                             "experiment's languages identify a --lang that the language identifier does not know "
                             "for the off-target rate; repeatable")
    parser.add_argument("--test-set", action="append", default=[], nargs=3, metavar=("NAME", "HYP", "REF"),
                        help="a further test set scored the same way (only in --json and stdout); repeatable")
    parser.add_argument("-o", "--output", help="write the primary test set's score lines here (e.g. bleu.txt)")
    parser.add_argument("--json", help="write every metric, signature and the provenance here (scores.json)")
    parser.add_argument("--info", action="append", default=[], metavar="FILE.json",
                        help="JSON object merged into --json (e.g. pasero-decode --info-out); repeatable")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="extra provenance for --json; repeatable")
    return parser


def check_options(args: argparse.Namespace) -> None:
    if args.extra_bleu and not args.lang:
        raise ConfigError(f"--extra-bleu {args.extra_bleu[0]} needs the target language: add --lang (e.g. --lang en)")
    if args.lang and not scoring.LANG_PATTERN.fullmatch(args.lang):
        raise ConfigError(f"--lang '{args.lang}' is not a language code: give a code such as en or pt_br")


@command
def score_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    check_options(args)
    sets = collect_test_sets(args)
    provenance: dict[str, Any] = {}
    for path in args.info:
        provenance.update(load_info(path))
    provenance.update(parse_meta(args.meta))  # parse everything before the (slower) scoring

    texts = {name: read_pair(hyp, ref) for name, (hyp, ref) in sets.items()}
    samples = read_samples(args.lang_sample)
    results = {}
    for name, (hyps, refs) in texts.items():
        result = scoring.score(hyps, refs, bleu_tok=args.bleu_tok, lowercase=args.lowercase,
                               protocols=args.extra_bleu, lang=args.lang, lang_samples=samples)
        hyp, ref = sets[name]
        results[name] = {**result, "hyp": str(Path(hyp)), "ref": str(Path(ref))}
    print(stdout_report(results), end="", flush=True)
    outputs = {args.output: scoring.format_report(results[PRIMARY]),
               args.json: json.dumps(scores_json(results, provenance), indent=2, ensure_ascii=False) + "\n"}
    write_all({path: text for path, text in outputs.items() if path})
    return 0


def write_all(outputs: dict[str, str]) -> None:
    """Each file is renamed to its final name only once every one has been written."""
    with contextlib.ExitStack() as stack:
        for path, text in outputs.items():
            stack.enter_context(atomic_output(path)).write(text)
