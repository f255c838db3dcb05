"""The Moses steps of fairseq's prepare-iwslt14.sh, reproduced in Python.

- tokenizer.perl -l LANG (default options: escaping on, no aggressive hyphen splitting) is
  sacremoses' port of it, run over chunks of pairs in a few worker processes (it is the slow
  step: about a millisecond per line) with a bounded number of chunks in flight;
- clean-corpus-n.perl -ratio R CORPUS L1 L2 OUT MIN MAX, rule for rule (see `clean_corpus_n`);
- lowercase.perl is Perl's lc, i.e. str.lower().
"""

from __future__ import annotations

import functools
import itertools
import logging
import multiprocessing
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from pasero.errors import DataError

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
T = TypeVar("T")

CHUNK_SIZE = 1000     # pairs per task sent to a worker
MAX_WORKERS = 8
MIN_CHUNKS_FOR_WORKERS = 4  # below, starting worker processes costs more than it saves
_WHITESPACE = re.compile(r"\s+")
_tokenizers: dict = {}


def _tokenizer(lang: str):
    """One sacremoses tokenizer per language and process (building one loads its prefix lists)."""
    if lang not in _tokenizers:
        from sacremoses import MosesTokenizer

        _tokenizers[lang] = MosesTokenizer(lang)
    return _tokenizers[lang]


def tokenize(text: str, lang: str) -> str:
    """tokenizer.perl -l LANG on one line (escaping on: `'` -> `&apos;`, `<` -> `&lt;`...)."""
    return _tokenizer(lang).tokenize(text, return_str=True, escape=True)


def _tokenize_chunk(task: tuple[str, str, list[Pair]]) -> list[Pair]:
    src, tgt, pairs = task
    return [(tokenize(a, src), tokenize(b, tgt)) for a, b in pairs]


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of `size` consecutive items (the last one shorter); itertools.batched is 3.12+."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def tokenize_pairs(pairs: Iterable[Pair], src: str, tgt: str, chunk_size: int | None = None,
                   workers: int | None = None) -> Iterator[Pair]:
    """Moses-tokenize both sides of every pair, in order.

    Worker processes start only from MIN_CHUNKS_FOR_WORKERS chunks on (dev/test sets and small
    tests stay in-process); at most a few chunks per worker are in memory at any time.
    """
    chunks = batched(pairs, chunk_size or CHUNK_SIZE)
    head = list(itertools.islice(chunks, MIN_CHUNKS_FOR_WORKERS))
    workers = workers or default_workers()
    if len(head) < MIN_CHUNKS_FOR_WORKERS or workers == 1:
        for chunk in itertools.chain(head, chunks):
            yield from _tokenize_chunk((src, tgt, chunk))
        return
    tasks = ((src, tgt, chunk) for chunk in itertools.chain(head, chunks))
    for chunk in _in_workers(tasks, workers):
        yield from chunk


def _in_workers(tasks: Iterator[tuple[str, str, list[Pair]]], workers: int) -> Iterator[list[Pair]]:
    """Tokenized chunks, in order, from `workers` processes, a window of chunks at a time.

    Spawned, not forked: the parent may run threads (a progress bar, a test's HTTP server).
    Spawned workers import the caller's main module; a script without the `__main__` guard
    makes them fail, and then the rest is tokenized in this process instead of hanging.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for window in batched(tasks, 4 * workers):
            try:
                results = list(pool.map(_tokenize_chunk, window))
            except BrokenProcessPool:
                logger.warning("Moses tokenization: the worker processes failed (a script calling pasero "
                               "without `if __name__ == \"__main__\":`?); going on in this process")
                yield from map(_tokenize_chunk, window)
                break
            yield from results
    yield from map(_tokenize_chunk, tasks)  # what is left after a failure


def clean_corpus_n(pairs: Iterable[Pair], ratio: float = 1.5, min_tokens: int = 1, max_tokens: int = 175,
                   max_word_length: int = 1000, name: str = "corpus") -> Iterator[Pair]:
    """clean-corpus-n.perl -ratio RATIO ... MIN MAX, rule for rule, on a stream of pairs.

    Per side: `|` removed (unless the first pair has one: then the corpus is "factored" and
    `|` separates factors), whitespace runs collapsed to one space, ends stripped. The pair is
    dropped if a side is empty, has more than MAX or fewer than MIN tokens, if the token-count
    ratio either way exceeds RATIO, or if a side has a word longer than MAX_WORD_LENGTH.
    """
    factored = None
    n_in = n_out = 0
    for n_in, (src, tgt) in enumerate(pairs, 1):
        if factored is None:
            factored = "|" in src or "|" in tgt
        src, tgt = _clean_side(src, factored), _clean_side(tgt, factored)
        if not _keep(src, tgt, ratio, min_tokens, max_tokens, max_word_length):
            continue
        if factored and (_BLANK_FACTOR.search(src) or _BLANK_FACTOR.search(tgt)):
            raise DataError(f"{name}: a blank factor ('||' or ' |') in pair {n_in}; "
                            "a first line with '|' makes clean-corpus-n read the corpus as factored")
        n_out += 1
        yield src, tgt
    logger.info("%s: clean-corpus-n (ratio %g, %d-%d tokens): %d pairs in, %d kept",
                name, ratio, min_tokens, max_tokens, n_in, n_out)


_BLANK_FACTOR = re.compile(r"[ |]\|")


def _clean_side(text: str, factored: bool) -> str:
    if not factored:
        text = text.replace("|", "")
    text = _WHITESPACE.sub(" ", text)
    return text.removeprefix(" ").removesuffix(" ")


def _keep(src: str, tgt: str, ratio: float, min_tokens: int, max_tokens: int, max_word_length: int) -> bool:
    if not src or not tgt:
        return False
    n_src, n_tgt = len(src.split(" ")), len(tgt.split(" "))
    if not (min_tokens <= n_src <= max_tokens and min_tokens <= n_tgt <= max_tokens):
        return False
    if n_tgt / n_src > ratio or n_src / n_tgt > ratio:
        return False
    too_long = _too_long(max_word_length)
    return not (too_long.search(src) or too_long.search(tgt))


@functools.lru_cache
def _too_long(max_word_length: int) -> re.Pattern:
    """A word (or factor) longer than the limit; clean-corpus-n's guard for GIZA++/symal."""
    return re.compile(rf"[^\s|]{{{max_word_length + 1}}}")


def lowercase(text: str) -> str:
    """lowercase.perl (Perl's lc)."""
    return text.lower()
