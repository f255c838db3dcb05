"""`pasero-download`: prepare one language pair of a corpus as clean, line-aligned plain text."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from pasero.cli.common import command, setup_logging
from pasero.corpora import SOURCES, SPLITS, CorpusOptions, prepare, prepare_test_set
from pasero.download import Checksum
from pasero.errors import ConfigError

logger = logging.getLogger(__name__)

EPILOG = """\
examples:
  pasero-download --source synthetic --pair de-en -o results/toy/de-en/text --seed 1 --sizes train=30000
  pasero-download --source ted_talks --pair de-en --raw-dir results/TED/raw -o results/TED/de-en/text \\
      --url http://phontron.com/data/ted_talks.tar.gz --checksum sha256:HEX
  pasero-download --source local --pair de-en -o results/mine/de-en/text \\
      --files train=data/train.{lang} valid=data/dev.{lang} test=data/test.{lang}
  pasero-download --source iwslt17 --pair de-en --raw-dir results/IWSLT17/raw -o results/IWSLT17/de-en/text \\
      --url URL1 --url URL2 --url URL3 --test-set tst2016     # writes only tst2016.de, tst2016.en

further test sets (--test-set): iwslt14: dev2010, tedx_dev2012, tst2010, tst2011, tst2012;
iwslt17: the sets of the archives that neither valid nor test uses (tst2016); local: any
--files name other than train, valid, test; ted_talks and synthetic: none.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pasero-download", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download (or generate) a corpus and write TEXT_DIR/{train,valid,test}.{SRC,TGT} "
        "(or one further test set with --test-set): "
        "clean plain text, one sentence per line, source and target line-aligned.",
    )
    parser.add_argument("--source", required=True, choices=list(SOURCES), help="kind of corpus")
    parser.add_argument("--pair", required=True, metavar="SRC-TGT", help="language pair, e.g. de-en")
    parser.add_argument("-o", "--output-dir", required=True, type=Path, metavar="TEXT_DIR")
    parser.add_argument("--raw-dir", type=Path, metavar="RAW",
                        help="where archives are downloaded and extracted (shared by the pairs of a corpus)")
    parser.add_argument("--url", action="append", default=[], help="archive to download (repeatable)")
    parser.add_argument("--checksum", action="append", default=[], metavar="md5:HEX|sha256:HEX",
                        help="checksum of the archive of the --url at the same position (or 'none')")
    parser.add_argument("--files", nargs="+", action="extend", default=[], metavar="SPLIT=PATTERN",
                        help="local source: one pattern with {lang} per split, e.g. train=data/train.{lang}; "
                        "other names than train, valid, test are further test sets")
    parser.add_argument("--test-set", metavar="NAME",
                        help="write only NAME.{SRC,TGT}, a further test set of the corpus (e.g. tst2016), "
                        "instead of train/valid/test")
    parser.add_argument("--seed", type=int, help="synthetic source: random seed (default 1)")
    parser.add_argument("--sizes", nargs="+", action="extend", default=[], metavar="SPLIT=N",
                        help="synthetic source: sentence pairs per split, e.g. train=30000 valid=500 test=500")
    parser.add_argument("--retries", type=int, default=5, help="retries after a failed download (default 5)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def _key_values(items: list[str], option: str, splits_only: bool = True) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{option} {item!r}: expected SPLIT=VALUE, e.g. train=...")
        if splits_only and key not in SPLITS:
            raise ConfigError(f"{option} {item!r}: unknown split {key!r}; use {', '.join(SPLITS)}")
        result[key] = value
    return result


def _downloads(urls: list[str], checksums: list[str]) -> list[tuple[str, Checksum | None]]:
    if checksums and len(checksums) != len(urls):
        raise ConfigError(f"{len(urls)} --url but {len(checksums)} --checksum: give one checksum per URL "
                          "(or 'none'), in the same order")
    parsed = [None if c.strip().lower() in ("", "none", "null") else Checksum.parse(c) for c in checksums]
    return list(zip(urls, parsed or [None] * len(urls), strict=True))


def _sizes(items: list[str]) -> dict[str, int] | None:
    if not items:
        return None
    sizes = {}
    for split, value in _key_values(items, "--sizes").items():
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--sizes {split}={value}: expected a positive number of sentence pairs")
        sizes[split] = int(value)
    return sizes


@command
def download_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    src, sep, tgt = args.pair.partition("-")
    if not sep or not src or not tgt or "-" in tgt:
        raise ConfigError(f"--pair {args.pair!r}: expected SRC-TGT language codes, e.g. de-en")
    options = CorpusOptions(
        raw_dir=args.raw_dir,
        downloads=_downloads(args.url, args.checksum),
        files=_key_values(args.files, "--files", splits_only=False),
        seed=args.seed,
        sizes=_sizes(args.sizes),
        download_options={"retries": args.retries},
    )
    if args.test_set is not None:
        n = prepare_test_set(args.source, src, tgt, args.test_set, args.output_dir, options)
        logger.info("wrote %s: %s %d", args.output_dir, args.test_set, n)
        return 0
    counts = prepare(args.source, src, tgt, args.output_dir, options)
    logger.info("wrote %s: %s", args.output_dir, ", ".join(f"{split} {n}" for split, n in counts.items()))
    return 0
