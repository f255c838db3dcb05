"""The multi-aligned TED talks of Qi et al. (2018): `all_talks_{train,dev,test}.tsv`.

Each TSV has a header row of language codes (and `talk_name`) and one row per sentence
with one cell per language. A missing translation is a NULL placeholder: `__NULL__`,
`_ _ NULL _ _` (the tokenized form), sometimes doubled (`_ _ NULL _ _ _ _ NULL _ _`) or glued
to real text (`Quando eu tinha 11 anos , _ _ NULL _ _`): such a cell is not a translation of
its row, so the row is dropped for a pair whose source or target cell contains a placeholder
anywhere. That is what the corpus authors' and the Hugging Face loaders do (they drop rows with
the placeholder). Pasero's download-TED.sh goes further and blanks every line that contains
"NULL" at all; we deliberately keep a real sentence with the word NULL in it (a talk about
databases or programming), since only the underscored placeholder marks a missing cell.
Text is Moses-escaped (`&apos;`, `&quot;`...), which is undone here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from pasero.corpora.common import (
    NULL_PLACEHOLDER,
    Corpus,
    CorpusOptions,
    Pair,
    fetch_all,
    find,
)
from pasero.errors import DataError
from pasero.files import read_lines

logger = logging.getLogger(__name__)

MOSES_ESCAPES = {"&amp;": "&", "&#124;": "|", "&lt;": "<", "&gt;": ">", "&apos;": "'", "&quot;": '"',
                 "&#91;": "[", "&#93;": "]"}
_MOSES_ESCAPE = re.compile("|".join(map(re.escape, MOSES_ESCAPES)))
FILE_NAMES = {"train": "train", "valid": "dev", "test": "test"}


def ted_talks(options: CorpusOptions, src: str, tgt: str) -> Corpus:
    roots = fetch_all(options)
    return Corpus.from_splits({
        split: _ted_split(find(roots, f"all_talks_{name}.tsv", "the TED talks archive"), src, tgt)
        for split, name in FILE_NAMES.items()
    })


def _ted_split(path: Path, src: str, tgt: str) -> Iterator[Pair]:
    lines = read_lines(path)
    columns = next(lines, "").split("\t")
    languages = [c for c in columns if c and c != "talk_name"]
    indices = []
    for lang in (src, tgt):
        # Codes with a hyphen (pt-br, zh-cn) are written with "_" in pair names (pt_br-en).
        column = lang if lang in languages else lang.replace("_", "-")
        if column not in languages:
            lines.close()
            raise DataError(f"{path}: the TED talks corpus has no language {lang!r}; it has: {', '.join(languages)}")
        indices.append(columns.index(column))
    return _ted_rows(path, lines, len(columns), *indices)


def _ted_rows(path: Path, lines: Iterator[str], width: int, i: int, j: int) -> Iterator[Pair]:
    null_rows = 0
    for n, line in enumerate(lines, 2):
        cells = line.split("\t")
        if len(cells) != width:
            raise DataError(f"{path}:{n}: {len(cells)} columns where the header has {width}; the file is corrupt")
        if NULL_PLACEHOLDER.search(cells[i]) or NULL_PLACEHOLDER.search(cells[j]):
            null_rows += 1
            continue
        yield moses_unescape(cells[i]), moses_unescape(cells[j])
    logger.info("%s: %d rows dropped (NULL placeholder in the source or target cell)", path.name, null_rows)


def moses_unescape(text: str) -> str:
    """Undo the Moses tokenizer's escaping of special characters (`&apos;` -> `'`)."""
    return _MOSES_ESCAPE.sub(lambda m: MOSES_ESCAPES[m.group(0)], text)
