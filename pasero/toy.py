"""The toy corpus: small "German-like", "English-like" and "Romance-like" (code xx) languages
generated from a seed, as multi-parallel text (every sentence in all three).

It lets the whole pipeline run on a laptop CPU in minutes while still exercising what
makes translation more than word substitution:
- reordering: German-like subclauses put the finite verb last ("..., weil der Hund die
  Katze gesehen hat" -> "because the dog has seen the cat"), main clauses are verb-second
  after a fronted adverb or clause, perfect participles go to the end, questions invert;
- agreement: articles, adjective endings and relative pronouns agree in gender, number
  and case with their noun, verbs agree with their subject (English does/has/is/-s too);
- a vocabulary of a few thousand word forms built from stems and affixes, plus German
  compounds written as one word, so subword segmentation matters;
- casing (sentence-initial capitals, capitalized German nouns, proper names) and
  punctuation (German commas around subclauses, final `.`, `?` or `!`).
Content-word stems are pseudo-words: each German syllable has one English counterpart,
so the language stays regular enough to be learnt by a tiny model, yet copying the
source scores a few BLEU points at most. The language (lexicon) is fixed; the seed only
chooses the sentences, so every seed gives a different sample of the same language.

The third language (xx) renders the same sentences with its own syllables, SVO order throughout
(no verb-final subclauses), adjectives after the noun agreeing in gender and number, object pronouns
before the verb, a negation before it and perfects with an auxiliary; it is drawn without touching
the random draws of the other two, so the German-English corpus of a seed is what it always was.
"""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import dataclass, field

from pasero.errors import ConfigError

SPLITS = ("train", "valid", "test")
DEFAULT_SIZES = {"train": 30000, "valid": 500, "test": 500}
MIN_WORDS, MAX_WORDS = 5, 25
LEXICON_SEED = 2018

NOM, ACC, DAT = 0, 1, 2
# Person/number agreement slots: 1sg 2sg 3sg 1pl 2pl 3pl.
DE_PRESENT = ("e", "st", "t", "en", "t", "en")
DE_PAST = ("te", "test", "te", "ten", "tet", "ten")
DE_HAVE = ("habe", "hast", "hat", "haben", "habt", "haben")
DE_BE = {"pres": ("bin", "bist", "ist", "sind", "seid", "sind"),
         "past": ("war", "warst", "war", "waren", "wart", "waren")}
XX_PRESENT = ("o", "as", "a", "amos", "ais", "an")
XX_PAST = ("ai", "aste", "o", "amos", "asteis", "aron")
XX_HAVE = ("he", "has", "ha", "hemos", "habeis", "han")
XX_BE = {"pres": ("soy", "eres", "es", "somos", "sois", "son"),
         "past": ("era", "eras", "era", "eramos", "erais", "eran")}
# xx subject and object forms of PRONOUNS, row by row
XX_PRONOUNS = (("yo", "me"), ("tu", "te"), ("el", "lo"), ("ela", "la"), ("elo", "lo"), ("nos", "nos"),
               ("vos", "vos"), ("elos", "los"))
XX_DEFINITE = {"m": "lo", "f": "la", "mp": "los", "fp": "las"}
XX_INDEFINITE = {"m": "un", "f": "una"}
# the xx word of each German function word of the tables below
XX_WORDS = {"mit": "con", "von": "de", "zu": "a", "bei": "cerca", "nach": "tras", "neben": "junto",
            "hinter": "detras", "unter": "bajo", "weil": "porque", "wenn": "si", "obwohl": "aunque",
            "bevor": "antes", "während": "mientras", "nachdem": "despues", "heute": "hoy", "gestern": "ayer",
            "morgen": "manana", "jetzt": "ahora", "dann": "luego", "manchmal": "aveces", "oft": "amenudo",
            "und": "y", "aber": "pero", "oder": "o"}
EN_BE = {"pres": ("am", "are", "is", "are", "are", "are"), "past": ("was", "were", "was", "were", "were", "were")}
# (German nominative, accusative, dative, English subject, object, agreement slot)
PRONOUNS = (
    ("ich", "mich", "mir", "I", "me", 0), ("du", "dich", "dir", "you", "you", 1),
    ("er", "ihn", "ihm", "he", "him", 2), ("sie", "sie", "ihr", "she", "her", 2),
    ("es", "es", "ihm", "it", "it", 2), ("wir", "uns", "uns", "we", "us", 3),
    ("ihr", "euch", "euch", "you", "you", 4), ("sie", "sie", "ihnen", "they", "them", 5),
)
DEFINITE = ({"m": "der", "f": "die", "n": "das", "p": "die"}, {"m": "den", "f": "die", "n": "das", "p": "die"},
            {"m": "dem", "f": "der", "n": "dem", "p": "den"})
INDEFINITE = ({"m": "ein", "f": "eine", "n": "ein"}, {"m": "einen", "f": "eine", "n": "ein"},
              {"m": "einem", "f": "einer", "n": "einem"})
WEAK = ({"m": "e", "f": "e", "n": "e", "p": "en"}, {"m": "en", "f": "e", "n": "e", "p": "en"},
        {"m": "en", "f": "en", "n": "en", "p": "en"})
MIXED = ({"m": "er", "f": "e", "n": "es"}, {"m": "en", "f": "e", "n": "es"}, {"m": "en", "f": "en", "n": "en"})
PLURAL = {"m": "e", "f": "en", "n": "er"}
PREPOSITIONS = (("mit", "with"), ("von", "from"), ("zu", "to"), ("bei", "near"), ("nach", "after"),
                ("neben", "beside"), ("hinter", "behind"), ("unter", "under"))
CONJUNCTIONS = (("weil", "because"), ("wenn", "if"), ("obwohl", "although"), ("bevor", "before"),
                ("während", "while"), ("nachdem", "after"))
TIME_ADVERBS = (("heute", "today"), ("gestern", "yesterday"), ("morgen", "tomorrow"), ("jetzt", "now"),
                ("dann", "then"), ("manchmal", "sometimes"), ("oft", "often"))
COORDINATORS = (("und", "and", ""), ("aber", "but", ","), ("oder", "or", ""))
FUNCTION_WORDS = frozenset(
    w for table in (PRONOUNS, PREPOSITIONS, CONJUNCTIONS, TIME_ADVERBS, COORDINATORS) for row in table
    for w in row if isinstance(w, str)
) | {"der", "die", "das", "den", "dem", "ein", "eine", "the", "a", "an", "that", "not", "nicht", "was", "wer"}

_DE_ONSETS = "b d f g h k l m n p r s t w z sch st br gr kl fr pf tr schw".split()
_DE_NUCLEI = "a e i o u ei au ie ä ö ü".split()
_DE_CODAS = ["", "", "n", "r", "l", "s", "m", "ch", "ck", "nd", "ng", "lt", "rn"]
_EN_ONSETS = "_ b c d f g h j l m n p r s t v w y th sh ch bl cr pl st tr sl".replace("_", "").split(" ")
_EN_NUCLEI = "a e i o u ee oo ai oa ou".split()
_EN_CODAS = ["", "", "n", "t", "p", "m", "ck", "ng", "sh", "x", "ll", "st", "nd"]
_XX_ONSETS = "_ b c d f g l m n p r s t v ch ll br pr tr gr".replace("_", "").split(" ")
_XX_NUCLEI = "a e i o u ia ue io".split()
_XX_CODAS = ["", "", "", "n", "r", "l", "s"]
_N_SYLLABLES = 80
LANGUAGES = ("de", "en", "xx")


@dataclass(frozen=True)
class Word:
    """A content word: German, English and xx stems; a gender for nouns."""

    de: str
    en: str
    gender: str = ""
    xx: str = ""


@dataclass(frozen=True)
class Lexicon:
    nouns: tuple[Word, ...]
    adjectives: tuple[Word, ...]
    verbs: dict[str, tuple[Word, ...]]  # by valency: intr, tr, ditr, say
    names: tuple[str, ...]


def _syllables(rng: random.Random, onsets, nuclei, codas) -> list[str]:
    found: dict[str, None] = {}
    while len(found) < _N_SYLLABLES:
        found[rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas)] = None
    return list(found)


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The fixed vocabulary of the toy language (independent of the corpus seed)."""
    rng = random.Random(LEXICON_SEED)
    de_syllables = _syllables(rng, _DE_ONSETS, _DE_NUCLEI, _DE_CODAS)
    cipher = dict(zip(de_syllables, _syllables(rng, _EN_ONSETS, _EN_NUCLEI, _EN_CODAS), strict=False))
    # xx's syllables come from a generator of their own: German and English stay as they were
    xx_syllables = _syllables(random.Random(LEXICON_SEED + 1), _XX_ONSETS, _XX_NUCLEI, _XX_CODAS)
    xx_cipher = dict(zip(de_syllables, xx_syllables, strict=False))
    used = set(FUNCTION_WORDS)

    def stem(consonant_final: bool = False) -> tuple[str, str, str]:
        while True:
            parts = [rng.choice(de_syllables) for _ in range(rng.choices((1, 2, 3), (3, 6, 1))[0])]
            de, en = "".join(parts), "".join(cipher[p] for p in parts)
            if len(de) >= 3 and de not in used and en not in used and de != en and not (
                consonant_final and de[-1] in "aeiouäöü"
            ):
                used.update((de, en))
                return de, en, "".join(xx_cipher[p] for p in parts)

    def word(consonant_final: bool = False, noun: bool = False) -> Word:
        de, en, xx = stem(consonant_final)
        return Word(de, en, rng.choice("mfn") if noun else "", xx)  # the gender is drawn after the stem

    nouns = tuple(word(noun=True) for _ in range(200))
    adjectives = tuple(word(True) for _ in range(60))
    verbs = {kind: tuple(word(True) for _ in range(n)) for kind, n in
             (("intr", 30), ("tr", 70), ("ditr", 8), ("say", 6))}
    names = tuple(de.capitalize() for de, _, _ in (stem() for _ in range(24)))
    return Lexicon(nouns, adjectives, verbs, names)


# --- phrases and clauses ------------------------------------------------------------------

@dataclass
class NP:
    """A noun phrase: a pronoun, a name, a noun with its modifiers, or `wer`/who."""

    kind: str  # "pron" | "name" | "noun" | "who"
    word: Word | str | None = None
    pron: int = 0
    plural: bool = False
    definite: bool = True
    adjectives: list[Word] = field(default_factory=list)
    relative: Clause | None = None  # a relative clause whose gap is this NP

    @property
    def agreement(self) -> int:
        if self.kind == "pron":
            return PRONOUNS[self.pron][5]
        return 5 if self.plural else 2


@dataclass
class Clause:
    subject: NP
    verb: Word | None  # None: the copula, with `predicate`
    objects: list[NP] = field(default_factory=list)  # indirect (dative) object first
    predicate: Word | None = None
    tense: str = "pres"  # pres | past | perf
    negated: bool = False
    adverb: Word | None = None  # manner adverb: German bare adjective, English adjective + "ly"
    pp: tuple[tuple[str, str], NP] | None = None
    gap: str = ""  # "subj" or "obj": the NP a relative clause or wh-question leaves out


def _de_noun(word: Word, plural: bool, dative: bool) -> str:
    form = word.de
    if plural:
        form += "n" if form.endswith("e") else PLURAL[word.gender]
        if dative and not form.endswith(("n", "s")):
            form += "n"
    return form[0].upper() + form[1:]


def _de_np(np: NP, case: int) -> list[str]:
    if np.kind == "pron":
        return [PRONOUNS[np.pron][case]]
    if np.kind == "name":
        return [np.word]
    if np.kind == "who":
        return ["wer"]
    g = "p" if np.plural else np.word.gender
    if np.definite:
        article, ending = DEFINITE[case][g], WEAK[case][g]
    elif np.plural:
        article, ending = None, "en" if case == DAT else "e"
    else:
        article, ending = INDEFINITE[case][g], MIXED[case][g]
    words = ([article] if article else []) + [a.de + ending for a in np.adjectives]
    words.append(_de_noun(np.word, np.plural, case == DAT))
    if np.relative:
        pronoun = DEFINITE[ACC][g] if np.relative.gap == "obj" else DEFINITE[NOM][g]
        words += [",", pronoun] + _de_clause(np.relative, "sub") + [","]
    return words


def _de_verb(cl: Clause) -> tuple[str, list[str]]:
    """The finite verb and the words that go to the end of a main clause."""
    slot = cl.subject.agreement
    if cl.verb is None:
        if cl.tense == "perf":
            return DE_BE["pres"][slot], ["gewesen"]
        return DE_BE[cl.tense][slot], []
    stem = cl.verb.de
    linking = "e" if stem.endswith(("t", "d")) else ""
    if cl.tense == "perf":
        return DE_HAVE[slot], ["ge" + stem + linking + "t"]
    if cl.tense == "past":
        return stem + linking + DE_PAST[slot], []
    ending = DE_PRESENT[slot]
    if slot == 1 and stem.endswith(("s", "z", "x")):
        ending = "t"
    return stem + (linking if ending[0] in "st" else "") + ending, []


def _de_clause(cl: Clause, order: str, front: list[str] | None = None) -> list[str]:
    """order: main (verb second, or after `front`), sub (verb last) or question (verb first)."""
    finite, final = _de_verb(cl)
    subject = [] if cl.gap == "subj" else _de_np(cl.subject, NOM)
    middle = []
    for obj, case in zip(cl.objects, (DAT, ACC) if len(cl.objects) == 2 else (ACC,), strict=False):
        middle += _de_np(obj, case)
    middle += ["nicht"] if cl.negated else []
    middle += [cl.adverb.de] if cl.adverb else []
    if cl.pp:
        middle += [cl.pp[0][0]] + _de_np(cl.pp[1], DAT)
    middle += [cl.predicate.de] if cl.predicate else []
    if order == "sub":
        return subject + middle + final + [finite]
    if order == "question":
        return [finite] + subject + middle + final
    if front:
        return front + [finite] + subject + middle + final
    return subject + [finite] + middle + final


def _en_suffix(word: str, suffix: str) -> str:
    if suffix == "s":
        return word + ("es" if word.endswith(("s", "sh", "ch", "x", "z")) else "s")
    return word + ("d" if word.endswith("e") else "ed")


def _en_np(np: NP, case: int) -> list[str]:
    if np.kind == "pron":
        return [PRONOUNS[np.pron][3 if case == NOM else 4]]
    if np.kind == "name":
        return [np.word]
    if np.kind == "who":
        return ["who"]
    noun = np.word.en.split()
    if np.plural:
        noun[-1] = _en_suffix(noun[-1], "s")
    words = [a.en for a in np.adjectives] + noun
    if np.definite:
        words.insert(0, "the")
    elif not np.plural:
        words.insert(0, "an" if words[0][0] in "aeiou" else "a")
    if np.relative:
        words += ["that"] + _en_clause(np.relative)
    return words


def _en_verb(cl: Clause, question: bool) -> tuple[list[str], list[str]]:
    """Verb words before and after the subject (questions put the auxiliary first)."""
    slot = cl.subject.agreement
    negation = ["not"] if cl.negated else []
    have = "has" if slot == 2 else "have"
    if cl.verb is None:
        first, rest = (have, negation + ["been"]) if cl.tense == "perf" else (EN_BE[cl.tense][slot], negation)
    elif cl.tense == "perf":
        first, rest = have, negation + [_en_suffix(cl.verb.en, "ed")]
    elif cl.negated or question:
        first = "did" if cl.tense == "past" else "does" if slot == 2 else "do"
        rest = negation + [cl.verb.en]
    elif cl.tense == "past":
        return [], [_en_suffix(cl.verb.en, "ed")]
    else:
        return [], [_en_suffix(cl.verb.en, "s") if slot == 2 else cl.verb.en]
    return ([first], rest) if question else ([], [first] + rest)


def _en_clause(cl: Clause, question: bool = False) -> list[str]:
    before, after = _en_verb(cl, question)
    subject = [] if cl.gap == "subj" else _en_np(cl.subject, NOM)
    words = before + subject + after
    for obj in cl.objects:
        words += _en_np(obj, ACC)
    words += [cl.adverb.en + "ly"] if cl.adverb else []
    if cl.pp:
        words += [cl.pp[0][1]] + _en_np(cl.pp[1], ACC)
    words += [cl.predicate.en] if cl.predicate else []
    return words


def _xx_np(np: NP, case: int) -> list[str]:
    if np.kind == "pron":
        return [XX_PRONOUNS[np.pron][0 if case == NOM else 1]]
    if np.kind == "name":
        return [np.word]
    if np.kind == "who":
        return ["quien"]
    gender = "f" if np.word.gender == "f" else "m"
    noun = np.word.xx.split()  # a compound is "head de modifier"
    if np.plural:
        noun[0] += "s"
    words = [XX_DEFINITE[gender + "p" * np.plural]] if np.definite else []
    words += [XX_INDEFINITE[gender]] if not np.definite and not np.plural else []
    ending = ("a" if gender == "f" else "o") + "s" * np.plural
    words += noun + [a.xx + ending for a in np.adjectives]  # adjectives follow and agree with the noun
    if np.relative:
        words += ["que"] + _xx_clause(np.relative)
    return words


def _xx_verb(cl: Clause) -> list[str]:
    slot = cl.subject.agreement
    if cl.verb is None:
        return [XX_HAVE[slot], "sido"] if cl.tense == "perf" else [XX_BE[cl.tense][slot]]
    if cl.tense == "perf":
        return [XX_HAVE[slot], cl.verb.xx + "ado"]
    return [cl.verb.xx + (XX_PAST if cl.tense == "past" else XX_PRESENT)[slot]]


def _xx_agreement(np: NP) -> str:
    """The ending of a predicate adjective: the subject's gender and number."""
    feminine = (np.kind == "noun" and np.word.gender == "f") or (np.kind == "pron" and np.pron == 3)
    return ("a" if feminine else "o") + ("s" if np.agreement >= 3 else "")


def _xx_clause(cl: Clause) -> list[str]:
    """Subject, negation, object pronouns, verb, objects (the indirect one with `a`), adverb, pp."""
    subject = [] if cl.gap == "subj" else _xx_np(cl.subject, NOM)
    clitics = [XX_PRONOUNS[o.pron][1] for o in cl.objects if o.kind == "pron"]
    objects = []
    for i, obj in enumerate(cl.objects):
        if obj.kind != "pron":
            objects += (["a"] if len(cl.objects) == 2 and i == 0 else []) + _xx_np(obj, ACC)
    words = subject + (["no"] if cl.negated else []) + clitics + _xx_verb(cl) + objects
    words += [cl.adverb.xx + "amente"] if cl.adverb else []
    if cl.pp:
        words += [XX_WORDS[cl.pp[0][0]]] + _xx_np(cl.pp[1], ACC)
    words += [cl.predicate.xx + _xx_agreement(cl.subject)] if cl.predicate else []
    return words


def _render(tokens: list[str], final: str) -> str:
    """Attach commas to the preceding word, drop doubled or dangling ones, capitalize."""
    words: list[str] = []
    for token in tokens:
        if token == ",":
            if words and not words[-1].endswith(","):
                words[-1] += ","
        else:
            words.append(token)
    words[-1] = words[-1].rstrip(",")
    text = " ".join(words) + final
    return text[0].upper() + text[1:]


# --- sampling -----------------------------------------------------------------------------

class _Sampler:
    """Draws sentences; content words follow a Zipf-like law, like real text."""

    def __init__(self, rng: random.Random, lex: Lexicon):
        self.rng, self.lex = rng, lex

    def pick(self, items):
        return self.rng.choices(items, cum_weights=_zipf_weights(len(items)))[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def noun(self) -> Word:
        head = self.pick(self.lex.nouns)
        if not self.chance(0.1):
            return head
        modifier = self.pick(self.lex.nouns)  # a compound: one German word, two English ones
        return Word(modifier.de + head.de, modifier.en + " " + head.en, head.gender, f"{head.xx} de {modifier.xx}")

    def np(self, subject: bool, relative: bool = True) -> NP:
        r = self.rng.random()
        if r < (0.25 if subject else 0.1):
            return NP("pron", pron=self.rng.randrange(len(PRONOUNS)))
        if r < (0.35 if subject else 0.18):
            return NP("name", word=self.pick(self.lex.names))
        n_adjectives = self.rng.choices((0, 1, 2), (55, 35, 10))[0]
        np = NP("noun", word=self.noun(), plural=self.chance(0.3), definite=self.chance(0.6),
                adjectives=[self.pick(self.lex.adjectives) for _ in range(n_adjectives)])
        if relative and self.chance(0.12):
            verb = self.pick(self.lex.verbs["tr"])
            tense = self.rng.choice(("pres", "past"))
            if self.chance(0.5):
                np.relative = Clause(np, verb, [self.np(False, False)], tense=tense, gap="subj")
            else:
                np.relative = Clause(self.np(True, False), verb, [], tense=tense, gap="obj")
        return np

    def clause(self, kind: str | None = None, negation: bool = True, relative: bool = True) -> Clause:
        kind = kind or self.rng.choices(("intr", "tr", "ditr", "cop"), (25, 45, 10, 20))[0]
        cl = Clause(self.np(True, relative), None if kind == "cop" else self.pick(self.lex.verbs[kind]),
                    tense=self.rng.choices(("pres", "past", "perf"), (5, 3, 2))[0],
                    negated=negation and self.chance(0.15))
        if kind == "cop":
            cl.predicate = self.pick(self.lex.adjectives)
        if kind == "ditr":
            cl.objects.append(self.np(False, relative))
        if kind in ("tr", "ditr"):
            cl.objects.append(self.np(False, relative))
        if kind == "intr" and self.chance(0.3):
            cl.adverb = self.pick(self.lex.adjectives)
        if kind != "cop" and self.chance(0.25 if kind == "intr" else 0.12):
            cl.pp = (self.rng.choice(PREPOSITIONS), self.np(False, False))
        return cl

    def sentence(self) -> tuple[str, str, str]:
        """One sentence of any of the sentence types, in German-like, English-like and xx."""
        r = self.rng.random()
        if r < 0.12:  # yes/no question: the finite verb (or English auxiliary) first
            cl = self.clause(negation=False)
            return (_render(_de_clause(cl, "question"), "?"), _render(_en_clause(cl, question=True), "?"),
                    _render(_xx_clause(cl), "?"))
        if r < 0.17:  # wh-question about the subject (wer/who) or the object (was/what)
            cl = self.clause("tr", negation=False)
            if self.chance(0.5):
                cl.subject = NP("who")
                return _render(_de_clause(cl, "main"), "?"), _render(_en_clause(cl), "?"), _render(_xx_clause(cl), "?")
            cl.objects, cl.gap = [], "obj"
            return (_render(_de_clause(cl, "main", front=["was"]), "?"),
                    _render(["what"] + _en_clause(cl, question=True), "?"), _render(["que"] + _xx_clause(cl), "?"))
        final = "!" if self.chance(0.08) else "."
        if r < 0.32:  # main clause, then a subordinate clause with its verb last
            main, sub, (de_conj, en_conj) = self.clause(), self.clause(relative=False), self.rng.choice(CONJUNCTIONS)
            de = _de_clause(main, "main") + [",", de_conj] + _de_clause(sub, "sub")
            en = _en_clause(main) + [en_conj] + _en_clause(sub)
            xx = _xx_clause(main) + [",", XX_WORDS[de_conj]] + _xx_clause(sub)
        elif r < 0.42:  # subordinate clause first: the German main clause starts with its verb
            main, sub, (de_conj, en_conj) = self.clause(), self.clause(relative=False), self.rng.choice(CONJUNCTIONS)
            de = _de_clause(main, "main", front=[de_conj] + _de_clause(sub, "sub") + [","])
            en = [en_conj] + _en_clause(sub) + [","] + _en_clause(main)
            xx = [XX_WORDS[de_conj]] + _xx_clause(sub) + [","] + _xx_clause(main)
        elif r < 0.50:  # reported speech: "sagt, dass ..." / "says that ..."
            main, sub = self.clause("say", relative=False), self.clause()
            de = _de_clause(main, "main") + [",", "dass"] + _de_clause(sub, "sub")
            en = _en_clause(main) + ["that"] + _en_clause(sub)
            xx = _xx_clause(main) + ["que"] + _xx_clause(sub)
        elif r < 0.60:  # two coordinated main clauses
            first, second, (de_coord, en_coord, comma) = self.clause(), self.clause(), self.rng.choice(COORDINATORS)
            de = _de_clause(first, "main") + [comma, de_coord] + _de_clause(second, "main")
            en = _en_clause(first) + [comma, en_coord] + _en_clause(second)
            xx = _xx_clause(first) + [comma, XX_WORDS[de_coord]] + _xx_clause(second)
        elif r < 0.75:  # a fronted time adverb: verb second in German
            cl, (de_adverb, en_adverb) = self.clause(), self.rng.choice(TIME_ADVERBS)
            de, en = _de_clause(cl, "main", front=[de_adverb]), [en_adverb] + _en_clause(cl)
            xx = [XX_WORDS[de_adverb]] + _xx_clause(cl)
        else:
            cl = self.clause()
            de, en, xx = _de_clause(cl, "main"), _en_clause(cl), _xx_clause(cl)
        return tuple(_render([t for t in side if t], final) for side in (de, en, xx))


@functools.lru_cache(maxsize=8)
def _zipf_weights(n: int, exponent: float = 0.6) -> list[float]:
    """Cumulative weights of ranks 1..n."""
    return list(itertools.accumulate(rank ** -exponent for rank in range(1, n + 1)))


def generate(seed: int = 1, sizes: dict[str, int] | None = None) -> dict[str, list[tuple[str, str]]]:
    """(German-like, English-like) sentence pairs per split, the same for the same seed and sizes.

    No sentence (on either side) occurs twice, so the splits are disjoint. The test set
    is drawn first, then valid, then train: for one seed, a larger training set leaves
    the test and valid sets unchanged.
    """
    return generate_pairs("de", "en", seed, sizes)


def generate_pairs(src: str, tgt: str, seed: int = 1,
                   sizes: dict[str, int] | None = None) -> dict[str, list[tuple[str, str]]]:
    """The same sentences as `generate`, in any two of the toy's languages (de, en, xx)."""
    if src not in LANGUAGES or tgt not in LANGUAGES or src == tgt:
        raise ConfigError(f"the toy corpus has no {src}-{tgt}; its languages are {', '.join(LANGUAGES)}")
    a, b = LANGUAGES.index(src), LANGUAGES.index(tgt)
    rows = _draw(seed, sizes)
    return {split: [(row[a], row[b]) for row in rows[split]] for split in SPLITS}


def _draw(seed: int, sizes: dict[str, int] | None) -> dict[str, list[tuple[str, str, str]]]:
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(SPLITS)
    if unknown or any(not isinstance(n, int) or n < 1 for n in sizes.values()):
        raise ConfigError(f"toy corpus sizes {sizes}: give a positive number for each of {', '.join(SPLITS)}")
    sampler = _Sampler(random.Random(seed), lexicon())
    seen_de: set[str] = set()
    seen_en: set[str] = set()
    corpus: dict[str, list[tuple[str, str, str]]] = {}
    budget = 20 * sum(sizes.values()) + 10_000
    for split in ("test", "valid", "train"):
        rows = corpus[split] = []
        while len(rows) < sizes[split]:
            budget -= 1
            if budget < 0:
                raise ConfigError(f"toy corpus: cannot draw {sum(sizes.values())} distinct sentences; ask for fewer")
            de, en, xx = sampler.sentence()
            if not MIN_WORDS <= len(de.split()) <= MAX_WORDS or de in seen_de or en in seen_en:
                continue
            seen_de.add(de)
            seen_en.add(en)
            rows.append((de, en, xx))
    return corpus
