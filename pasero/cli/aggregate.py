"""pasero-aggregate: the results tables of every scored experiment (summary.tsv, summary.md)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from pasero import aggregate
from pasero.cli.common import command, setup_logging

logger = logging.getLogger("pasero.aggregate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasero-aggregate",
        description="One row per experiment (corpus, pair, variant, BLEU, chrF, signature, best step, "
                    "training time, parameters) from the scores.json files that pasero-score wrote.")
    parser.add_argument("paths", nargs="+", metavar="RESULTS_DIR_OR_SCORES",
                        help="results folders (searched recursively for scores.json) or scores.json files")
    parser.add_argument("-o", "--output", required=True, help="tab-separated table, e.g. results/summary.tsv")
    parser.add_argument("--markdown", metavar="FILE.md",
                        help="also write the table, a pair x corpus BLEU table and, per corpus, every test set "
                             "and BLEU protocol with a legend of signatures, in Markdown")
    parser.add_argument("--html", metavar="FILE.html",
                        help="also write the tables, what each experiment cost and a few test translations per "
                             "experiment as one HTML page (the report's results)")
    return parser


@command
def aggregate_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    table = aggregate.aggregate(args.paths, args.output, args.markdown)
    if args.html:
        from pasero.report_html import write_html

        write_html(table, args.html)
    print(aggregate.to_markdown(aggregate.bleu_table(table), index=True), end="")
    logger.info("%d experiments -> %s%s", len(table), args.output, f" and {args.markdown}" if args.markdown else "")
    return 0


@command
def combine_main(argv: Sequence[str] | None = None) -> int:
    from pasero import directions
    from pasero.cli.score import parse_meta

    parser = argparse.ArgumentParser(
        prog="pasero-combine-directions",
        description="A multilingual experiment's table from the scores.json of its directions: each direction's "
                    "BLEU and chrF, and their averages over the trained directions, X->pivot, pivot->X and the "
                    "zero-shot directions.")
    parser.add_argument("scores", nargs="+", metavar="SCORES_JSON", help="one {src}-{tgt}/scores.json per direction")
    parser.add_argument("--pivot", default="en", help="the hub language of the X->pivot and pivot->X averages")
    parser.add_argument("-o", "--output", required=True, help="the table as text (bleu.txt)")
    parser.add_argument("--json", required=True, help="the table as JSON (scores.json)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="extra fields of the JSON")
    args = parser.parse_args(argv)
    setup_logging()
    combined = directions.combine(args.scores, args.pivot, parse_meta(args.meta))
    directions.write(combined, args.output, args.json)
    print(directions.to_text(combined), end="")
    return 0
