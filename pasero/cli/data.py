"""Data preparation commands: tokenizer training, (de)tokenization, dictionary, binarization.

    pasero-build-tokenizer -i train.de train.en -o tokenizer --vocab-size 8000 [--inline-case]
    pasero-tokenize tokenizer < text > pieces        pasero-detokenize tokenizer < pieces > text
    pasero-build-dict -i train.de train.en --tokenizer tokenizer -o dict.txt
    pasero-binarize --dict dict.txt --tokenizer tokenizer -i train.de -o bin/train.de-en.de
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO

from pasero import binarize as binarizer
from pasero.cli.common import command, setup_logging
from pasero.dictionary import Dictionary
from pasero.errors import DataError
from pasero.files import atomic_output, decode_line
from pasero.tokenizer import Tokenizer

logger = logging.getLogger("pasero.data")


def _add_workers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=binarizer.available_cpus(),
                        help="worker processes (default: the CPUs this process may use)")


# -- pasero-build-tokenizer -----------------------------------------------------------------


@command
def build_tokenizer_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pasero-build-tokenizer",
        description="Train a SentencePiece BPE tokenizer (jointly on all inputs) and write "
                    "spm.model, spm.vocab and settings.yaml to the output folder.")
    parser.add_argument("-i", "--inputs", nargs="+", required=True, metavar="TEXT",
                        help="training text, one sentence per line (e.g. train.de train.en for a joint model)")
    parser.add_argument("-o", "--output", required=True, metavar="TOKENIZER_DIR")
    parser.add_argument("--vocab-size", type=int, required=True, help="number of pieces")
    parser.add_argument("--inline-case", action="store_true",
                        help="lower-case pieces followed by <T> (Title) or <U> (UPPER) markers")
    parser.add_argument("--nfkc", action="store_true", help="apply Unicode NFKC normalization")
    parser.add_argument("--lang-codes", nargs="+", action="extend", default=[], metavar="CODE",
                        help="language codes to add as tokens: 'en' becomes <lang:en> (repeatable)")
    parser.add_argument("--character-coverage", type=float, default=0.9995,
                        help="share of characters covered by pieces; the rest is spelled in bytes")
    parser.add_argument("--sample-size", type=int, default=1_000_000,
                        help="train on this many randomly drawn lines (0: all lines)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the line sample")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="above 1, each language (inputs grouped by extension: train.de, train.en) gets a "
                             "share of the sample proportional to its lines ** (1 / temperature), so small languages "
                             "get more (default: 1, uniform)")
    parser.add_argument("--threads", type=int, default=None, help="SentencePiece training threads")
    parser.add_argument("--dict-out", metavar="FILE",
                        help="also write a fairseq dict.txt of the pieces (counted over the inputs)")
    parser.add_argument("--pad-to-multiple", type=int, default=8, help="for --dict-out")
    _add_workers(parser)
    args = parser.parse_args(argv)
    setup_logging()
    tokenizer = Tokenizer.train(
        args.inputs, args.output, args.vocab_size, inline_case=args.inline_case, nfkc=args.nfkc,
        lang_codes=args.lang_codes, character_coverage=args.character_coverage,
        sample_size=args.sample_size, seed=args.seed, threads=args.threads, temperature=args.temperature,
    )
    if args.dict_out:
        _write_dictionary(args.inputs, tokenizer, args.dict_out, 0, args.pad_to_multiple, args.workers)
    return 0


# -- pasero-tokenize / pasero-detokenize ------------------------------------------------------


def _stream(argv: Sequence[str] | None, prog: str, description: str,
            make: Callable[[Tokenizer], Callable[[list[str]], list[str]]]) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("tokenizer", metavar="TOKENIZER_DIR")
    parser.add_argument("-i", "--input", help="input file (default: standard input)")
    parser.add_argument("-o", "--output", help="output file, written atomically (default: standard output)")
    args = parser.parse_args(argv)
    process = make(Tokenizer.load(args.tokenizer))
    if args.input:
        if not os.path.isfile(args.input):
            raise DataError(f"{args.input}: no such file")
        source = open(args.input, "rb")
    else:
        source = sys.stdin.buffer
    name = args.input or "<stdin>"
    with source:
        if args.output:
            with atomic_output(args.output, "wb") as out:
                for lines in _batches(source, name, interactive=False):
                    out.write("".join(line + "\n" for line in process(lines)).encode("utf-8"))
            return 0
        # Interactive use (a terminal or a pipe fed line by line): answer each line at once.
        interactive = not _is_regular_file(source)
        out = sys.stdout.buffer
        for lines in _batches(source, name, interactive):
            out.write("".join(line + "\n" for line in process(lines)).encode("utf-8"))
            if interactive:
                out.flush()
        out.flush()
    return 0


def _batches(source: BinaryIO, name: str, interactive: bool, size: int = 1000) -> Iterator[list[str]]:
    """Decoded lines, one at a time when interactive, else in batches (faster)."""
    batch: list[str] = []
    for lineno, raw in enumerate(iter(source.readline, b""), 1):
        batch.append(decode_line(raw, name, lineno).rstrip("\r\n"))
        if interactive or len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _is_regular_file(stream: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):
        return False


@command
def tokenize_main(argv: Sequence[str] | None = None) -> int:
    def make(tokenizer: Tokenizer) -> Callable[[list[str]], list[str]]:
        pieces = tokenizer.pieces
        return lambda lines: [" ".join(map(pieces.__getitem__, ids)) for ids in tokenizer.encode_batch(lines)]

    return _stream(argv, "pasero-tokenize", "Split text into pieces, one line at a time (stdin -> stdout).", make)


@command
def detokenize_main(argv: Sequence[str] | None = None) -> int:
    def make(tokenizer: Tokenizer) -> Callable[[list[str]], list[str]]:
        return lambda lines: [tokenizer.detokenize(line) for line in lines]

    return _stream(argv, "pasero-detokenize", "Join pieces back into text, restoring case (stdin -> stdout).", make)


# -- pasero-build-dict ----------------------------------------------------------------------


def _write_dictionary(inputs: Sequence[str], tokenizer: Tokenizer | None, output: str, min_count: int,
                      pad_to_multiple: int, workers: int) -> Dictionary:
    dictionary = binarizer.build_dictionary(inputs, tokenizer, min_count=min_count,
                                            pad_to_multiple=pad_to_multiple, workers=workers)
    dictionary.save(output)
    logger.info("wrote %s: %d symbols (specials and padding included)", output, len(dictionary))
    return dictionary


@command
def build_dict_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pasero-build-dict",
        description="Count tokens and write a fairseq-format dictionary (most frequent first).")
    parser.add_argument("-i", "--inputs", nargs="+", required=True, metavar="TEXT",
                        help="text files (tokenized, unless --tokenizer is given)")
    parser.add_argument("--tokenizer", metavar="TOKENIZER_DIR", help="tokenize the inputs with this tokenizer")
    parser.add_argument("-o", "--output", required=True, metavar="DICT", help="output dict.txt")
    parser.add_argument("--min-count", type=int, default=0,
                        help="drop tokens seen fewer times (markers and language codes are kept)")
    parser.add_argument("--pad-to-multiple", type=int, default=8,
                        help="pad the size with madeupwordNNNN entries to a multiple of this")
    _add_workers(parser)
    args = parser.parse_args(argv)
    setup_logging()
    tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else None
    _write_dictionary(args.inputs, tokenizer, args.output, args.min_count, args.pad_to_multiple, args.workers)
    return 0


# -- pasero-binarize ------------------------------------------------------------------------


@command
def binarize_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pasero-binarize",
        description="Encode a text file into PREFIX.bin/PREFIX.idx (fairseq mmap format, </s> after "
                    "every sentence) and report the rate of tokens replaced by <unk>.")
    parser.add_argument("--dict", required=True, metavar="DICT", help="fairseq-format dict.txt")
    parser.add_argument("--tokenizer", metavar="TOKENIZER_DIR",
                        help="tokenize the input with this tokenizer (default: the input is already tokenized)")
    parser.add_argument("-i", "--input", required=True, metavar="TEXT")
    parser.add_argument("-o", "--output", required=True, metavar="PREFIX",
                        help="output prefix, e.g. bin/train.de-en.de")
    _add_workers(parser)
    args = parser.parse_args(argv)
    setup_logging()
    dictionary = Dictionary.load(args.dict)
    tokenizer = Tokenizer.load(args.tokenizer) if args.tokenizer else None
    if tokenizer is not None:
        binarizer.check_vocabulary(dictionary, tokenizer, args.dict, args.tokenizer)
    stats = binarizer.binarize(args.input, args.output, dictionary, tokenizer, workers=args.workers)
    logger.info("%s -> %s.{bin,idx}: %s", args.input, args.output, stats)
    if stats.unknown_rate > 0.05:
        logger.warning("%.1f%% of the tokens of %s are unknown to %s: is it the right dictionary?",
                       100 * stats.unknown_rate, args.input, args.dict)
    return 0
