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
import sys
from collections.abc import Iterable

import numpy as np

TITLE = "<T>"
UPPER = "<U>"
MARKERS = (TITLE, UPPER)
_UPPER_KIND, _LOWER_KIND = 1, 2


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
    letter is folded only when its lower-case form is one of them. Tokenization works on
    whole batches of lines at once (joined into one string), with regexes and numpy.
    """

    def __init__(self, vocab_chars: Iterable[str]):
        self.fold: dict[int, str] = {}
        for lower in vocab_chars:
            upper = lower.upper()
            if len(lower) == 1 and upper != lower and len(upper) == 1 and upper.lower() == lower:
                self.fold[ord(upper)] = lower
        self.unfold: dict[int, str] = {ord(v): chr(k) for k, v in self.fold.items()}
        # Character kinds by code point: 1 foldable upper case, 2 its lower case, 0 other.
        self._kinds = np.zeros(sys.maxunicode + 1, dtype=np.uint8)
        self._kinds[list(self.fold)] = _UPPER_KIND
        self._kinds[list(self.unfold)] = _LOWER_KIND
        # str.lower() is much faster than translate() and agrees with `fold` on text without
        # these: letters it lower-cases but `fold` keeps, and Σ (lowered by context, σ or ς).
        self._unsafe = np.zeros(sys.maxunicode + 1, dtype=bool)
        self._unsafe[[ord(c) for c in _lowercasable() if ord(c) not in self.fold] + [0x3A3]] = True

        self._lower_re = re.compile(_char_class(self.fold.values()) if self.fold else "(?!)")
        upper_chars = [chr(k) for k in self.fold] or ["\uffff"]  # a class must not be empty
        U, not_U = _char_class(upper_chars), _char_class(upper_chars, negate=True, extra=" ")
        self._segment_re = re.compile(f"{U}?{not_U}+|{U}+")  # Title/lower-case runs, capital runs

    # -- tokenization side ---------------------------------------------------------------

    def fold_text(self, text: str) -> tuple[str, np.ndarray | None, list[int]]:
        """Lower-case a (batch) text -> (lowered text, character kinds, cut points).

        Kinds are None when there is nothing to fold. Cut points are where mixed-case words
        must be cut so that no piece mixes cases.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        kinds = self._kinds[codes]
        if not (kinds == _UPPER_KIND).any():
            return text, None, []
        low = text.translate(self.fold) if self._unsafe[codes].any() else text.lower()
        return low, kinds, self._cut_points(text, codes, kinds)

    def _cut_points(self, text: str, codes: np.ndarray, kinds: np.ndarray) -> list[int]:
        """A word needs cutting when, among its cased letters, a lower-case one precedes an
        upper-case one ("iPhone") or two upper-case ones precede a lower-case one ("ABCs")."""
        cased = np.flatnonzero(kinds)
        kind = kinds[cased]
        word = np.cumsum(codes == 32)[cased]  # lines are normalized: words split at " "
        same = word[1:] == word[:-1]
        lower_upper = same & (kind[:-1] == _LOWER_KIND) & (kind[1:] == _UPPER_KIND)
        upper_upper_lower = (same[:-1] & same[1:] & (kind[:-2] == _UPPER_KIND)
                             & (kind[1:-1] == _UPPER_KIND) & (kind[2:] == _LOWER_KIND))
        hits = np.union1d(cased[1:][lower_upper], cased[2:][upper_upper_lower])
        points: list[int] = []
        word_end = -1
        for hit in hits.tolist():  # rare: mixed-case words are cut with a regex
            if hit < word_end:
                continue
            word_start = text.rfind(" ", 0, hit) + 1
            word_end = text.find(" ", hit)
            word_end = len(text) if word_end < 0 else word_end
            segments = self._segment_re.finditer(text, word_start, word_end)
            points.extend(m.start() for i, m in enumerate(segments) if i > 0)
        return points

    def markers(self, kinds: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which pieces get a marker, and whether it is `<U>` (else `<T>`).

        `kinds` are those of the original (cased) text and `ends` the offsets where each
        piece ends in it. Pieces never mix cases (see `_cut_points`), so counting suffices:
        two capitals make an upper-case piece; one capital followed by lower-case letters
        makes a Title-case piece; a piece whose only cased letter is a capital gets `<U>`
        when it touches another capital (inside "HELLO"), `<T>` otherwise ("A", "I").
        """
        uppers = np.flatnonzero(kinds == _UPPER_KIND)
        pieces = np.searchsorted(ends, uppers, side="right")
        first = np.ones(len(pieces), dtype=bool)
        first[1:] = pieces[1:] != pieces[:-1]
        starts = np.flatnonzero(first)
        marked, pos = pieces[starts], uppers[starts]  # each marked piece and its first capital
        n_upper = np.diff(np.append(starts, len(pieces)))
        lower_count = np.cumsum(kinds == _LOWER_KIND)
        lower_after = lower_count[ends[marked] - 1] > lower_count[pos]
        padded = np.concatenate([[0], kinds, [0]])  # kinds[pos ± 1] without bound checks
        touching = (padded[pos] == _UPPER_KIND) | (padded[pos + 2] == _UPPER_KIND)
        return marked, (n_upper > 1) | (~lower_after & touching)

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
