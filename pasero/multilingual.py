"""Which directions a multilingual experiment trains, validates and decodes (torch-free: the workflow
reads it at start-up)."""

from __future__ import annotations

from collections.abc import Sequence

from pasero.errors import ConfigError

DIRECTION_SETS = ("en-centric", "all")


def expand_directions(langs: Sequence[str], directions: str | Sequence[str], pivot: str = "en",
                      zero_shot: Sequence[str] = ()) -> list[str]:
    """`en-centric`: every language to and from the pivot (Pasero's TED top-20 English-centric
    model); `all`: every ordered pair of different languages (multi-parallel); or a list of src-tgt.
    The zero-shot directions are left out of `en-centric` and `all` (`all` with zero_shot [it-ro,
    ro-it] is the IWSLT'17 zero-shot condition), but not out of a list: a listed direction is trained."""
    langs = list(dict.fromkeys(langs))
    if isinstance(directions, str):
        if directions == "en-centric":
            if pivot not in langs:
                raise ConfigError(f"directions: en-centric needs the pivot language '{pivot}' among langs")
            others = [lang for lang in langs if lang != pivot]
            pairs = [f"{lang}-{pivot}" for lang in others] + [f"{pivot}-{lang}" for lang in others]
        elif directions == "all":
            pairs = [f"{a}-{b}" for a in langs for b in langs if a != b]
        else:
            raise ConfigError(f"directions: '{directions}' must be one of {', '.join(DIRECTION_SETS)} "
                              "or a list of src-tgt")
        return [pair for pair in pairs if pair not in zero_shot]
    pairs = list(dict.fromkeys(directions))
    for pair in pairs:
        check_direction(pair, langs)
    return pairs


def check_direction(pair: str, langs: Sequence[str] | None = None) -> None:
    src, _, tgt = pair.partition("-")
    if not src or not tgt or src == tgt or "-" in tgt:
        raise ConfigError(f"direction '{pair}' must be two different language codes joined by '-', e.g. de-en")
    unknown = [lang for lang in (src, tgt) if langs is not None and lang not in langs]
    if unknown:
        raise ConfigError(f"direction '{pair}': {', '.join(unknown)} not among langs ({', '.join(langs)})")


def zero_shot_directions(pairs: Sequence[str], langs: Sequence[str], trained: Sequence[str]) -> list[str]:
    """Directions decoded and scored but never trained on: checked, and refused if trained."""
    out = []
    for pair in dict.fromkeys(pairs):
        check_direction(pair, langs)
        if pair in trained:
            raise ConfigError(f"zero_shot: '{pair}' is a trained direction; remove it from zero_shot")
        out.append(pair)
    return out
