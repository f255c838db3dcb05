"""The toy corpus: deterministic, disjoint, varied, and not solvable by copying the source."""

import collections
import re

import pytest
import sacrebleu

from pasero import toy
from pasero.errors import ConfigError

SMALL = {"train": 2000, "valid": 200, "test": 500}


@pytest.fixture(scope="module")
def corpus():
    return toy.generate(seed=7, sizes=SMALL)


def test_same_seed_same_corpus_other_seed_other_corpus(corpus):
    assert toy.generate(seed=7, sizes=SMALL) == corpus
    other = toy.generate(seed=8, sizes=SMALL)
    assert other["test"] != corpus["test"]
    # The test set does not depend on the training-set size.
    assert toy.generate(seed=7, sizes={"train": 10, "valid": 200, "test": 500})["test"] == corpus["test"]


def test_sizes_and_disjoint_splits(corpus):
    assert {split: len(pairs) for split, pairs in corpus.items()} == SMALL
    for side in (0, 1):
        seen = collections.Counter(pair[side] for pairs in corpus.values() for pair in pairs)
        assert max(seen.values()) == 1  # no sentence twice, within or across splits


def test_copying_the_source_scores_under_10_bleu(corpus):
    sources = [de for de, _ in corpus["test"]]
    references = [en for _, en in corpus["test"]]
    assert sacrebleu.corpus_bleu(sources, [references]).score < 10


def test_shape_casing_punctuation(corpus):
    pairs = [pair for pairs in corpus.values() for pair in pairs]
    for de, en in pairs:
        assert toy.MIN_WORDS <= len(de.split()) <= toy.MAX_WORDS
        assert de[0].isupper() and en[0].isupper()
        assert de[-1] == en[-1] and de[-1] in ".?!"
    questions = sum(de.endswith("?") for de, _ in pairs) / len(pairs)
    assert 0.05 < questions < 0.4
    # German-like subclauses get a comma; English-like ones after the main clause do not.
    weil = [(de, en) for de, en in pairs if ", weil " in de]
    assert weil and all(" because " in en and ", because" not in en for _, en in weil)


def test_vocabulary_needs_subwords():
    train = toy.generate(seed=1, sizes={"train": 6000, "valid": 10, "test": 10})["train"]
    forms = {w.strip(",.?!") for de, _ in train for w in de.split()}
    assert len(forms) > 2000
    # Inflection: many German stems appear with several endings.
    stems = collections.Counter(re.sub(r"(en|er|es|e|st|t|te|ten|test|tet)$", "", w) for w in forms)
    assert sum(n >= 3 for n in stems.values()) > 200


def test_reordering_and_agreement():
    lex = toy.lexicon()
    noun = next(w for w in lex.nouns if w.gender == "m")
    adjective, verb = lex.adjectives[0], lex.verbs["tr"][0]
    dog = toy.NP("noun", word=noun, definite=False, adjectives=[adjective])
    dogs = toy.NP("noun", word=noun, plural=True, definite=True)
    Noun = noun.de.capitalize()
    # Article and adjective endings agree with gender, number and case; English does not inflect.
    assert toy._de_np(dog, toy.NOM) == ["ein", adjective.de + "er", Noun]
    assert toy._de_np(dog, toy.ACC) == ["einen", adjective.de + "en", Noun]
    assert toy._en_np(dog, toy.NOM) == toy._en_np(dog, toy.ACC)
    clause = toy.Clause(dogs, verb, [dog], tense="perf")
    de_main, de_sub = toy._de_clause(clause, "main"), toy._de_clause(clause, "sub")
    en = toy._en_clause(clause)
    # Main clause: auxiliary second, participle last; subclause: auxiliary last. English: SVO.
    assert de_main[2] == "haben" and de_main[-1].startswith("ge") and de_sub[-1] == "haben"
    assert en[2:4] == ["have", toy._en_suffix(verb.en, "ed")]
    singular = toy.Clause(toy.NP("pron", pron=2), verb, [dog], tense="pres", negated=True)
    assert toy._en_clause(singular)[:3] == ["he", "does", "not"]
    assert "nicht" in toy._de_clause(singular, "sub")


def test_bad_sizes():
    with pytest.raises(ConfigError):
        toy.generate(sizes={"train": -1})
    with pytest.raises(ConfigError):
        toy.generate(sizes={"dev": 10})


def test_a_third_language_renders_the_same_sentences_without_changing_the_other_two(corpus):
    """xx: the same sentences as German-like and English-like, with words of its own, verbs before
    their objects also in subclauses, a negation before the verb; any two languages make a pair."""
    de_xx = toy.generate_pairs("de", "xx", seed=7, sizes=SMALL)
    en_xx = toy.generate_pairs("en", "xx", seed=7, sizes=SMALL)
    assert [de for de, _ in de_xx["test"]] == [de for de, _ in corpus["test"]]  # German-English unchanged
    assert [xx for _, xx in de_xx["test"]] == [xx for _, xx in en_xx["test"]]
    assert toy.generate_pairs("xx", "de", seed=7, sizes=SMALL)["test"] == [(b, a) for a, b in de_xx["test"]]
    xx_words = collections.Counter(w for _, xx in de_xx["train"] for w in xx.lower().split())
    de_words = collections.Counter(w for de, _ in de_xx["train"] for w in de.lower().split())
    shared = sum(n for w, n in xx_words.items() if w in de_words) / sum(xx_words.values())
    assert shared < 0.2  # its own vocabulary (names and a few short words are shared)
    pairs = list(zip(corpus["test"], de_xx["test"], strict=True))
    negated = [xx for (de, _), (_, xx) in pairs if " nicht " in f" {de} " and "," not in de]
    assert negated and all(" no " in f" {xx.lower()} " for xx in negated)
    questions = [(de, xx) for (de, _), (_, xx) in pairs if de.endswith("?")]
    assert questions and all(xx.endswith("?") for _, xx in questions)
    copy = sacrebleu.corpus_bleu([de for de, _ in de_xx["test"]], [[xx for _, xx in de_xx["test"]]]).score
    assert copy < 10
    with pytest.raises(ConfigError, match="has no de-fr; its languages are de, en, xx"):
        toy.generate_pairs("de", "fr")
