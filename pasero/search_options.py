"""How to decode: declared once, read by pasero-decode, the workflow's `decode:` section, the
decoding defaults stored with a model, and the search functions (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from pasero.options import option

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")
# How a multilingual model is told the target language: not at all, a <lang:xx> token starting the
# source (Pasero), or that token as the decoder's first input (fairseq's --decoder-langtok).
LANG_CODES = ("none", "source", "decoder")


@dataclass
class SearchOptions:
    """The search itself (fairseq-generate's conventions; pasero.search)."""

    beam_size: int = option(5, "beam size (1: greedy search)", gt=0, short=("-b",))
    nbest: int = option(1, "hypotheses per input (samples with --sampling); -v shows them, the output gets the "
                           "best", gt=0)
    len_penalty: float = option(1.0, "rank finished hypotheses by score / length ** len_penalty")
    max_len_a: float = option(1.2, "at most max_len_a * source length + max_len_b tokens", min=0)
    max_len_b: int = option(10, "see max_len_a", min=0)
    min_len: int = option(1, "at least this many tokens before end of sentence", min=0)
    sampling: bool = option(False, "sample instead of beam search")
    temperature: float = option(1.0, "sampling from softmax(logits / temperature)", gt=0)
    top_k: int = option(0, "sample among the k most probable tokens (0: all)", min=0)
    top_p: float = option(1.0, "nucleus sampling: the smallest set of tokens of this probability", gt=0, max=1)
    seed: int | None = option(None, "random seed of --sampling (null: a new one each run)")


@dataclass
class DecodeOptions(SearchOptions):
    """pasero-decode's options beyond the search: batching and hardware."""

    batch_size: int = option(4096, "source tokens per batch, padding included", gt=0)
    buffer_size: int | None = option(None, "lines read (and sorted by length) at a time (null: 10000, or 1 when "
                                           "stdin is a terminal)", gt=0)
    device: str = option("auto", "auto (cuda when available), cpu or cuda", choices=DEVICES)
    dtype: str = option("auto", "auto: bfloat16 where the hardware has it (CUDA with bf16, CPUs with AVX512-BF16 "
                                "or AMX), else float16 on CUDA and float32 on CPU", choices=DTYPES)

    def search(self) -> SearchOptions:
        return SearchOptions(**{name: getattr(self, name) for name in SearchOptions.__dataclass_fields__})
