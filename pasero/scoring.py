"""Corpus-level BLEU, chrF and chrF++ through sacreBLEU's Python API.

Scores are computed by sacreBLEU itself (never re-implemented) so that the numbers and
signatures are exactly those of `sacrebleu REF -i HYP -m bleu chrf`, and a published
result can be compared with any other system scored the same way. This module knows
only text: reading files and writing reports belong to the command-line layer.
"""

from __future__ import annotations

from typing import Any, Sequence

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.bleu import _TOKENIZERS as BLEU_TOKENIZERS

from pasero.errors import ConfigError, DataError

METRICS = ("bleu", "chrf", "chrf++")
# Decimal places sacreBLEU's command line prints by default (`--width 1`).
CLI_WIDTH = 1


def bleu_tokenizers() -> list[str]:
    """Names accepted by `bleu_tok` (those of sacreBLEU's `--tokenize`)."""
    return list(BLEU_TOKENIZERS)


def _metrics(bleu_tok: str, lowercase: bool) -> dict[str, BLEU | CHRF]:
    if bleu_tok not in BLEU_TOKENIZERS:
        raise ConfigError(f"unknown BLEU tokenization '{bleu_tok}'; choose one of: {', '.join(BLEU_TOKENIZERS)}")
    try:
        bleu = BLEU(tokenize=bleu_tok, lowercase=lowercase)
    except (ImportError, RuntimeError) as e:  # e.g. ja-mecab without its optional package
        raise ConfigError(f"BLEU tokenization '{bleu_tok}' is unavailable: {e}") from None
    return {
        "bleu": bleu,
        "chrf": CHRF(lowercase=lowercase),
        "chrf++": CHRF(word_order=2, lowercase=lowercase),
    }


def check_lines(hyps: Sequence[str], refs: Sequence[str]) -> None:
    """Scoring a truncated or misaligned output silently gives a wrong score: refuse instead."""
    if len(hyps) != len(refs):
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references: the line counts must be equal")
    if not refs:
        raise DataError("nothing to score: the hypotheses and references are empty")


def score(hyps: Sequence[str], refs: Sequence[str], bleu_tok: str = "13a", lowercase: bool = False) -> dict[str, Any]:
    """Corpus BLEU, chrF and chrF++ of detokenized hypotheses against one reference each.

    Returns {"bleu", "chrf", "chrf++": full-precision scores, "signatures": {metric: signature},
    "score_lines": {metric: sacreBLEU's text line with its signature}, "bleu_details": {precisions,
    bp, ratio, hyp_len, ref_len}, "n_lines", "bleu_tok", "lowercase"}.
    `lowercase` applies to every metric (the sacrebleu command line needs `-lc --chrf-lowercase`).
    """
    hyps, refs = list(hyps), list(refs)
    check_lines(hyps, refs)
    result: dict[str, Any] = {"signatures": {}, "score_lines": {}}
    for name, metric in _metrics(bleu_tok, lowercase).items():
        corpus = metric.corpus_score(hyps, [refs])
        signature = metric.get_signature().format()
        result[name] = float(corpus.score)
        result["signatures"][name] = signature
        result["score_lines"][name] = corpus.format(width=CLI_WIDTH, signature=signature)
        if name == "bleu":
            result["bleu_details"] = {
                "precisions": [float(p) for p in corpus.precisions],
                "bp": float(corpus.bp),
                "ratio": float(corpus.ratio),
                "hyp_len": int(corpus.sys_len),
                "ref_len": int(corpus.ref_len),
            }
    result.update(n_lines=len(hyps), bleu_tok=bleu_tok, lowercase=lowercase)
    return result


def format_report(result: dict[str, Any]) -> str:
    """The lines `sacrebleu -f text` prints for these metrics (the content of `bleu.txt`)."""
    return "".join(result["score_lines"][name] + "\n" for name in METRICS)
