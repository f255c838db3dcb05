"""IWSLT archives (WIT3 format): `train.tags.{a}-{b}.{lang}` training files and XML dev/test sets.

- iwslt14: exactly fairseq's examples/translation/prepare-iwslt14.sh, so that results compare
  with the papers that use it. Training text (per language): lines containing `<url>`,
  `<talkid>` or `<keywords>` dropped, the strings `<title>`, `</title>`, `<description>`,
  `</description>` removed, every other line kept (the `<speaker>` lines too, as the script
  does); Moses-tokenized; clean-corpus-n -ratio 1.5, 1-175 tokens; lower-cased; valid = every
  23rd cleaned pair, train = the others. Dev/test: the `<seg id>` lines of each XML file with
  the seg tags removed (not XML-unescaped, as in the script), ’ mapped to ', Moses-tokenized,
  lower-cased; test = TED.dev2010 + TEDX.dev2012 + TED.tst2010-2012. With the real archive the
  script gives 160,239 / 7,283 / 6,750 pairs. Each of the five sets is also a named test set (dev2010, tedx_dev2012,
  tst2010, tst2011, tst2012). The text is final: the generic cleaning does not touch it.
- iwslt17: the WIT3 2017-01 archives, raw text (tag lines dropped, title/description text
  kept, XML unescaped): valid = the dev2010/tst20xx sets of the training archive, test =
  tst2017 from the separate 2017-01-ted-test archives (else the latest tst set of the training
  archive); every other set (tst2016 of the test archives) is a named test set, never valid.
  The same source reads the multilingual task's archives (2017-01-trnmted DeEnItNlRo: the
  train.tags and dev2010/tst2010 files of the 20 directions between de, en, it, nl and ro; and
  2017-01-mted-test, one archive per direction holding only the source side of
  `IWSLT17.TED.tst2017.mltlng.{src}-{tgt}.{src}.xml`): the test set is multi-parallel, so the
  reference of src-tgt is the source side of the tgt-src archive, as the task's own scoring does.

Unlike the script, which filters each language's file on its own and only needs equal totals,
both languages are read talk by talk and must have the same talks in the same order with the
same number of kept lines per talk: a text line taken for a tag on one side only would
otherwise shift every later pair without any error. Likewise the two sides of a dev/test set
must have as many segments. The other difference: Moses' tokenizer.perl is replaced by its
Python port sacremoses (no Perl, no clone of mosesdecoder), which agrees with it on all but
rare corner cases.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import unescape as xml_unescape

from pasero.corpora.common import Corpus, CorpusOptions, Pair, fetch_all, parallel
from pasero.corpora.moses import clean_corpus_n, lowercase, tokenize_pairs
from pasero.errors import DataError
from pasero.files import read_lines

logger = logging.getLogger(__name__)

_TRAIN_TAGS = re.compile(r"train\.tags\.([A-Za-z_]+)-([A-Za-z_]+)\.([A-Za-z_]+)")
_XML_SET = re.compile(
    r"IWSLT\d+\.(TEDX?\.(?:dev|tst)\d+)(?:\.mltlng)?\.([A-Za-z_]+)-([A-Za-z_]+)\.([A-Za-z_]+)\.xml")
_TALK_HEADER = re.compile(r"\s*<(url|talkid)>\s*(.*?)\s*(?:</\1>)?\s*")
_TAG_TEXT = re.compile(r"\s*<(title|description)>(.*)</\1>\s*")
_SEGMENT = re.compile(r"<seg[^>]*>(.*?)</seg>")
_FAIRSEQ_SEG_OPEN = re.compile(r'<seg id="[0-9]*">\s*')
_FAIRSEQ_SEG_CLOSE = re.compile(r"\s*</seg>\s*")
FAIRSEQ_DROPPED_TAGS = ("<url>", "<talkid>", "<keywords>")
FAIRSEQ_REMOVED_TAGS = ("<title>", "</title>", "<description>", "</description>")

IWSLT14_TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
IWSLT14_VALID_EVERY = 23
IWSLT14_CLEAN = {"ratio": 1.5, "min_tokens": 1, "max_tokens": 175}
IWSLT17_TEST_SET = "TED.tst2017"
IWSLT17_TEST_ARCHIVE_SETS = ("TED.tst2016", "TED.tst2017")  # in the 2017-01-ted-test archives: never valid


def set_name(iwslt_name: str) -> str:
    """The name of a further test set: `TED.tst2016` -> `tst2016`, `TEDX.dev2012` -> `tedx_dev2012`."""
    return iwslt_name.replace("TEDX.", "tedx_").removeprefix("TED.").lower()


# --- archive contents -------------------------------------------------------------------------

@dataclass
class IwsltFiles:
    """The tag and XML files found in IWSLT archives, by (direction, language) and set."""

    train: dict[tuple[str, str], tuple[int, Path]] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], tuple[int, Path]] = field(default_factory=dict)

    @classmethod
    def scan(cls, roots: list[Path]) -> IwsltFiles:
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

    def set_paths(self, name: str, src: str, tgt: str) -> tuple[Path, Path]:
        found = [self.pick(self.sets, (name,), src, tgt, lang) for lang in (src, tgt)]
        if None in found:
            raise DataError(f"no IWSLT {name} set for {src}-{tgt} in the archives; check the URLs in the config")
        return found[0][1], found[1][1]


def _set_order(name: str) -> tuple[int, int, str]:
    year = int(re.sub(r"\D", "", name) or 0)
    return (0 if ".dev" in name else 1, year, name)


# --- training files, talk by talk -------------------------------------------------------------

@dataclass
class Talk:
    """One talk of a train.tags file: its ids and the lines that a tag filter kept."""

    url: str | None = None
    talkid: str | None = None
    lines: list[str] = field(default_factory=list)
    has_text: bool = False  # a line that is no tag was seen since the talk's first header line

    @property
    def key(self) -> str:
        return self.talkid or self.url or "(before the first talk)"


def read_talks(path: Path, keep: Callable[[str], str | None]) -> Iterator[Talk]:
    """The talks of a train.tags file, with the lines `keep` keeps (it returns None to drop one).

    A `<url>` or `<talkid>` line starts a new talk once the current one has that id already or
    has text, so a talk's header block (url, keywords, speaker, talkid, ...) stays together
    whichever of the two ids it has and in which order.
    """
    talk = Talk()
    for line in read_lines(path):
        if m := _TALK_HEADER.fullmatch(line):
            if talk.has_text or getattr(talk, m[1]) is not None:
                yield talk
                talk = Talk()
            setattr(talk, m[1], m[2])
        elif line.strip() and not line.lstrip().startswith("<"):
            talk.has_text = True
        if (kept := keep(line)) is not None:
            talk.lines.append(kept)
    if talk.lines or talk.url or talk.talkid:
        yield talk


def aligned_pairs(path_src: Path, path_tgt: Path, keep: Callable[[str], str | None]) -> Iterator[Pair]:
    """The kept lines of two train.tags files as pairs, checked talk by talk."""
    n_talks = n_lines = 0
    for n, (a, b) in enumerate(itertools.zip_longest(read_talks(path_src, keep), read_talks(path_tgt, keep)), 1):
        where = f"{path_src} and {path_tgt}"
        if a is None or b is None:
            longer, talk = (path_src, a) if b is None else (path_tgt, b)
            raise DataError(f"{where}: {longer} has more talks (talk {talk.key} is its number {n}); "
                            "the files are not parallel")
        if a.talkid != b.talkid and a.talkid and b.talkid:  # URLs may name the language: not compared
            raise DataError(f"{where}: talk number {n} is {a.talkid} in the first but {b.talkid} in the second; "
                            "the files are not parallel")
        if len(a.lines) != len(b.lines):
            raise DataError(f"{where}: talk {a.key} has {len(a.lines)} lines in the first but {len(b.lines)} "
                            "in the second (a text line taken for a tag on one side?); fix or remove that talk")
        n_talks, n_lines = n_talks + 1, n_lines + len(a.lines)
        yield from zip(a.lines, b.lines, strict=True)
    logger.info("%s, %s: %d talks, %d lines per side after the tag filter", path_src.name, path_tgt.name,
                n_talks, n_lines)


def fairseq_line(line: str) -> str | None:
    """prepare-iwslt14.sh's filter: grep -v '<url>' / '<talkid>' / '<keywords>' (anywhere in the
    line), then sed removing `<title>`, `</title>`, `<description>`, `</description>`."""
    if any(tag in line for tag in FAIRSEQ_DROPPED_TAGS):
        return None
    for tag in FAIRSEQ_REMOVED_TAGS:
        line = line.replace(tag, "")
    return line


def iwslt17_line(line: str) -> str | None:
    """Tag lines (`<url>`, `<speaker>`...) are metadata, but the text of `<title>` and
    `<description>` is kept, as fairseq's scripts do."""
    if line.lstrip().startswith("<"):
        m = _TAG_TEXT.fullmatch(line)
        return m[2] if m else None
    return line


# --- dev/test sets ----------------------------------------------------------------------------

def xml_segments(path: Path) -> Iterator[str]:
    """The text of every `<seg id="...">...</seg>` of an IWSLT XML file, XML-unescaped."""
    for line in read_lines(path):
        if m := _SEGMENT.search(line):
            yield xml_unescape(m[1], {"&quot;": '"', "&apos;": "'"})


def fairseq_segments(path: Path) -> Iterator[str]:
    """prepare-iwslt14.sh: grep '<seg id', the seg tags and the spaces around them removed by
    sed, ’ -> '; no XML unescaping (`&amp;` stays, and the tokenizer escapes its `&` again)."""
    for line in read_lines(path):
        if "<seg id" in line:
            line = _FAIRSEQ_SEG_CLOSE.sub("", _FAIRSEQ_SEG_OPEN.sub("", line))
            yield line.replace("\u2019", "'")


def xml_set_pairs(files: IwsltFiles, names: Iterable[str], src: str, tgt: str) -> Iterator[Pair]:
    for name in names:
        path_src, path_tgt = files.set_paths(name, src, tgt)
        yield from parallel(xml_segments(path_src), xml_segments(path_tgt), path_src, path_tgt)


def fairseq_set_pairs(files: IwsltFiles, name: str, src: str, tgt: str) -> Iterator[Pair]:
    """One dev/test set as prepare-iwslt14.sh makes it: tokenized and lower-cased."""
    path_src, path_tgt = files.set_paths(name, src, tgt)
    raw = parallel(fairseq_segments(path_src), fairseq_segments(path_tgt), path_src, path_tgt)
    n = 0
    for a, b in tokenize_pairs(raw, src, tgt):
        n += 1
        yield lowercase(a), lowercase(b)
    logger.info("%s: %d segments", name, n)


# --- sources ----------------------------------------------------------------------------------

def fairseq_train_valid(path_src: Path, path_tgt: Path, src: str, tgt: str) -> Iterator[tuple[str, Pair]]:
    """prepare-iwslt14.sh's train and valid from one pass: every 23rd cleaned pair is valid."""
    raw = aligned_pairs(path_src, path_tgt, fairseq_line)
    cleaned = clean_corpus_n(tokenize_pairs(raw, src, tgt), name=f"{path_src.name}, {path_tgt.name}",
                             **IWSLT14_CLEAN)
    for n, (a, b) in enumerate(cleaned, 1):
        yield ("valid" if n % IWSLT14_VALID_EVERY == 0 else "train"), (lowercase(a), lowercase(b))


def iwslt14(options: CorpusOptions, src: str, tgt: str) -> Corpus:
    files = IwsltFiles.scan(fetch_all(options))
    _, path_src, path_tgt = files.train_files(src, tgt, "IWSLT'14")
    for name in IWSLT14_TEST_SETS:  # fail before preparing anything
        files.set_paths(name, src, tgt)
    sets = {name: functools.partial(fairseq_set_pairs, files, name, src, tgt) for name in IWSLT14_TEST_SETS}
    test = (("test", pair) for make in sets.values() for pair in make())
    return Corpus(itertools.chain(fairseq_train_valid(path_src, path_tgt, src, tgt), test),
                  test_sets={set_name(name): make for name, make in sets.items()}, final=True)


def iwslt17(options: CorpusOptions, src: str, tgt: str) -> Corpus:
    files = IwsltFiles.scan(fetch_all(options))
    root, path_src, path_tgt = files.train_files(src, tgt, "IWSLT'17")
    test_set = _iwslt17_test_set(files, src, tgt, root)
    valid_sets = [name for name in files.set_names(src, tgt, root)
                  if name != test_set and name not in IWSLT17_TEST_ARCHIVE_SETS]
    if not valid_sets:
        raise DataError(f"no IWSLT'17 dev set for {src}-{tgt} beside {path_src}; check the URLs in the config")
    further = [name for name in files.set_names(src, tgt) if name != test_set and name not in valid_sets]
    logger.info("IWSLT'17 %s-%s: valid = %s; test = %s; further test sets: %s", src, tgt, " + ".join(valid_sets),
                test_set, ", ".join(map(set_name, further)) or "none")
    return Corpus.from_splits(
        {"train": aligned_pairs(path_src, path_tgt, iwslt17_line),
         "valid": xml_set_pairs(files, valid_sets, src, tgt),
         "test": xml_set_pairs(files, [test_set], src, tgt)},
        test_sets={set_name(name): functools.partial(xml_set_pairs, files, [name], src, tgt) for name in further},
    )


def _iwslt17_test_set(files: IwsltFiles, src: str, tgt: str, root: int) -> str:
    if IWSLT17_TEST_SET in files.set_names(src, tgt):
        return IWSLT17_TEST_SET
    own_tests = [name for name in files.set_names(src, tgt, root) if ".tst" in name]
    if not own_tests:
        raise DataError(f"no IWSLT'17 test set for {src}-{tgt} in the archives; check the URLs in the config")
    logger.warning("no %s for %s-%s (add the 2017-01-ted-test archives to the config); testing on %s",
                   IWSLT17_TEST_SET, src, tgt, own_tests[-1])
    return own_tests[-1]
