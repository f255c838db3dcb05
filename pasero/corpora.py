"""Corpus preparation: from a source (archive, user files, toy generator) to clean parallel text.

Every source yields raw sentence pairs per split; `write_splits` cleans them the same way
(whitespace normalized; pairs with an empty or NULL side dropped pairwise, and counted)
and writes `{split}.{src}` / `{split}.{tgt}` atomically and line-aligned.

Sources:
- ted_talks: the multi-aligned TED talks of Qi et al. (2018): `all_talks_{train,dev,test}.tsv`,
  a header row of language codes (and `talk_name`), `__NULL__`-style cells for missing
  translations and Moses-escaped text (`&apos;`, `&quot;`...), which is unescaped here.
- iwslt14: fairseq's prepare-iwslt14.sh split of the IWSLT'14 archive: valid = every 23rd
  training pair, test = dev2010, TEDX.dev2012 and tst2010-2012 concatenated (in that order).
- iwslt17: the WIT3 2017-01 archives: train from the training archive, valid = its
  dev2010 and tst20xx sets, test = tst2017 from the separate test archives when given
  (else the latest tst set of the training archive).
- local: the user's plain-text files, `--files SPLIT=PATTERN` with `{lang}` in the pattern.
- synthetic: the generated toy corpus (pasero.toy).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator
from xml.sax.saxutils import unescape as xml_unescape

from pasero.download import Checksum, fetch
from pasero.errors import ConfigError, DataError
from pasero.files import atomic_output, count_lines, read_lines

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
Pair = tuple[str, str]
Splits = dict[str, Iterable[Pair]]

NULL_CELL = re.compile(r"[_\s]*NULL[_\s]*")
MOSES_ESCAPES = {"&amp;": "&", "&#124;": "|", "&lt;": "<", "&gt;": ">", "&apos;": "'", "&quot;": '"',
                 "&#91;": "[", "&#93;": "]"}
_MOSES_ESCAPE = re.compile("|".join(map(re.escape, MOSES_ESCAPES)))
_TAG_TEXT = re.compile(r"\s*<(title|description)>(.*)</\1>\s*")
_SEGMENT = re.compile(r"<seg[^>]*>(.*?)</seg>")
_TRAIN_TAGS = re.compile(r"train\.tags\.([A-Za-z_]+)-([A-Za-z_]+)\.([A-Za-z_]+)")
_XML_SET = re.compile(r"IWSLT\d+\.(TEDX?\.(?:dev|tst)\d+)\.([A-Za-z_]+)-([A-Za-z_]+)\.([A-Za-z_]+)\.xml")
IWSLT14_TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
IWSLT14_VALID_EVERY = 23
IWSLT17_TEST_SET = "TED.tst2017"


@dataclass
class CorpusOptions:
    """What a source needs besides the language pair; unset options are None or empty."""

    raw_dir: Path | None = None
    downloads: list[tuple[str, Checksum | None]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    sizes: dict[str, int] | None = None
    download_options: dict = field(default_factory=dict)  # retries, backoff, timeout


# --- cleaning and writing -------------------------------------------------------------------

def normalize(text: str) -> str:
    """Collapse any run of Unicode whitespace (tabs, NBSP, line separators) into one space."""
    return " ".join(text.split())


def clean_pair(src: str, tgt: str) -> Pair | None:
    """The normalized pair, or None if a side is empty or a NULL placeholder."""
    src, tgt = normalize(src), normalize(tgt)
    if not src or not tgt or NULL_CELL.fullmatch(src) or NULL_CELL.fullmatch(tgt):
        return None
    return src, tgt


def write_splits(splits: Splits, src: str, tgt: str, output_dir: Path) -> dict[str, int]:
    """Clean and write every split; nothing appears under the final names unless all succeed."""
    counts = {}
    with contextlib.ExitStack() as stack:
        for split in SPLITS:
            f_src = stack.enter_context(atomic_output(Path(output_dir) / f"{split}.{src}"))
            f_tgt = stack.enter_context(atomic_output(Path(output_dir) / f"{split}.{tgt}"))
            kept = dropped = 0
            for pair in splits[split]:
                cleaned = clean_pair(*pair)
                if cleaned is None:
                    dropped += 1
                    continue
                f_src.write(cleaned[0] + "\n")
                f_tgt.write(cleaned[1] + "\n")
                kept += 1
            if not kept:
                raise DataError(f"{split} split of {src}-{tgt}: no sentence pair left after cleaning ({dropped} dropped)")
            logger.info("%s: %d sentence pairs written, %d dropped (empty or NULL side)", split, kept, dropped)
            counts[split] = kept
    return counts


def parallel(src_lines: Iterable[str], tgt_lines: Iterable[str], src_name: object, tgt_name: object) -> Iterator[Pair]:
    """Zip two line streams, failing if one ends before the other."""
    end = object()
    for n, (a, b) in enumerate(itertools.zip_longest(src_lines, tgt_lines, fillvalue=end), 1):
        if a is end or b is end:
            short, long_ = (src_name, tgt_name) if a is end else (tgt_name, src_name)
            raise DataError(f"{short} has fewer lines ({n - 1}) than {long_}; parallel files must be line-aligned")
        yield a, b


# --- sources ---------------------------------------------------------------------------------

def _fetch_all(options: CorpusOptions) -> list[Path]:
    return [fetch(url, options.raw_dir, checksum, **options.download_options) for url, checksum in options.downloads]


def _find(roots: list[Path], name: str, what: str) -> Path:
    for root in roots:
        if root.is_file() and root.name == name:
            return root
        found = sorted(root.rglob(name)) if root.is_dir() else []
        if found:
            return found[0]
    raise DataError(f"no {name} in {', '.join(map(str, roots))}; is the URL in the config {what}?")


def ted_talks(options: CorpusOptions, src: str, tgt: str) -> Splits:
    roots = _fetch_all(options)
    names = {"train": "train", "valid": "dev", "test": "test"}
    return {split: _ted_split(_find(roots, f"all_talks_{name}.tsv", "the TED talks archive"), src, tgt)
            for split, name in names.items()}


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
    for n, line in enumerate(lines, 2):
        cells = line.split("\t")
        if len(cells) != width:
            raise DataError(f"{path}:{n}: {len(cells)} columns where the header has {width}; the file is corrupt")
        yield moses_unescape(cells[i]), moses_unescape(cells[j])


def moses_unescape(text: str) -> str:
    """Undo the Moses tokenizer's escaping of special characters (`&apos;` -> `'`)."""
    return _MOSES_ESCAPE.sub(lambda m: MOSES_ESCAPES[m.group(0)], text)


@dataclass
class _IwsltFiles:
    """The tag and XML files found in IWSLT archives, by (direction, language) and set."""

    train: dict[tuple[str, str], tuple[int, Path]] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], tuple[int, Path]] = field(default_factory=dict)

    @classmethod
    def scan(cls, roots: list[Path]) -> _IwsltFiles:
        files = cls()
        for k, root in enumerate(roots):
            for path in sorted(root.rglob("*")) if root.is_dir() else []:
                if m := _TRAIN_TAGS.fullmatch(path.name):
                    files.train.setdefault((f"{m[1]}-{m[2]}", m[3]), (k, path))
                elif m := _XML_SET.fullmatch(path.name):
                    files.sets.setdefault((m[1], f"{m[2]}-{m[3]}", m[4]), (k, path))
        return files

    def pick(self, table: dict, key: tuple, src: str, tgt: str, lang: str) -> tuple[int, Path] | None:
        """The file for `lang`, from the src-tgt direction if there is one, else tgt-src."""
        for direction in (f"{src}-{tgt}", f"{tgt}-{src}"):
            if (*key, direction, lang) in table:
                return table[(*key, direction, lang)]
        return None

    def train_files(self, src: str, tgt: str, corpus: str) -> tuple[int, Path, Path]:
        found = [self.pick(self.train, (), src, tgt, lang) for lang in (src, tgt)]
        if None in found:
            languages = sorted({lang for _, lang in self.train})
            pairs = sorted({direction for direction, _ in self.train})
            raise DataError(
                f"the {corpus} archive has no training data for {src}-{tgt}; it has languages: "
                f"{', '.join(languages) or 'none'} (pairs: {', '.join(pairs) or 'none'}); check the pair or the URLs"
            )
        return found[0][0], found[0][1], found[1][1]

    def set_names(self, src: str, tgt: str, root: int | None = None) -> list[str]:
        """Dev/test sets available in both languages (from one archive if `root` is given)."""
        names = []
        for name in sorted({key[0] for key in self.sets}, key=_set_order):
            found = [self.pick(self.sets, (name,), src, tgt, lang) for lang in (src, tgt)]
            if None not in found and (root is None or all(k == root for k, _ in found)):
                names.append(name)
        return names

    def set_pairs(self, names: Iterable[str], src: str, tgt: str) -> Iterator[Pair]:
        for name in names:
            found = [self.pick(self.sets, (name,), src, tgt, lang) for lang in (src, tgt)]
            if None in found:
                raise DataError(f"no IWSLT {name} set for {src}-{tgt} in the archives; check the URLs in the config")
            (_, src_path), (_, tgt_path) = found
            yield from parallel(xml_segments(src_path), xml_segments(tgt_path), src_path, tgt_path)


def _set_order(name: str) -> tuple[int, int, str]:
    year = int(re.sub(r"\D", "", name) or 0)
    return (0 if ".dev" in name else 1, year, name)


def tag_lines(path: Path) -> Iterator[str]:
    """Text lines of a `train.tags` file: tag lines (`<url>`, `<talkid>`...) are metadata,
    except `<title>` and `<description>`, whose text is kept as fairseq's scripts do."""
    for line in read_lines(path):
        if line.lstrip().startswith("<"):
            if m := _TAG_TEXT.fullmatch(line):
                yield m[2]
            continue
        yield line


def xml_segments(path: Path) -> Iterator[str]:
    """The text of every `<seg id="...">...</seg>` of an IWSLT XML file."""
    for line in read_lines(path):
        if m := _SEGMENT.search(line):
            yield xml_unescape(m[1], {"&quot;": '"', "&apos;": "'"})


def _iwslt_train(path_src: Path, path_tgt: Path) -> Iterator[Pair]:
    """Training pairs, already cleaned, so that "every 23rd pair" counts the pairs kept."""
    for pair in parallel(tag_lines(path_src), tag_lines(path_tgt), path_src, path_tgt):
        if (cleaned := clean_pair(*pair)) is not None:
            yield cleaned


def iwslt14(options: CorpusOptions, src: str, tgt: str) -> Splits:
    files = _IwsltFiles.scan(_fetch_all(options))
    _, path_src, path_tgt = files.train_files(src, tgt, "IWSLT'14")
    for name in IWSLT14_TEST_SETS:  # fail before writing anything
        next(iter(files.set_pairs([name], src, tgt)), None)

    def every(keep: Callable[[int], bool]) -> Iterator[Pair]:
        for n, pair in enumerate(_iwslt_train(path_src, path_tgt), 1):
            if keep(n):
                yield pair

    return {
        "train": every(lambda n: n % IWSLT14_VALID_EVERY != 0),
        "valid": every(lambda n: n % IWSLT14_VALID_EVERY == 0),
        "test": files.set_pairs(IWSLT14_TEST_SETS, src, tgt),
    }


def iwslt17(options: CorpusOptions, src: str, tgt: str) -> Splits:
    files = _IwsltFiles.scan(_fetch_all(options))
    root, path_src, path_tgt = files.train_files(src, tgt, "IWSLT'17")
    own_sets = files.set_names(src, tgt, root)
    if IWSLT17_TEST_SET in files.set_names(src, tgt):
        test_set = IWSLT17_TEST_SET
    elif own_tests := [name for name in own_sets if ".tst" in name]:
        test_set = own_tests[-1]
        logger.warning("no %s for %s-%s (add the 2017-01-ted-test archives to the config); testing on %s",
                       IWSLT17_TEST_SET, src, tgt, test_set)
    else:
        raise DataError(f"no IWSLT'17 test set for {src}-{tgt} in the archives; check the URLs in the config")
    valid_sets = [name for name in own_sets if name != test_set]
    if not valid_sets:
        raise DataError(f"no IWSLT'17 dev set for {src}-{tgt} beside {path_src}; check the URLs in the config")
    logger.info("IWSLT'17 %s-%s: valid = %s; test = %s", src, tgt, " + ".join(valid_sets), test_set)
    return {
        "train": parallel(tag_lines(path_src), tag_lines(path_tgt), path_src, path_tgt),
        "valid": files.set_pairs(valid_sets, src, tgt),
        "test": files.set_pairs([test_set], src, tgt),
    }


def local(options: CorpusOptions, src: str, tgt: str) -> Splits:
    missing = [split for split in SPLITS if split not in options.files]
    unknown = [split for split in options.files if split not in SPLITS]
    if missing or unknown:
        raise ConfigError(f"local corpus: give --files for exactly {', '.join(SPLITS)} "
                          f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'})")
    splits = {}
    for split, pattern in options.files.items():
        if "{lang}" not in pattern:
            raise ConfigError(f"local corpus: the {split} pattern {pattern!r} needs a {{lang}} placeholder, e.g. train.{{lang}}")
        path_src, path_tgt = (Path(pattern.replace("{lang}", lang)) for lang in (src, tgt))
        for path in (path_src, path_tgt):
            if not path.is_file():
                raise DataError(f"{path}: no such file (from the {split} pattern {pattern!r})")
        n_src, n_tgt = count_lines(path_src), count_lines(path_tgt)
        if n_src != n_tgt:
            raise DataError(f"{path_src} has {n_src} lines but {path_tgt} has {n_tgt}; "
                            "parallel files must have one sentence per line, aligned")
        splits[split] = parallel(read_lines(path_src), read_lines(path_tgt), path_src, path_tgt)
    return splits


def synthetic(options: CorpusOptions, src: str, tgt: str) -> Splits:
    from pasero import toy

    if {src, tgt} != {"de", "en"}:
        raise DataError(f"the synthetic corpus has no {src}-{tgt}; it has languages: de, en (pairs de-en, en-de)")
    corpus = toy.generate(seed=1 if options.seed is None else options.seed, sizes=options.sizes)
    return {split: pairs if src == "de" else [(b, a) for a, b in pairs] for split, pairs in corpus.items()}


SOURCES: dict[str, Callable[[CorpusOptions, str, str], Splits]] = {
    "ted_talks": ted_talks, "iwslt14": iwslt14, "iwslt17": iwslt17, "local": local, "synthetic": synthetic,
}
DOWNLOADED = ("ted_talks", "iwslt14", "iwslt17")


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


def prepare(source: str, src: str, tgt: str, output_dir: str | Path, options: CorpusOptions) -> dict[str, int]:
    """Write `output_dir/{train,valid,test}.{src,tgt}` for one language pair of a corpus."""
    if source not in SOURCES:
        raise ConfigError(f"unknown corpus source {source!r}; choose one of {', '.join(SOURCES)}")
    if src == tgt:
        raise ConfigError(f"language pair {src}-{tgt}: source and target languages must differ")
    _check_options(source, options)
    splits = SOURCES[source](options, src, tgt)
    return write_splits(splits, src, tgt, Path(output_dir))
