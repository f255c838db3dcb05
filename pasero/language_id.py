"""Which language a translation is in, for the off-target rate of a direction: the share of its
outputs that are not in the target language, the known failure of zero-shot translation.

py3langid (a maintained fork of langid.py) ships its model inside its wheel, so this works offline;
it knows 142 languages. Language codes are compared by their ISO 639-1 part (pt_br -> pt, zh_cn ->
zh); a language it does not know gets no rate rather than a wrong one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def identifier_code(lang: str) -> str:
    """The identifier's code of one of our language codes (pt_br -> pt, zh_cn -> zh)."""
    return lang.split("_")[0].lower()


def known(lang: str) -> bool:
    return identifier_code(lang) in _identifier().nb_classes


def off_target_rate(lines: Sequence[str], lang: str) -> float | None:
    """Percentage of the non-empty lines identified as another language than `lang` (None when
    the identifier does not know `lang`, or there is nothing to identify)."""
    if not known(lang):
        return None
    texts = [line for line in lines if line.strip()]
    if not texts:
        return None
    code, identifier = identifier_code(lang), _identifier()
    return 100.0 * sum(identifier.classify(text)[0] != code for text in texts) / len(texts)
