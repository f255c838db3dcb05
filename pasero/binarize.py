"""Corpus passes that run in parallel: counting tokens (dictionaries) and binarization.

Like fairseq-preprocess, a file is cut into line-aligned byte ranges, one per worker
process. Each worker reads only its range, tokenizes and encodes it (into its own temporary
dataset when binarizing), and the parent merges the results in range order, so the output
does not depend on the number of workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import glob
import itertools
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pasero.dictionary import Dictionary
from pasero.errors import DataError
from pasero.files import invalid_utf8
from pasero.indexed_dataset import IndexedDatasetBuilder, best_dtype
from pasero.progress import progress_bar
from pasero.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

BATCH_LINES = 2000
PROGRESS_PARTS = 16  # parts per worker: what a progress bar advances by


@dataclass
class BinarizeStats:
    sentences: int = 0
    tokens: int = 0  # </s> included, as fairseq counts them
    unknown: int = 0
    seconds: float = 0.0

    @property
    def unknown_rate(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    def add(self, other: BinarizeStats) -> None:
        self.sentences += other.sentences
        self.tokens += other.tokens
        self.unknown += other.unknown

    def __str__(self) -> str:
        return (f"{self.sentences} sentences, {self.tokens} tokens, {self.unknown} replaced by <unk> "
                f"({100 * self.unknown_rate:.3f}%), {self.seconds:.1f}s")


def available_cpus() -> int:
    """CPUs this process may use (SLURM and taskset restrict them), the default worker count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _BadLine(Exception):
    """Invalid UTF-8 at a line of a range (line numbers are made global by the parent)."""

    def __init__(self, line: int, byte: int):
        super().__init__(line, byte)
        self.line, self.byte = line, byte


# -- byte ranges -------------------------------------------------------------------------


def line_ranges(path: str | os.PathLike, n: int) -> list[tuple[int, int]]:
    """Cut a file into at most `n` byte ranges that start at line beginnings."""
    size = os.path.getsize(path)
    offsets = [0]
    with open(path, "rb") as f:
        for i in range(1, n):
            f.seek(max(size * i // n, offsets[-1]))
            if f.tell() > 0:
                f.seek(f.tell() - 1)
                f.readline()  # finish the current line (a no-op right after a newline)
            offsets.append(f.tell())
    offsets.append(size)
    return [(a, b) for a, b in itertools.pairwise(offsets) if b > a]


def read_range(path: str | os.PathLike, start: int, end: int) -> Iterator[list[str]]:
    """Batches of decoded lines of a byte range; `_BadLine` on invalid UTF-8."""
    batch: list[str] = []
    lineno = 0
    with open(path, "rb") as f:
        f.seek(start)
        position = start
        while position < end:
            raw = f.readline()
            if not raw:
                break
            position += len(raw)
            lineno += 1
            try:
                batch.append(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise _BadLine(lineno, e.start) from None
            if len(batch) == BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


def _check_input(path: str | os.PathLike) -> None:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such file")


def _bad_line_error(path: str | os.PathLike, start: int, error: _BadLine) -> DataError:
    with open(path, "rb") as f:
        before = f.read(start).count(b"\n")
    return invalid_utf8(path, before + error.line, error.byte)


# -- encoding --------------------------------------------------------------------------


class Encoder:
    """Lines -> dictionary ids (with </s>), through the tokenizer or by whitespace splitting."""

    def __init__(self, dictionary: Dictionary, tokenizer: Tokenizer | None = None):
        self.dictionary = dictionary
        self.tokenizer = tokenizer
        if tokenizer is not None:
            # SentencePiece id -> dictionary id; one extra slot stands for </s>.
            self._eos_slot = len(tokenizer)
            self._to_dict = np.array(
                [dictionary.index(p) for p in tokenizer.pieces] + [dictionary.eos_idx], dtype=np.int64
            )

    def encode(self, lines: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (concatenated ids, sentence lengths)."""
        if self.tokenizer is None:
            get, unk, eos = self.dictionary.indices.get, Dictionary.unk_idx, Dictionary.eos_idx
            sentences = [[get(t, unk) for t in line.split()] + [eos] for line in lines]
            sizes = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
            flat = np.fromiter(itertools.chain.from_iterable(sentences), dtype=np.int64, count=int(sizes.sum()))
            return flat, sizes
        ids, sizes = self.tokenizer.encode_flat(lines)
        ids = np.insert(ids, np.cumsum(sizes), self._eos_slot)  # </s> after every line
        return self._to_dict[ids], sizes + 1

    def count(self, lines: Sequence[str]) -> collections.Counter | np.ndarray:
        """Token counts: a Counter of pieces, or (with a tokenizer) a bincount of piece ids."""
        if self.tokenizer is None:
            counter: collections.Counter = collections.Counter()
            for line in lines:
                counter.update(line.split())
            return counter
        return np.bincount(self.tokenizer.encode_flat(lines)[0], minlength=len(self.tokenizer))


_ENCODER: Encoder | None = None


def _init_worker(encoder: Encoder) -> None:
    global _ENCODER
    _ENCODER = encoder


def _encode_range(path: str, start: int, end: int, builder: IndexedDatasetBuilder) -> BinarizeStats:
    """Encode the lines of a byte range into `builder` (raises `_BadLine`)."""
    stats = BinarizeStats()
    for lines in read_range(path, start, end):
        ids, sizes = _ENCODER.encode(lines)
        builder.add_many(ids, sizes)
        stats.sentences += len(sizes)
        stats.tokens += len(ids)
        stats.unknown += int(np.count_nonzero(ids == Dictionary.unk_idx))
    return stats


def _binarize_part(path: str, start: int, end: int, prefix: str, dtype: np.dtype) -> BinarizeStats | _BadLine:
    """Worker task: a byte range into its own temporary dataset."""
    try:
        with IndexedDatasetBuilder(prefix, dtype) as builder:
            return _encode_range(path, start, end, builder)
    except _BadLine as e:
        return e


def _count_range(path: str, start: int, end: int) -> collections.Counter | np.ndarray | _BadLine:
    total = None
    try:
        for lines in read_range(path, start, end):
            counts = _ENCODER.count(lines)
            total = counts if total is None else total + counts
    except _BadLine as e:
        return e
    return total if total is not None else _ENCODER.count([])


def _map_ranges(func: Callable, tasks: list[tuple], encoder: Encoder, workers: int,
                done: Callable[[tuple], Any] = lambda task: None) -> list[Any]:
    """Run `func(*task)` for every task, in worker processes when there are several; `done(task)`
    as each one ends (in any order), the results in the order of the tasks."""
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(encoder)
        return [_then(func(*task), done, task) for task in tasks]
    context = multiprocessing.get_context("spawn")  # safe whatever threads the parent runs
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context,
        initializer=_init_worker, initargs=(encoder,),
    ) as pool:
        futures = {pool.submit(func, *task): task for task in tasks}
        for future in concurrent.futures.as_completed(futures):
            done(futures[future])
        return [future.result() for future in futures]


def _then(result: Any, done: Callable[[tuple], Any], task: tuple) -> Any:
    done(task)
    return result


# -- public entry points -----------------------------------------------------------------


def check_vocabulary(dictionary: Dictionary, tokenizer: Tokenizer, dict_name: str = "dictionary",
                     tokenizer_name: str = "tokenizer") -> None:
    """Refuse a dictionary that was not built from this tokenizer's pieces."""
    pieces = [p for i, p in enumerate(tokenizer.pieces)
              if i not in tokenizer.byte_ids and i not in tokenizer.special_ids]
    missing = [p for p in pieces if p not in dictionary]
    symbols = [s for s in tokenizer.user_symbols if s not in dictionary]  # markers, language codes
    if symbols or len(missing) > len(pieces) / 2:
        what = f"lacks {', '.join(symbols)}" if symbols else f"lacks {len(missing)} of its {len(pieces)} pieces"
        raise DataError(f"{dict_name} does not match {tokenizer_name} ({what}); build the dictionary "
                        "with this tokenizer (pasero-build-dict --tokenizer)")


def binarize(input_path: str | os.PathLike, output_prefix: str | os.PathLike, dictionary: Dictionary,
             tokenizer: Tokenizer | None = None, workers: int = 1) -> BinarizeStats:
    """Text file -> PREFIX.bin/.idx (every sentence ends with </s>); atomic."""
    start_time = time.perf_counter()
    _check_input(input_path)
    if tokenizer is not None:
        check_vocabulary(dictionary, tokenizer)
    encoder = Encoder(dictionary, tokenizer)
    dtype = best_dtype(len(dictionary))
    path = str(input_path)
    ranges = line_ranges(path, max(workers, 1) * PROGRESS_PARTS)  # parts of the file: the progress bar's steps
    stats = BinarizeStats()
    with IndexedDatasetBuilder(output_prefix, dtype) as builder, \
            progress_bar(os.path.getsize(path), Path(path).name, "B", unit_scale=True) as bar:
        if workers <= 1 or len(ranges) <= 1:
            _init_worker(encoder)
            for start, end in ranges:
                try:
                    stats.add(_encode_range(path, start, end, builder))
                except _BadLine as e:
                    raise _bad_line_error(path, start, e) from None
                bar.update(end - start)
        else:
            tmp_dir = _parts_dir(Path(output_prefix))
            try:
                tasks = [(path, a, b, os.path.join(tmp_dir, f"part{i}"), dtype) for i, (a, b) in enumerate(ranges)]
                results = _map_ranges(_binarize_part, tasks, encoder, workers, lambda t: bar.update(t[2] - t[1]))
                _raise_bad_lines(tasks, results)
                for task, result in zip(tasks, results, strict=True):
                    builder.merge(task[3])
                    stats.add(result)
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
    stats.seconds = time.perf_counter() - start_time
    return stats


def _parts_dir(output_prefix: Path) -> str:
    """A folder for the workers' parts of one output; the parts of a killed run of the same output
    are removed first (one job writes a given output at a time; other outputs of the folder may be
    being written by other jobs, so only this output's leftovers are touched)."""
    prefix = f".{output_prefix.name}.binarize."
    for stale in output_prefix.parent.glob(f"{glob.escape(prefix)}*"):
        shutil.rmtree(stale, ignore_errors=True)
    return tempfile.mkdtemp(prefix=prefix, dir=output_prefix.parent)


def count_tokens(paths: Sequence[str | os.PathLike], tokenizer: Tokenizer | None = None,
                 workers: int = 1) -> dict[str, int]:
    """Token frequencies over files; with a tokenizer, every piece is listed (0 if unseen)."""
    for path in paths:
        _check_input(path)
    encoder = Encoder(Dictionary(), tokenizer)
    tasks = [(str(p), a, b) for p in paths for a, b in line_ranges(p, max(workers, 1))]
    results = _map_ranges(_count_range, tasks, encoder, workers)
    _raise_bad_lines(tasks, results)
    if tokenizer is None:
        total: collections.Counter = collections.Counter()
        for counter in results:
            total.update(counter)
        return dict(total)
    ids = sum(results, np.zeros(len(tokenizer), dtype=np.int64))
    return {p: int(ids[i]) for i, p in enumerate(tokenizer.pieces) if i not in tokenizer.special_ids}


def build_dictionary(paths: Sequence[str | os.PathLike], tokenizer: Tokenizer | None = None,
                     min_count: int = 0, pad_to_multiple: int = 8, workers: int = 1) -> Dictionary:
    """A fairseq dictionary of the (tokenized) text; a tokenizer's markers and language
    codes are always kept, since they may be inserted without appearing in the text."""
    counts = count_tokens(paths, tokenizer, workers)
    keep = tokenizer.user_symbols if tokenizer is not None else ()
    return Dictionary.from_counts(counts, min_count=min_count, pad_to_multiple=pad_to_multiple, keep=keep)


def _raise_bad_lines(tasks: list[tuple], results: list) -> None:
    """Tasks start with (path, start, ...): report the first invalid line."""
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, _BadLine):
            raise _bad_line_error(task[0], task[1], result)
