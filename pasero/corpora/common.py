"""What every corpus source shares: options, the `Corpus` it yields, cleaning and atomic writing.

Sources yield lazily read sentence pairs; nothing is written under a final name until every
split (or the one requested test set) is complete, so an interrupted download never leaves
text that a resumed pipeline would take for finished.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pasero.download import Checksum, fetch
from pasero.errors import DataError
from pasero.files import atomic_output

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
Pair = tuple[str, str]
Splits = dict[str, Iterable[Pair]]
Tagged = Iterable[tuple[str, Pair]]

# The TED corpus's placeholder for a missing translation: `__NULL__`, `_ _ NULL _ _` (tokenized).
# The underscores are required: the bare word NULL is a real word of some sentences.
NULL_PLACEHOLDER = re.compile(r"_\s*_\s*NULL\s*_\s*_")


@dataclass
class CorpusOptions:
    """What a source needs besides the language pair; unset options are None or empty."""

    raw_dir: Path | None = None
    downloads: list[tuple[str, Checksum | None]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    seed: int | None = None
    sizes: dict[str, int] | None = None
    download_options: dict = field(default_factory=dict)  # retries, backoff, timeout


@dataclass
class Corpus:
    """What a source yields for one language pair, read lazily.

    `pairs` streams (split, pair) for train, valid and test, so that a source that derives two
    splits from one expensive stream (IWSLT'14: valid = every 23rd prepared training pair)
    prepares it once. `test_sets` are the further, named test sets (read only on request).
    `final` pairs were prepared by the source's own recipe and are written exactly as they are.
    """

    pairs: Tagged
    test_sets: dict[str, Callable[[], Iterable[Pair]]] = field(default_factory=dict)
    final: bool = False

    @classmethod
    def from_splits(cls, splits: Splits, **kwargs) -> Corpus:
        return cls(((split, pair) for split in SPLITS for pair in splits[split]), **kwargs)


# --- cleaning and writing -------------------------------------------------------------------

def normalize(text: str) -> str:
    """Collapse any run of Unicode whitespace (tabs, NBSP, line separators) into one space."""
    return " ".join(text.split())


def is_null(text: str) -> bool:
    """True for a side that is only NULL placeholders (and spaces)."""
    return not NULL_PLACEHOLDER.sub("", text).strip()


def clean_pair(src: str, tgt: str) -> Pair | None:
    """The normalized pair, or None if a side is empty or a NULL placeholder."""
    src, tgt = normalize(src), normalize(tgt)
    if not src or not tgt or is_null(src) or is_null(tgt):
        return None
    return src, tgt


def write_splits(pairs: Tagged, src: str, tgt: str, output_dir: Path, final: bool = False) -> dict[str, int]:
    """Write `{split}.{src}` / `{split}.{tgt}` for train, valid and test, cleaned unless `final`;
    nothing appears under the final names unless every split succeeds."""
    with contextlib.ExitStack() as stack:
        outputs = {split: tuple(stack.enter_context(atomic_output(Path(output_dir) / f"{split}.{lang}"))
                                for lang in (src, tgt)) for split in SPLITS}
        return _write(pairs, outputs, f"{src}-{tgt}", final)


def write_test_set(pairs: Iterable[Pair], name: str, src: str, tgt: str, output_dir: Path,
                   final: bool = False) -> int:
    """Write one named test set as `{name}.{src}` / `{name}.{tgt}`, atomically."""
    with atomic_output(Path(output_dir) / f"{name}.{src}") as f_src, \
            atomic_output(Path(output_dir) / f"{name}.{tgt}") as f_tgt:
        return _write(((name, pair) for pair in pairs), {name: (f_src, f_tgt)}, f"{src}-{tgt}", final)[name]


def _write(pairs: Tagged, outputs: dict, direction: str, final: bool) -> dict[str, int]:
    kept = dict.fromkeys(outputs, 0)
    dropped = dict.fromkeys(outputs, 0)
    for split, pair in pairs:
        cleaned = pair if final else clean_pair(*pair)
        if cleaned is None:
            dropped[split] += 1
            continue
        f_src, f_tgt = outputs[split]
        f_src.write(cleaned[0] + "\n")
        f_tgt.write(cleaned[1] + "\n")
        kept[split] += 1
    for split in outputs:
        if not kept[split]:
            raise DataError(f"{split} split of {direction}: no sentence pair left after cleaning "
                            f"({dropped[split]} dropped)")
        if final:
            logger.info("%s: %d sentence pairs written (as prepared)", split, kept[split])
        else:
            logger.info("%s: %d sentence pairs written, %d dropped (empty or NULL side)",
                        split, kept[split], dropped[split])
    return kept


def parallel(src_lines: Iterable[str], tgt_lines: Iterable[str], src_name: object, tgt_name: object) -> Iterator[Pair]:
    """Zip two line streams, failing if one ends before the other."""
    end = object()
    for n, (a, b) in enumerate(itertools.zip_longest(src_lines, tgt_lines, fillvalue=end), 1):
        if a is end or b is end:
            short, long_ = (src_name, tgt_name) if a is end else (tgt_name, src_name)
            raise DataError(f"{short} has fewer lines ({n - 1}) than {long_}; parallel files must be line-aligned")
        yield a, b


# --- archives ---------------------------------------------------------------------------------

def fetch_all(options: CorpusOptions) -> list[Path]:
    """Download (or reuse) and extract every archive of the corpus; their extracted roots."""
    return [fetch(url, options.raw_dir, checksum, **options.download_options) for url, checksum in options.downloads]


def find(roots: list[Path], name: str, what: str) -> Path:
    """The first file called `name` under the extracted archives."""
    for root in roots:
        if root.is_file() and root.name == name:
            return root
        found = sorted(root.rglob(name)) if root.is_dir() else []
        if found:
            return found[0]
    raise DataError(f"no {name} in {', '.join(map(str, roots))}; is the URL in the config {what}?")
