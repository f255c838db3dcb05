"""pasero-score: sacreBLEU BLEU, chrF and chrF++ of a hypothesis file, with provenance.

Writes `bleu.txt` (the lines `sacrebleu -f text` prints, signatures included) and a
`scores.json` that also carries where the hypotheses came from (checkpoint, step,
decoding time...), so a results table can be built from the JSON files alone.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from pasero import scoring
from pasero.cli.common import command, setup_logging
from pasero.errors import ConfigError, DataError
from pasero.files import atomic_output, read_lines

logger = logging.getLogger("pasero.score")


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
    parser.add_argument("-o", "--output", help="write the sacreBLEU score lines here (e.g. bleu.txt)")
    parser.add_argument("--json", help="write every metric, signature and the provenance here (scores.json)")
    parser.add_argument("--info", action="append", default=[], metavar="FILE.json",
                        help="JSON object merged into --json (e.g. pasero-decode --info-out); repeatable")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="extra provenance for --json; repeatable")
    return parser


@command
def score_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    provenance: dict[str, Any] = {}
    for path in args.info:
        provenance.update(load_info(path))
    provenance.update(parse_meta(args.meta))  # parse everything before the (slower) scoring

    hyps, refs = read_text(args.hyp), read_text(args.ref)
    if not hyps and refs:
        raise DataError(f"{args.hyp}: empty hypothesis file ({len(refs)} references in {args.ref})")
    if not refs:
        raise DataError(f"{args.ref}: empty reference file")
    if len(hyps) != len(refs):
        raise DataError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}: "
                        "the hypotheses must be aligned line by line with the references")
    result = scoring.score(hyps, refs, bleu_tok=args.bleu_tok, lowercase=args.lowercase)
    report = scoring.format_report(result)
    print(report, end="", flush=True)

    if args.output:
        with atomic_output(args.output) as f:
            f.write(report)
    if args.json:
        result = merge_provenance({**result, "hyp": str(Path(args.hyp)), "ref": str(Path(args.ref))}, provenance)
        with atomic_output(args.json) as f:
            json.dump(result, f, indent=2, ensure_ascii=False)
            f.write("\n")
    return 0
