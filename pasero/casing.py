"""Inline casing: subwords are lower-cased and followed by a `<T>` or `<U>` case marker.

As in Pasero, the vocabulary holds lower-case subwords only ("Hello", "hello" and "HELLO"
share their pieces), and casing travels as separate tokens:

    "Hello WORLD" -> "▁hello <T> ▁wor <U> ld <U>"

`<T>` follows a piece whose first cased letter is upper case (Title), `<U>` a piece whose
cased letters are all upper case within an upper-case word of two or more cased letters.
Detokenization applies the marker to the piece before it.

Casing must round-trip exactly, so only letters whose lower case maps back to them are
folded (`A`<->`a`, but not `İ`, the Kelvin sign or `ǅ`, which stay as they are), and only
letters whose lower-case form is in the subword vocabulary: an unknown letter is spelled
out in bytes, and bytes carry no marker. A mixed-case word ("iPhone", "McDonald") is cut
into case-consistent segments ("i|Phone", "Mc|Donald") that are segmented separately, so
that no piece ever mixes cases.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

TITLE = "<T>"
UPPER = "<U>"
MARKERS = (TITLE, UPPER)


class _FullFold(dict):
    """Lazy `str.translate` table of every reversible upper->lower mapping (used for training)."""

    def __missing__(self, code: int) -> str | int:
        upper = chr(code)
        lower = upper.lower()
        value: str | int = code
        if lower != upper and len(lower) == 1 and lower.upper() == upper:
            value = lower
        self[code] = value
        return value


FULL_FOLD = _FullFold()
CASED_LIMIT = 0x20000  # no code point above this changes under str.lower()


@functools.lru_cache(maxsize=1)
def _lowercasable() -> frozenset[str]:
    return frozenset(c for c in map(chr, range(CASED_LIMIT)) if c.lower() != c)


def fold_for_training(text: str) -> str:
    """Lower-case text the way the tokenizer will see it, before any vocabulary exists."""
    return text.lower() if text.isascii() else text.translate(FULL_FOLD)


def _char_class(chars: Iterable[str], negate: bool = False, extra: str = "") -> str:
    """A regex character class for a (large) set of characters, written as ranges."""
    codes = sorted({ord(c) for c in chars})
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    body = "".join(
        f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges
    )
    return f"[{'^' if negate else ''}{extra}{body}]"


class InlineCase:
    """Case folding, segmentation and restoration for one subword vocabulary.

    `vocab_chars` are the characters that the vocabulary has as single pieces: an upper-case
    letter is folded only when its lower-case form is one of them.
    """

    def __init__(self, vocab_chars: Iterable[str]):
        self.fold: dict[int, str] = {}
        for lower in vocab_chars:
            upper = lower.upper()
            if len(lower) == 1 and upper != lower and len(upper) == 1 and upper.lower() == lower:
                self.fold[ord(upper)] = lower
        self.unfold: dict[int, str] = {ord(v): chr(k) for k, v in self.fold.items()}
        self.ascii_fold = all(ord(c) in self.fold for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

        upper_chars = [chr(k) for k in self.fold] or ["\uffff"]  # a class must not be empty
        lower_chars = list(self.fold.values()) or ["\uffff"]
        U = _char_class(upper_chars)
        L = _char_class(lower_chars)
        N = _char_class(upper_chars + lower_chars, negate=True, extra=" ")  # uncased, not space
        NU = _char_class(upper_chars, negate=True, extra=" ")
        self._upper_re = re.compile(U)
        self._lower_re = re.compile(L)
        # A word needs cutting when a lower-case letter precedes an upper-case one ("iPhone")
        # or when two upper-case letters precede a lower-case one ("ABCs").
        self._mixed_re = re.compile(f"{L}{N}*{U}|{U}{N}*{U}[^ ]*?{L}")
        self._segment_re = re.compile(f"{U}?{NU}+|{U}+")
        # str.lower() is much faster than translate() and agrees with `fold` on lines without
        # these: letters it lower-cases but `fold` keeps, and Σ (lowered by context, σ or ς).
        unsafe = (_lowercasable() - {chr(k) for k in self.fold}) | {"\u03a3"}
        self._unsafe_re = re.compile(_char_class(unsafe))

    # -- tokenization side ---------------------------------------------------------------

    def has_upper(self, text: str) -> bool:
        return self._upper_re.search(text) is not None

    def lower(self, text: str) -> str:
        """Fold every foldable letter; the result has the same length as `text`."""
        if text.isascii() and self.ascii_fold or not self._unsafe_re.search(text):
            return text.lower()
        return text.translate(self.fold)

    def split_points(self, text: str) -> list[int]:
        """Positions where mixed-case words must be cut so that no piece mixes cases."""
        points: list[int] = []
        word_end = -1
        for match in self._mixed_re.finditer(text):
            if match.start() < word_end:
                continue
            word_start = text.rfind(" ", 0, match.start()) + 1
            word_end = text.find(" ", match.end())
            word_end = len(text) if word_end < 0 else word_end
            segments = self._segment_re.finditer(text, word_start, word_end)
            points.extend(m.start() for i, m in enumerate(segments) if i > 0)
        return points

    def upper_positions(self, text: str) -> list[int]:
        return [m.start() for m in self._upper_re.finditer(text)]

    def piece_marker(self, lowered: str, start: int, end: int, uppers: list[int], text: str) -> str:
        """The marker of the piece `text[start:end]`, whose upper-case letters are at `uppers`.

        Pieces never mix cases (see `split_points`), so counting suffices: two capitals make
        an upper-case piece; one capital is Title case, unless it is the piece's only cased
        letter: then the neighbours decide, `<U>` inside "HELLO", `<T>` for "A" or "I".
        """
        if len(uppers) > 1:
            return UPPER
        pos = uppers[0]
        if self._lower_re.search(lowered, pos + 1, end):
            return TITLE
        touching = (pos > 0 and ord(text[pos - 1]) in self.fold) or (
            pos + 1 < len(text) and ord(text[pos + 1]) in self.fold
        )
        return UPPER if touching else TITLE

    # -- detokenization side ---------------------------------------------------------------

    def title(self, piece: str) -> str:
        """Upper-case the first cased letter of a piece."""
        match = self._lower_re.search(piece)
        if match is None:
            return piece
        i = match.start()
        return piece[:i] + self.unfold[ord(piece[i])] + piece[i + 1:]

    def upper(self, piece: str) -> str:
        return piece.translate(self.unfold)

    def restore(self, piece: str, marker: str) -> str:
        return self.title(piece) if marker == TITLE else self.upper(piece)
