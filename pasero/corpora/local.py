"""The user's own plain-text files (`local`) and the generated toy corpus (`synthetic`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from pasero.corpora.common import SPLITS, Corpus, CorpusOptions, Pair, parallel
from pasero.errors import ConfigError, DataError
from pasero.files import count_lines, expand_langs, read_lines

SET_NAME = re.compile(r"[A-Za-z0-9_]+")


def local(options: CorpusOptions, src: str, tgt: str) -> Corpus:
    """`--files SPLIT=PATTERN` for train, valid and test; any other name is a further test set.

    A pattern names the files of one side with `{lang}`; it may also contain `{src}`, `{tgt}` and
    `{pair}` when each language pair has files of its own (data/{pair}/train.{lang})."""
    missing = [split for split in SPLITS if split not in options.files]
    bad = [name for name in options.files if not SET_NAME.fullmatch(name)]
    if missing or bad:
        raise ConfigError(f"local corpus: give --files for {', '.join(SPLITS)} "
                          f"(missing: {', '.join(missing) or 'none'}); "
                          f"further test set names are letters, digits and _ (bad: {', '.join(bad) or 'none'})")
    paths = {name: _paths(name, pattern, src, tgt) for name, pattern in options.files.items()}
    splits = {split: parallel(read_lines(paths[split][0]), read_lines(paths[split][1]), *paths[split])
              for split in SPLITS}
    test_sets = {name: functools.partial(_pairs, *paths[name]) for name in paths if name not in SPLITS}
    return Corpus.from_splits(splits, test_sets=test_sets)


def _paths(name: str, pattern: str, src: str, tgt: str) -> tuple[Path, Path]:
    """The two files of one split, checked to exist and to have the same number of lines."""
    if "{lang}" not in pattern:
        raise ConfigError(f"local corpus: the {name} pattern {pattern!r} needs a {{lang}} placeholder, "
                          "e.g. train.{lang}")
    path_src, path_tgt = (Path(expand_langs(pattern, src, tgt).replace("{lang}", lang)) for lang in (src, tgt))
    for path in (path_src, path_tgt):
        if not path.is_file():
            raise DataError(f"{path}: no such file (from the {name} pattern {pattern!r})")
    n_src, n_tgt = count_lines(path_src), count_lines(path_tgt)
    if n_src != n_tgt:
        raise DataError(f"{path_src} has {n_src} lines but {path_tgt} has {n_tgt}; "
                        "parallel files must have one sentence per line, aligned")
    return path_src, path_tgt


def _pairs(path_src: Path, path_tgt: Path) -> Iterator[Pair]:
    return parallel(read_lines(path_src), read_lines(path_tgt), path_src, path_tgt)


def synthetic(options: CorpusOptions, src: str, tgt: str) -> Corpus:
    from pasero import toy

    if src not in toy.LANGUAGES or tgt not in toy.LANGUAGES or src == tgt:
        raise DataError(f"the synthetic corpus has no {src}-{tgt}; its languages are {', '.join(toy.LANGUAGES)} "
                        "(any pair of two of them)")
    return Corpus.from_splits(toy.generate_pairs(src, tgt, seed=1 if options.seed is None else options.seed,
                                                 sizes=options.sizes))
