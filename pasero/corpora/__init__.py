"""Corpus preparation: from a source (archive, user files, toy generator) to clean parallel text.

`prepare` writes `{train,valid,test}.{src,tgt}` for one language pair; `prepare_test_set`
writes one further, named test set `{name}.{src,tgt}` (`named_test_sets` lists them). Every
source yields raw sentence pairs (see `common.Corpus`); they are cleaned the same way
(whitespace normalized; pairs with an empty or NULL side dropped pairwise, and counted) unless
the source prepared them by its own recipe (IWSLT'14: fairseq's), and written atomically.

Sources, one module each:
- ted_talks (ted.py): the multi-aligned TED talks of Qi et al. (2018); no named test sets.
- iwslt14 (iwslt.py): exactly fairseq's prepare-iwslt14.sh (tokenized, lower-cased, cleaned,
  valid = every 23rd pair); named test sets dev2010, tedx_dev2012, tst2010, tst2011, tst2012.
- iwslt17 (iwslt.py): the WIT3 2017-01 archives; test = tst2017, named test sets: the other
  sets of the archives that valid does not use (tst2016).
- local (local.py): the user's plain-text files, `--files SPLIT=PATTERN` with `{lang}`; a
  name other than train/valid/test is a named test set.
- synthetic (local.py): the generated toy corpus (pasero.toy); no named test sets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pasero.corpora.common import (
    SPLITS,
    Corpus,
    CorpusOptions,
    write_splits,
    write_test_set,
)
from pasero.corpora.iwslt import iwslt14, iwslt17
from pasero.corpora.local import local, synthetic
from pasero.corpora.ted import ted_talks
from pasero.errors import ConfigError

__all__ = ["SOURCES", "SPLITS", "CorpusOptions", "named_test_sets", "prepare", "prepare_test_set"]

SOURCES: dict[str, Callable[[CorpusOptions, str, str], Corpus]] = {
    "ted_talks": ted_talks, "iwslt14": iwslt14, "iwslt17": iwslt17, "local": local, "synthetic": synthetic,
}
DOWNLOADED = ("ted_talks", "iwslt14", "iwslt17")
WITHOUT_TEST_SETS = ("ted_talks", "synthetic")  # known without opening the corpus


def _check_options(source: str, options: CorpusOptions) -> None:
    """Options that do not apply to a source are errors: they are usually a config mistake."""
    if source in DOWNLOADED:
        if not options.downloads:
            raise ConfigError(f"source {source} needs --url (the corpus archive's address; see config/config.yaml)")
        if options.raw_dir is None:
            raise ConfigError(f"source {source} needs --raw-dir (where archives are downloaded and extracted)")
    elif options.downloads:
        raise ConfigError(f"source {source} downloads nothing: remove --url/--checksum")
    if options.files and source != "local":
        raise ConfigError(f"--files is only for the local source, not {source}")
    if source != "synthetic" and (options.seed is not None or options.sizes):
        raise ConfigError(f"--seed and --sizes are only for the synthetic source, not {source}")


def _check(source: str, src: str, tgt: str, options: CorpusOptions) -> None:
    if source not in SOURCES:
        raise ConfigError(f"unknown corpus source {source!r}; choose one of {', '.join(SOURCES)}")
    if src == tgt:
        raise ConfigError(f"language pair {src}-{tgt}: source and target languages must differ")
    _check_options(source, options)


def open_corpus(source: str, src: str, tgt: str, options: CorpusOptions) -> Corpus:
    """Check the options, fetch what the source needs and return its (lazily read) corpus."""
    _check(source, src, tgt, options)
    return SOURCES[source](options, src, tgt)


def prepare(source: str, src: str, tgt: str, output_dir: str | Path, options: CorpusOptions) -> dict[str, int]:
    """Write `output_dir/{train,valid,test}.{src,tgt}` for one language pair of a corpus."""
    corpus = open_corpus(source, src, tgt, options)
    return write_splits(corpus.pairs, src, tgt, Path(output_dir), final=corpus.final)


def named_test_sets(source: str, src: str, tgt: str, options: CorpusOptions) -> list[str]:
    """The further test sets this corpus has for this pair (beside the primary `test`)."""
    _check(source, src, tgt, options)
    if source in WITHOUT_TEST_SETS:
        return []
    return list(open_corpus(source, src, tgt, options).test_sets)


def prepare_test_set(source: str, src: str, tgt: str, name: str, output_dir: str | Path,
                     options: CorpusOptions) -> int:
    """Write only `output_dir/{name}.{src,tgt}`, one further test set, cleaned as `prepare` would."""
    _check(source, src, tgt, options)
    corpus = None if source in WITHOUT_TEST_SETS else open_corpus(source, src, tgt, options)
    names = list(corpus.test_sets) if corpus else []
    if name not in names:
        has = f"it has: {', '.join(names)}" if names else "it has none beside test"
        raise ConfigError(f"--test-set {name}: the {source} corpus has no such test set for {src}-{tgt}; {has}")
    return write_test_set(corpus.test_sets[name](), name, src, tgt, Path(output_dir), final=corpus.final)
