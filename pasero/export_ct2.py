"""CTranslate2 export: a `ctranslate2.Translator` model built with its Python spec API from our weights
(see pasero.export for what all exports share), and `ctranslate2_translate`, which searches as pasero does.

What differs, by construction of the runtime: greedy search gives pasero's tokens. Beam search does
too, except that (a) CTranslate2 cannot force eos at the maximum length, it stops there: a
hypothesis that reaches the limit (an unfinished translation) is ranked without the eos pasero adds;
(b) it removes the tokens it may not produce (eos before `min_len` tokens, <pad>) before the softmax,
pasero (as fairseq) after it, so with `min_len` > 1 the scores, and some choices, differ; (c) it
gives an empty translation to an empty input, where pasero translates the lone eos.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pasero.export import detached, max_length, output_weight, verify
from pasero.search_options import SearchOptions

if TYPE_CHECKING:
    from pasero.generator import TextGenerator

CT2_PAD = "<blank>"  # CTranslate2's name for padding (its fairseq converter renames <pad> so)


def check_supported(generator: TextGenerator) -> None:
    """Every pasero model: CTranslate2's Transformer spec has what ours has."""


def write(generator: TextGenerator, out: Path) -> None:
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    model, cfg = generator.model, generator.model.cfg
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}[cfg.activation]
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.heads, pre_norm=cfg.normalize_before, activation=activation)
    positions = detached(model.positions).numpy()
    for side, embedding, norm in ((spec.encoder, model.src_embed, model.encoder_norm),
                                  (spec.decoder, model.tgt_embed, model.decoder_norm)):
        (side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings).weight = \
            detached(embedding.weight).numpy()
        side.scale_embeddings = cfg.scale_embedding
        side.position_encodings.encodings = positions
        if cfg.normalize_before:
            _ct2_norm(side.layer_norm, norm)
    spec.decoder.projection.weight = detached(output_weight(model)).numpy()
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
        _ct2_attention(layer_spec.self_attention, layer.self_attn, layer.attn_res.norm, fused=True)
        _ct2_ffn(layer_spec.ffn, layer.ffn, layer.ffn_res.norm)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers, strict=True):
        _ct2_attention(layer_spec.self_attention, layer.self_attn, layer.self_res.norm, fused=True)
        _ct2_attention(layer_spec.attention, layer.cross_attn, layer.cross_res.norm, fused=False)
        _ct2_ffn(layer_spec.ffn, layer.ffn, layer.ffn_res.norm)
    source_vocabulary, vocabulary = ([CT2_PAD if s == "<pad>" else s for s in d.symbols]
                                     for d in (generator.source_dictionary, generator.dictionary))
    spec.register_source_vocabulary(source_vocabulary)
    spec.register_target_vocabulary(vocabulary)
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = model.encoder_layers[0].attn_res.norm.eps
    # The decoder's first input: eos (fairseq), or the target language's code, given as target_prefix.
    spec.config.decoder_start_token = None if generator.lang_code == "decoder" else "</s>"
    spec.validate()
    spec.optimize(quantization="float32")
    spec.save(str(out))
    if generator.tokenizer is not None:
        generator.tokenizer.save(out)  # spm.model + settings.yaml: pasero.tokenizer.Tokenizer.load(out)

    translator = ctranslate2.Translator(str(out), device="cpu", intra_threads=1)
    symbols = vocabulary

    def score(source: list[int], target: list[int]) -> list[float]:
        start = [symbols[generator._lang_id]] if generator.lang_code == "decoder" else []  # else </s>, implied
        result = translator.score_batch([[source_vocabulary[i] for i in source[:-1]]],
                                        [start + [symbols[i] for i in target[:-1]]])[0]
        return result.log_probs

    verify(generator, "ctranslate2", score)


def _ct2_norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = detached(norm.weight).numpy(), detached(norm.bias).numpy()


def _ct2_linear(spec: Any, weight: Tensor, bias: Tensor | None) -> None:
    spec.weight = detached(weight).numpy()
    if bias is not None:
        spec.bias = detached(bias).numpy()


def _ct2_attention(spec: Any, attention: torch.nn.Module, norm: torch.nn.LayerNorm, fused: bool) -> None:
    """Self-attention: one q|k|v projection; cross-attention: q, then k|v (our fused kv_proj as is)."""
    q, kv = attention.q_proj, attention.kv_proj
    if fused:
        _ct2_linear(spec.linear[0], torch.cat([q.weight, kv.weight]), torch.cat([q.bias, kv.bias]))
    else:
        _ct2_linear(spec.linear[0], q.weight, q.bias)
        _ct2_linear(spec.linear[1], kv.weight, kv.bias)
    _ct2_linear(spec.linear[-1], attention.out_proj.weight, attention.out_proj.bias)
    _ct2_norm(spec.layer_norm, norm)


def _ct2_ffn(spec: Any, ffn: torch.nn.Module, norm: torch.nn.LayerNorm) -> None:
    _ct2_linear(spec.linear_0, ffn.fc1.weight, ffn.fc1.bias)
    _ct2_linear(spec.linear_1, ffn.fc2.weight, ffn.fc2.bias)
    _ct2_norm(spec.layer_norm, norm)


def ctranslate2_translate(translator: Any, sources: Sequence[Sequence[str]], options: SearchOptions,
                          max_positions: int, target_prefix: str | None = None) -> list[list[str]]:
    """The best translation (pieces, without eos) of each source (pieces, without eos) by a
    `ctranslate2.Translator` of an exported model, with pasero's search conventions.

    The maximum length depends on the source length in pasero and is one number per call in
    CTranslate2: sources are translated in groups of equal length. CTranslate2 cannot force eos at
    that length: it stops there, so the tokens are pasero's (greedy search) but a beam hypothesis
    that reaches the limit is ranked without the eos pasero adds (see the module's notes for the
    rest). `target_prefix`: the target language's code, for models trained with lang_code: decoder.
    """
    groups: dict[int, list[int]] = {}
    for i, source in enumerate(sources):
        groups.setdefault(len(source) + 1, []).append(i)
    pending = []  # asynchronous: a translator with inter_threads > 1 decodes groups in parallel
    for src_len, indices in groups.items():
        limit = max_length(options, src_len, max_positions)
        if limit == 0:  # pasero forces eos at once: empty translations
            continue
        pending += zip(indices, translator.translate_batch(
            [list(sources[i]) for i in indices],
            target_prefix=[[target_prefix]] * len(indices) if target_prefix else None,
            beam_size=options.beam_size, length_penalty=options.len_penalty, patience=1,
            max_decoding_length=limit, min_decoding_length=min(options.min_len, limit),
            return_end_token=True,  # so that eos counts in the length, as in pasero
            suppress_sequences=[[CT2_PAD]], max_input_length=max_positions, asynchronous=True), strict=True)
    out: list[list[str]] = [[] for _ in sources]
    for i, result in pending:
        tokens = result.result().hypotheses[0]
        out[i] = tokens[:-1] if tokens and tokens[-1] == "</s>" else tokens
    return out


def usage(generator: TextGenerator, name: str) -> list[str]:
    """How to translate with the export as pasero would (its README)."""
    o, cfg = generator.options, generator.model.cfg
    prefix = ", target_prefix=[[LANG_TOKEN]]" if generator.lang_code == "decoder" else ""
    lines = ["```python", "import ctranslate2", "from pasero.tokenizer import Tokenizer",
             f"tokenizer, translator = Tokenizer.load('{name}'), ctranslate2.Translator('{name}')",
             "pieces = [tokenizer.tokenize(line).split() for line in lines]",
             f"results = translator.translate_batch(pieces{prefix}, beam_size={o.beam_size}, "
             f"length_penalty={o.len_penalty}, return_end_token=True, suppress_sequences=[['{CT2_PAD}']], "
             "max_decoding_length=MAX_LEN)",
             "text = [tokenizer.detokenize([t for t in r.hypotheses[0] if t != '</s>']) for r in results]",
             "```", "",
             f"MAX_LEN = int({o.max_len_a} * (len(source pieces) + 1) + {o.max_len_b}), at most "
             f"{cfg.max_positions - 1}: pasero.export_ct2.ctranslate2_translate groups sources by length so.",
             "Without pasero: `sentencepiece` encodes `' ' + ' '.join(line.split())` into the same pieces "
             "(`spm.model`; not with inline casing or NFKC)."]
    if generator.lang_code == "source":
        lines.append("A multilingual model: start each source with the target language's token, e.g. <lang:en>.")
    return lines
