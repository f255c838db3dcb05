"""Token <-> id mapping, in fairseq's `dict.txt` format so dictionaries are interchangeable.

A dict.txt has one `token count` line per symbol, optionally followed by the flag
`#fairseq:overwrite` (a token listed twice on purpose gets a new id). The four special
symbols are not in the file: loading prepends `<s> <pad> </s> <unk>` (ids 0-3), exactly as
fairseq does, so a fairseq dict.txt gives the same ids here and there. A file that already
starts with the four specials (in that order) is taken as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pasero.errors import DataError
from pasero.files import atomic_output, read_lines

BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
SPECIALS = (BOS, PAD, EOS, UNK)
OVERWRITE_FLAG = "#fairseq:overwrite"


class Dictionary:
    bos_idx = 0
    pad_idx = 1
    eos_idx = 2
    unk_idx = 3

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.counts: list[int] = []
        self._indices: dict[str, int] = {}
        for symbol in SPECIALS:
            self._add(symbol, 0)

    def _add(self, symbol: str, count: int) -> int:
        """Append a symbol; a repeated symbol gets a new id that `index` then returns (fairseq)."""
        self._indices[symbol] = len(self.symbols)
        self.symbols.append(symbol)
        self.counts.append(count)
        return len(self.symbols) - 1

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_symbols(cls, symbols: Sequence[str], counts: Sequence[int] | None = None) -> Dictionary:
        """Build from a symbol list (e.g. a checkpoint's); specials prepended unless present."""
        d = cls()
        symbols = list(symbols)
        counts = list(counts) if counts is not None else [0] * len(symbols)
        start = len(SPECIALS) if tuple(symbols[:len(SPECIALS)]) == SPECIALS else 0
        d.counts[:start] = counts[:start]
        for symbol, count in zip(symbols[start:], counts[start:], strict=True):
            d._add(symbol, int(count))
        return d

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        min_count: int = 0,
        pad_to_multiple: int = 8,
        keep: Iterable[str] = (),
    ) -> Dictionary:
        """A fairseq-style dictionary: most frequent first (ties alphabetical), tokens seen
        fewer than `min_count` times dropped (except those in `keep`), padded with
        `madeupwordNNNN` to a multiple of `pad_to_multiple` entries (GPU-friendly sizes).
        """
        keep = set(keep)
        d = cls()
        for symbol, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            if symbol not in SPECIALS and (count >= min_count or symbol in keep):
                d._add(symbol, count)
        for symbol in sorted(keep - set(d._indices)):
            d._add(symbol, 0)
        d.pad_to_multiple(pad_to_multiple)
        return d

    def pad_to_multiple(self, multiple: int) -> None:
        i = 0
        while multiple > 1 and len(self) % multiple:
            self._add(f"madeupword{i:04d}", 0)
            i += 1

    @classmethod
    def load(cls, path: str | os.PathLike) -> Dictionary:
        d = cls()
        lines = list(enumerate(read_lines(path), 1))
        head = [line.rsplit(" ", 1)[0] for _, line in lines[:len(SPECIALS)]]
        if tuple(head) == SPECIALS:  # a file that lists the specials itself
            d.counts[:len(SPECIALS)] = [_parse(path, n, line)[2] for n, line in lines[:len(SPECIALS)]]
            lines = lines[len(SPECIALS):]
        for lineno, line in lines:
            if not line.strip():
                continue
            symbol, overwrite, count = _parse(path, lineno, line)
            if symbol in d._indices and not overwrite:
                raise DataError(
                    f"{path}:{lineno}: duplicate token {symbol!r}; remove the line or add "
                    f"'{OVERWRITE_FLAG}' at its end to give it a new id"
                )
            d._add(symbol, count)
        return d

    def save(self, path: str | os.PathLike) -> None:
        """Write fairseq's format: no specials, repeated tokens flagged for overwrite."""
        seen = set(SPECIALS)
        with atomic_output(path) as f:
            for symbol, count in zip(self.symbols[len(SPECIALS):], self.counts[len(SPECIALS):], strict=True):
                flag = f" {OVERWRITE_FLAG}" if symbol in seen else ""
                seen.add(symbol)
                f.write(f"{symbol} {count}{flag}\n")

    # -- lookup ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, i: int) -> str:
        return self.symbols[i] if 0 <= i < len(self.symbols) else UNK

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._indices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.symbols == other.symbols

    @property
    def indices(self) -> Mapping[str, int]:
        """Symbol -> id (read-only view, for fast bulk lookups)."""
        return self._indices

    def index(self, symbol: str) -> int:
        return self._indices.get(symbol, self.unk_idx)

    def encode(self, pieces: str | Sequence[str], append_eos: bool = True) -> np.ndarray:
        """Pieces (a space-separated string or a list) -> int64 ids, unknown -> <unk>."""
        if isinstance(pieces, str):
            pieces = pieces.split()
        get, unk = self._indices.get, self.unk_idx
        ids = [get(p, unk) for p in pieces]
        if append_eos:
            ids.append(self.eos_idx)
        return np.array(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Ids -> space-joined pieces, up to the first </s>; <s> and <pad> skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_idx:
                break
            if skip_special and i in (self.bos_idx, self.pad_idx):
                continue
            out.append(self[i])
        return " ".join(out)


def _parse(path: str | os.PathLike, lineno: int, line: str) -> tuple[str, bool, int]:
    """`token count [#fairseq:overwrite]` -> (token, overwrite, count)."""
    parts = line.rstrip().rsplit(" ", 1)
    overwrite = len(parts) == 2 and parts[1] == OVERWRITE_FLAG
    if overwrite:
        parts = parts[0].rsplit(" ", 1)
    if len(parts) != 2 or not parts[0]:
        raise DataError(f"{path}:{lineno}: expected '<token> <count>', got {line!r}")
    try:
        return parts[0], overwrite, int(parts[1])
    except ValueError:
        raise DataError(f"{path}:{lineno}: count {parts[1]!r} is not an integer") from None
