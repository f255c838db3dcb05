"""Corpus-level BLEU, chrF and chrF++ through sacreBLEU's Python API, plus extra BLEU protocols.

Scores are computed by sacreBLEU itself (never re-implemented) so that the numbers and
signatures are exactly those of `sacrebleu REF -i HYP -m bleu chrf`, and a published
result can be compared with any other system scored the same way. This module knows
only text: reading files and writing reports belong to the command-line layer.

Extra BLEU protocols (`PROTOCOLS`) give the numbers papers report under other conventions, next
to the primary scores: `tokenized` is the literature's tokenized BLEU (fairseq's IWSLT'14
figures: Moses-tokenized, lower-cased text scored as it is), `detokenized` is sacreBLEU on
Moses-detokenized text (for corpora that are distributed tokenized, e.g. TED talks). Both sides
are pre-processed with sacremoses before sacreBLEU scores them. sacreBLEU's signature cannot say
what was done to the text before it saw it, so such a line would look like an ordinary
`tok:none` or `tok:13a` score; each protocol therefore appends two fields to the signature:
`pre:` (the pre-processing, e.g. `moses-tok`) and `lang:` (the language of the Moses rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.bleu import _TOKENIZERS as BLEU_TOKENIZERS

from pasero import language_id
from pasero.errors import ConfigError, DataError

METRICS = ("bleu", "chrf", "chrf++")
# Decimal places sacreBLEU's command line prints by default (`--width 1`).
CLI_WIDTH = 1
LANG_PATTERN = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?")  # en, pt_br, zh-cn


def moses_language(lang: str) -> str:
    """The code Moses' rules know: a regional variant (pt_br, zh-cn) uses its language's rules."""
    return re.split(r"[_-]", lang)[0].lower()

# Moses splits its own output again at some apostrophes ("it 's" -> "it ' s", French "l' homme"
# -> "l ' homme"), so tokenizing tokenized text would change the tokens and the score. These
# patterns undo the splits that Moses makes (English clitics, French/Italian elisions) so that
# re-tokenizing Moses output gives it back unchanged.
_REJOIN_CLITICS = {
    "en": (re.compile(r"(?<=[^\W_]) '(?=(?:s|t|re|ve|ll|m|d)\b)", re.IGNORECASE), "'"),
    "fr": (re.compile(r"(?<=[^\W\d_]') (?=[^\W\d_])"), ""),
    "it": (re.compile(r"(?<=[^\W\d_]') (?=[^\W\d_])"), ""),
}


def bleu_tokenizers() -> list[str]:
    """Names accepted by `bleu_tok` (those of sacreBLEU's `--tokenize`)."""
    return list(BLEU_TOKENIZERS)


def _moses_tokenizer(lang: str) -> Callable[[str], str]:
    """tokenizer.perl's defaults (no aggressive dash splits), idempotent on its own output.

    XML entities are unescaped first (fairseq's data is escaped; "&apos;s" must not become
    "& apos ; s"), and nothing is escaped after: escaping maps tokens one to one, so it cannot
    change BLEU. Case is kept for Moses and lowered by sacreBLEU afterwards, as fairseq's
    prepare-iwslt14.sh does (tokenizer.perl, then lowercase.perl): Moses keeps "word." unsplit
    when the next word is lower-case, so lower-casing first would tokenize differently.
    """
    from sacremoses import MosesDetokenizer, MosesTokenizer  # a third of a second to import: only when used

    lang = moses_language(lang)
    tokenizer, unescape = MosesTokenizer(lang), MosesDetokenizer(lang).unescape_xml
    rejoin = _REJOIN_CLITICS.get(lang)

    def tokenize(line: str) -> str:
        line = unescape(line)
        if rejoin:
            line = rejoin[0].sub(rejoin[1], line)
        return tokenizer.tokenize(line, escape=False, aggressive_dash_splits=False, return_str=True)

    return tokenize


def _moses_detokenizer(lang: str) -> Callable[[str], str]:
    """detokenizer.perl, which also unescapes XML entities."""
    from sacremoses import MosesDetokenizer

    detokenizer = MosesDetokenizer(moses_language(lang))
    return lambda line: detokenizer.detokenize(line.split(), unescape=True)


@dataclass(frozen=True)
class Protocol:
    """An extra BLEU: how both sides are pre-processed, then how sacreBLEU scores them."""

    pre: str  # the signature's `pre:` field
    prepare: Callable[[str], Callable[[str], str]]  # lang -> line function
    bleu_tok: str
    lowercase: bool | None  # None: the --lowercase setting of the primary scores
    help: str


PROTOCOLS: dict[str, Protocol] = {
    "tokenized": Protocol(
        "moses-tok", _moses_tokenizer, "none", True,
        "the literature's tokenized BLEU (fairseq IWSLT'14): Moses-tokenized, lower-cased, tok none"),
    "detokenized": Protocol(
        "moses-detok", _moses_detokenizer, "13a", None,
        "sacreBLEU (13a) on Moses-detokenized text, for corpora whose text is tokenized (TED talks)"),
}


def _metrics(bleu_tok: str, lowercase: bool) -> dict[str, BLEU | CHRF]:
    return {
        "bleu": _bleu(bleu_tok, lowercase),
        "chrf": CHRF(lowercase=lowercase),
        "chrf++": CHRF(word_order=2, lowercase=lowercase),
    }


def _bleu(bleu_tok: str, lowercase: bool, force: bool = False) -> BLEU:
    if bleu_tok not in BLEU_TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenization '{bleu_tok}'; choose one of: {', '.join(BLEU_TOKENIZERS)}")
    try:
        return BLEU(tokenize=bleu_tok, lowercase=lowercase, force=force)
    except (ImportError, RuntimeError) as e:  # e.g. ja-mecab without its optional package
        raise ConfigError(f"BLEU tokenization '{bleu_tok}' is unavailable: {e}") from None


@dataclass(frozen=True)
class Comparison:
    """sacreBLEU's paired bootstrap resampling of a system against a baseline on one test set: the
    p-value of their BLEU difference being due to chance (two-sided; sacreBLEU counts a zero
    difference as significant, as MultEval does), and each one's BLEU as mean and 95% confidence
    half-width over the resamples."""

    p_value: float
    mean: float
    ci: float
    baseline_mean: float
    baseline_ci: float
    signature: str


def paired_bootstrap(system: Sequence[str], baseline: Sequence[str], refs: Sequence[str], bleu_tok: str = "13a",
                     lowercase: bool = False, n_samples: int = 1000) -> Comparison:
    """Whether `system` and `baseline` differ significantly (sacreBLEU's implementation and fixed
    seed: the same files give the same p-value)."""
    from sacrebleu.significance import PairedTest

    for hyps in (system, baseline):
        check_lines(hyps, refs)
    test = PairedTest([("baseline", list(baseline)), ("system", list(system))], {"BLEU": _bleu(bleu_tok, lowercase)},
                      [list(refs)], test_type="bs", n_samples=n_samples)
    signatures, results = test()
    base, sys_ = results["BLEU"]
    return Comparison(p_value=float(sys_.p_value), mean=float(sys_.mean), ci=float(sys_.ci),
                      baseline_mean=float(base.mean), baseline_ci=float(base.ci),
                      signature=signatures["BLEU"].format())


def check_lines(hyps: Sequence[str], refs: Sequence[str]) -> None:
    """Scoring a truncated or misaligned output silently gives a wrong score: refuse instead."""
    if len(hyps) != len(refs):
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references: the line counts must be equal")
    if not refs:
        raise DataError("nothing to score: the hypotheses and references are empty")


def check_protocols(names: Sequence[str], lang: str | None) -> None:
    """Every protocol must be known, and the Moses rules need the target language."""
    for name in names:
        if name not in PROTOCOLS:
            raise ConfigError(f"unknown BLEU protocol '{name}'; choose one of: {', '.join(PROTOCOLS)}")
    if names and not lang:
        raise ConfigError(f"BLEU protocol '{names[0]}' needs the target language for the Moses rules "
                          "(e.g. lang='en')")
    if lang and not LANG_PATTERN.fullmatch(lang):
        raise ConfigError(f"'{lang}' is not a language code: give a code such as 'en' or 'pt_br'")


def _bleu_details(corpus: Any) -> dict[str, Any]:
    return {
        "precisions": [float(p) for p in corpus.precisions],
        "bp": float(corpus.bp),
        "ratio": float(corpus.ratio),
        "hyp_len": int(corpus.sys_len),
        "ref_len": int(corpus.ref_len),
    }


def extra_bleu(hyps: Sequence[str], refs: Sequence[str], protocol: str, lang: str,
               lowercase: bool = False) -> dict[str, Any]:
    """BLEU under one of `PROTOCOLS`: {"bleu", "signature", "score_line", "bleu_details"}.

    `lowercase` is the primary scores' setting, used by protocols that do not fix their own.
    """
    check_protocols([protocol], lang)
    spec = PROTOCOLS[protocol]
    prepare = spec.prepare(lang)
    # Tokenized text is what a tok:none protocol scores: silence sacreBLEU's "forgot to detokenize".
    metric = _bleu(spec.bleu_tok, lowercase if spec.lowercase is None else spec.lowercase,
                   force=spec.bleu_tok == "none")
    corpus = metric.corpus_score([prepare(h) for h in hyps], [[prepare(r) for r in refs]])
    signature = f"{metric.get_signature().format()}|pre:{spec.pre}|lang:{lang}"
    return {"bleu": float(corpus.score), "signature": signature,
            "score_line": corpus.format(width=CLI_WIDTH, signature=signature),
            "bleu_details": _bleu_details(corpus)}


def score(hyps: Sequence[str], refs: Sequence[str], bleu_tok: str = "13a", lowercase: bool = False,
          protocols: Sequence[str] = (), lang: str | None = None,
          lang_samples: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Corpus BLEU, chrF and chrF++ of detokenized hypotheses against one reference each.

    Returns {"bleu", "chrf", "chrf++": full-precision scores, "signatures": {metric: signature},
    "score_lines": {metric: sacreBLEU's text line with its signature}, "bleu_details": {precisions,
    bp, ratio, hyp_len, ref_len}, "n_lines", "bleu_tok", "lowercase", "lang", "off_target" (percentage
    of hypotheses identified as another language than `lang`), "extra_bleu": {protocol: extra_bleu(...)}}.
    `lowercase` applies to every metric (the sacrebleu command line needs `-lc --chrf-lowercase`).
    `protocols` are names of `PROTOCOLS`, scored after the primary metrics; they need `lang`.
    `lang_samples` ({lang: lines}) identify languages that the language identifier does not know.
    """
    hyps, refs = list(hyps), list(refs)
    check_lines(hyps, refs)
    check_protocols(protocols, lang)
    result: dict[str, Any] = {"signatures": {}, "score_lines": {}}
    for name, metric in _metrics(bleu_tok, lowercase).items():
        corpus = metric.corpus_score(hyps, [refs])
        signature = metric.get_signature().format()
        result[name] = float(corpus.score)
        result["signatures"][name] = signature
        result["score_lines"][name] = corpus.format(width=CLI_WIDTH, signature=signature)
        if name == "bleu":
            result["bleu_details"] = _bleu_details(corpus)
    result.update(n_lines=len(hyps), bleu_tok=bleu_tok, lowercase=lowercase, lang=lang)
    # share of outputs in another language than `lang` (None: no language given, or one unknown to the identifier)
    result["off_target"] = language_id.off_target_rate(hyps, lang, lang_samples) if lang else None
    result["extra_bleu"] = {name: extra_bleu(hyps, refs, name, lang, lowercase) for name in dict.fromkeys(protocols)}
    return result


def format_report(result: dict[str, Any]) -> str:
    """The lines `sacrebleu -f text` prints for these metrics (the content of `bleu.txt`), then one
    line per extra BLEU protocol."""
    lines = [result["score_lines"][name] for name in METRICS]
    lines += [extra["score_line"] for extra in result.get("extra_bleu", {}).values()]
    return "".join(line + "\n" for line in lines)
