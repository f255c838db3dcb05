"""Which language a translation is in, for the off-target rate of a direction: the share of its
outputs that are not in the target language, the known failure of zero-shot translation.

py3langid (a maintained fork of langid.py) ships its model inside its wheel, so this works offline;
it knows 142 languages. Language codes are compared by their ISO 639-1 part (pt_br -> pt, zh_cn ->
zh). For a language it does not know (the toy's xx, a code of your own), samples of the
experiment's languages (their training text) train a character n-gram classifier among those
languages; without samples such a language gets no rate rather than a wrong one.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SAMPLE_LINES = 5000  # lines of each language's sample that train SampleIdentifier
NGRAM_ORDERS = (1, 2, 3)


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def identifier_code(lang: str) -> str:
    """The identifier's code of one of our language codes (pt_br -> pt, zh_cn -> zh)."""
    return lang.split("_")[0].lower()


def known(lang: str) -> bool:
    return identifier_code(lang) in _identifier().nb_classes


def _ngrams(text: str) -> Iterable[str]:
    for word in text.lower().split():
        padded = f" {word} "
        for n in NGRAM_ORDERS:
            yield from (padded[i:i + n] for i in range(len(padded) - n + 1))


class SampleIdentifier:
    """Multinomial naive Bayes over character 1-3-grams, trained on a sample of each language:
    enough to tell apart the languages of one experiment, whatever they are."""

    def __init__(self, samples: Mapping[str, Sequence[str]]) -> None:
        self.counts = {lang: collections.Counter(g for line in lines for g in _ngrams(line))
                       for lang, lines in samples.items()}
        self.totals = {lang: sum(counts.values()) for lang, counts in self.counts.items()}
        self.vocab = len(set().union(*self.counts.values())) + 1

    def classify(self, text: str) -> str:
        grams = collections.Counter(_ngrams(text))
        return max(self.counts, key=lambda lang: sum(
            k * math.log((self.counts[lang][g] + 1) / (self.totals[lang] + self.vocab)) for g, k in grams.items()))


def off_target_rate(lines: Sequence[str], lang: str,
                    samples: Mapping[str, Sequence[str]] | None = None) -> float | None:
    """Percentage of the non-empty lines identified as another language than `lang`: by py3langid
    when it knows `lang`, else by a SampleIdentifier of `samples` ({lang: lines}, `lang` among them);
    None when neither can tell, or there is nothing to identify."""
    texts = [line for line in lines if line.strip()]
    if not texts:
        return None
    if known(lang):
        code, identifier = identifier_code(lang), _identifier()
        return 100.0 * sum(identifier.classify(text)[0] != code for text in texts) / len(texts)
    if samples and lang in samples and len(samples) > 1:
        identifier = SampleIdentifier(samples)
        return 100.0 * sum(identifier.classify(text) != lang for text in texts) / len(texts)
    return None
