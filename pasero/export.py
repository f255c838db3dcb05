"""Export a trained model to CTranslate2 or to Hugging Face transformers, translating exactly as pasero does.

    pasero-export results/toy/de-en/model.pt --format ctranslate2 -o toy-ct2   # fast CPU/GPU serving
    pasero-export results/toy/de-en/model.pt --format hf -o toy-hf             # transformers.pipeline

Both runtimes implement fairseq's Transformer, which is ours, so the export is a renaming of weights
plus the conventions below; what a runtime cannot express is refused with a one-line error rather
than exported into a model that translates differently. Each export is checked before it is
written under its final name: the runtime loads it from disk and must give the log-probabilities
pasero gives to a few probe translations.

transformers' architecture is Marian (MarianMTModel): post-LN, scaled embeddings, sinusoidal
positions from 0 and a SentencePiece tokenizer (MarianTokenizer), as ours. FSMT, fairseq's own port,
would need Moses + BPE instead of SentencePiece and offsets positions by padding_idx + 1; M2M100
(pre-LN only) offsets them too. Marian has no pre-LN: pre-LN models go to CTranslate2 only.

Conventions (pasero -> runtime):
- positions: pasero's sinusoidal table (fairseq's frequencies, sin half then cos half) from row
  `position_offset` for the first token: 0, or padding_idx + 1 as in fairseq for models imported from
  fairseq. Both runtimes store the table itself (its rows from that offset):
  CTranslate2's position encodings, Marian's `embed_positions` weights (Marian computes its own table
  with other frequencies, so a model re-saved by transformers' `save_pretrained`, which drops them,
  translates differently: re-export it from pasero instead).
- post-LN (fairseq's default) or pre-LN with final layer norms (`normalize_before`), embeddings scaled
  by sqrt(dim), relu or exact (erf) gelu, shared source/target embeddings, output tied to the target
  embeddings or not, LayerNorm eps 1e-5, no bias on the output projection.
- ids: the dictionary's order (fairseq's <s>=0 <pad>=1 </s>=2 <unk>=3); eos ends the source; the
  decoder starts with eos (or the target language's code for models trained with lang_code: decoder).
- search (`ctranslate2_translate`, `transformers_generate_kwargs`): a finished hypothesis is ranked by
  score / length ** len_penalty with eos counted in the length; eos among the best `beam_size` of
  the 2 * `beam_size` candidates finishes a hypothesis; a sentence stops with `beam_size` finished
  ones; <pad> is never produced and eos not before `min_len` tokens; a sentence of n source tokens
  (eos included) gets at most int(max_len_a * n + max_len_b) tokens before eos.

What differs, by construction of the runtimes:
- CTranslate2 (`ctranslate2_translate`): greedy search gives pasero's tokens. Beam search does too,
  except that (a) CTranslate2 cannot force eos at the maximum length, it stops there: a hypothesis
  that reaches the limit (an unfinished translation) is ranked without the eos pasero adds; (b) it
  removes the tokens it may not produce (eos before `min_len` tokens, <pad>) before the softmax,
  pasero (as fairseq) after it, so with `min_len` > 1 the scores, and some choices, differ; (c) it
  gives an empty translation to an empty input, where pasero translates the lone eos.
- transformers: `generate(**transformers_generate_kwargs(...))` is pasero's search, length limit
  included (`PaseroConstraints`). A plain `pipeline` or `generate` call takes the generation
  config: the model's beam size, length penalty and min_len, but one length limit for all (the
  model's max_positions) with eos forced at log-probability 0. transformers 5 has no translation
  pipeline: use generate.
- Marian's tokenizer runs SentencePiece alone, so the exported SentencePiece model does the leading
  space and whitespace clean-up itself (tabs and other non-space whitespace inside a line are not
  folded as pasero folds them). Inline casing, NFKC and decoder-side language codes are pasero's own:
  `--format hf` refuses them (CTranslate2 takes pieces: tokenize with pasero's tokenizer, saved
  beside the model). Inputs longer than max_positions: pasero truncates them, transformers fails.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pasero import search
from pasero.dictionary import SPECIALS
from pasero.errors import CheckpointError, ConfigError
from pasero.search_options import SearchOptions

if TYPE_CHECKING:
    from pasero.generator import TextGenerator
    from pasero.model import Transformer

logger = logging.getLogger(__name__)

FORMATS = ("ctranslate2", "hf")
INSTALL_HINT = "pip install -e '.[export]'"
CT2_PAD = "<blank>"  # CTranslate2's name for padding (its fairseq converter renames <pad> so)
TOLERANCE = 1e-3  # largest difference of log-probabilities between pasero and an export (float32)


def export(model_path: str | os.PathLike, fmt: str, output: str | os.PathLike, force: bool = False) -> Path:
    """Write the model at `model_path` (file or folder) to the folder `output` in format `fmt`.

    The folder appears only once complete and checked; an existing non-empty folder is replaced
    only with `force`."""
    from pasero.generator import TextGenerator

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    output = Path(output)
    if output.exists() and not force and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists: remove it or pass --force to replace it")
    _require(fmt)
    generator = TextGenerator.build(model_path, device="cpu", dtype="float32")
    _check_supported(generator, fmt)
    with _staging(output) as tmp:
        (_write_ctranslate2 if fmt == "ctranslate2" else _write_hf)(generator, tmp)
        _write_readme(tmp, output.name, generator, fmt)
    logger.info("exported %s to %s (%s)", generator.path, output, fmt)
    return output


def _require(fmt: str) -> None:
    """Import the runtime of `fmt` (an optional dependency) or say how to install it."""
    name = "ctranslate2" if fmt == "ctranslate2" else "transformers"
    try:
        importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"--format {fmt} needs the '{name}' package: {INSTALL_HINT}") from None


def _check_supported(generator: TextGenerator, fmt: str) -> None:
    """Refuse, before writing anything, what `fmt` cannot reproduce exactly."""
    cfg, where = generator.model.cfg, generator.path
    if fmt == "ctranslate2":
        return
    tokenizer = generator.tokenizer
    if cfg.normalize_before:
        raise ConfigError(f"{where}: transformers' Marian is post-LN only and this model is pre-LN "
                          "(normalize_before): export it with --format ctranslate2")
    if generator.source_dictionary != generator.dictionary:
        raise ConfigError(f"{where}: the model has separate source and target dictionaries, which this export's "
                          "Marian tokenizer does not handle: export it with --format ctranslate2")
    if tokenizer is None:
        raise ConfigError(f"{where}: the model has no SentencePiece tokenizer, which --format hf needs")
    if tokenizer.inline_case or tokenizer.settings.nfkc:
        feature = "inline casing" if tokenizer.inline_case else "NFKC normalization"
        raise ConfigError(f"{where}: the model's tokenizer uses {feature}, which Marian's tokenizer cannot "
                          "reproduce: export it with --format ctranslate2 and tokenize with pasero")
    if generator.lang_code == "decoder":
        raise ConfigError(f"{where}: Marian cannot start the decoder with a language code (lang_code: decoder): "
                          "export it with --format ctranslate2")


@contextlib.contextmanager
def _staging(output: Path) -> Iterator[Path]:
    """A temporary folder beside `output` that replaces it if the block succeeds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        yield tmp
        _plain_permissions(tmp)
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain_permissions(folder: Path) -> None:
    """What mkdir and open would have given (mkdtemp and some writers make private files)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


# -- the model's pieces --------------------------------------------------------------------------


def _tensor(x: Tensor) -> Tensor:
    return x.detach().float().contiguous().clone()


def _kv(attention: torch.nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Our fused key/value projection, split: k weight, v weight, k bias, v bias."""
    w, b = attention.kv_proj.weight, attention.kv_proj.bias
    d = w.size(1)
    return w[:d], w[d:], b[:d], b[d:]


def _output_weight(model: Transformer) -> Tensor:
    return model.output_proj.weight if model.output_proj is not None else model.tgt_embed.weight


def _plain_sentencepiece(generator: TextGenerator) -> bytes:
    """The tokenizer's SentencePiece model, set to do itself what pasero does around it (a leading
    space, whitespace clean-up), so that SentencePiece alone cuts text into pasero's pieces."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(generator.tokenizer._model_proto)
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    return proto.SerializeToString()


def _probes(generator: TextGenerator) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) pairs to compare an export with: sources made of unambiguous
    dictionary entries, targets the model's own greedy translations (eos included)."""
    d = generator.source_dictionary
    counts = Counter(d.symbols)
    ids = [i for i, s in enumerate(d.symbols) if i >= len(SPECIALS) and counts[s] == 1]
    if generator.lang_code == "source":
        ids = [i for i in ids if not d.symbols[i].startswith("<lang:")]
    step = max(len(ids) // 12, 1)
    sources = [ids[::step][:5], ids[1::step][:11]]
    if generator.lang_code == "source":
        sources = [[generator._lang_id, *s] for s in sources]
    sources = [s + [d.eos_idx] for s in sources]
    options = SearchOptions(beam_size=1, max_len_a=1.0, max_len_b=5)
    bos = torch.tensor(generator._lang_id) if generator.lang_code == "decoder" else None
    hyps = search.generate(generator.model, sources, options, bos=bos)
    return [(s, h[0].tokens.tolist()) for s, h in zip(sources, hyps, strict=True)]


def _pasero_log_probs(generator: TextGenerator, source: list[int], target: list[int]) -> Tensor:
    """Log-probability of each target token (eos included) under the pasero model."""
    first = generator._lang_id if generator.lang_code == "decoder" else generator.dictionary.eos_idx
    with torch.no_grad():
        logits = generator.model(torch.tensor([source]), torch.tensor([[first, *target[:-1]]]))
    return logits[0].float().log_softmax(-1).gather(1, torch.tensor(target)[:, None])[:, 0]


def _verify(generator: TextGenerator, fmt: str, score: Any) -> None:
    """Refuse an export whose log-probabilities on the probe translations are not pasero's."""
    worst = 0.0
    for source, target in _probes(generator):
        theirs = torch.as_tensor(score(source, target), dtype=torch.float)
        ours = _pasero_log_probs(generator, source, target)
        if theirs.shape != ours.shape:
            worst = float("inf")
            break
        worst = max(worst, float((theirs - ours).abs().max()))
    if not worst <= TOLERANCE:
        raise CheckpointError(f"{generator.path}: the {fmt} export does not reproduce the model (log-probabilities "
                              f"differ by {worst:.2g}); this version of its runtime is not supported")


# -- CTranslate2 ---------------------------------------------------------------------------------


def _write_ctranslate2(generator: TextGenerator, out: Path) -> None:
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    model, cfg = generator.model, generator.model.cfg
    activation = {"relu": common_spec.Activation.RELU, "gelu": common_spec.Activation.GELU}[cfg.activation]
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.heads, pre_norm=cfg.normalize_before, activation=activation)
    positions = _tensor(model.positions).numpy()
    for side, embedding, norm in ((spec.encoder, model.src_embed, model.encoder_norm),
                                  (spec.decoder, model.tgt_embed, model.decoder_norm)):
        (side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings).weight = \
            _tensor(embedding.weight).numpy()
        side.scale_embeddings = cfg.scale_embedding
        side.position_encodings.encodings = positions
        if cfg.normalize_before:
            _ct2_norm(side.layer_norm, norm)
    spec.decoder.projection.weight = _tensor(_output_weight(model)).numpy()
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

    _verify(generator, "ctranslate2", score)


def _ct2_norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _tensor(norm.weight).numpy(), _tensor(norm.bias).numpy()


def _ct2_linear(spec: Any, weight: Tensor, bias: Tensor | None) -> None:
    spec.weight = _tensor(weight).numpy()
    if bias is not None:
        spec.bias = _tensor(bias).numpy()


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


def max_length(options: SearchOptions, src_len: int, max_positions: int) -> int:
    """Tokens a source of `src_len` tokens (eos included) may get before eos: pasero's
    `search.max_lengths` for one sentence."""
    return max(0, min(int(options.max_len_a * src_len + options.max_len_b), max_positions - 1))


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


# -- transformers (Marian) -----------------------------------------------------------------------


def _hf_vocab(generator: TextGenerator) -> dict[str, int]:
    """Token -> id for Marian's vocab.json: each token maps to the id pasero encodes it with (a
    token listed twice: its last id), <unk> to the id of unknown tokens; a shadowed id gets an
    alias, so that every id decodes. Language codes become Marian's `>>xx<<`."""
    d = generator.dictionary
    vocab: dict[str, int] = {}
    for i, symbol in enumerate(d.symbols):
        if symbol.startswith("<lang:") and symbol.endswith(">"):
            symbol = f">>{symbol[6:-1]}<<"
        vocab[symbol] = i
    vocab["<unk>"] = d.unk_idx
    for i in sorted(set(range(len(d))) - set(vocab.values())):
        vocab[f"{d.symbols[i]}#{i}"] = i
    return dict(sorted(vocab.items(), key=lambda item: item[1]))


def _hf_state_dict(model: Transformer) -> dict[str, Tensor]:
    """Our weights under MarianMTModel's names; copies that transformers ties on load are left out."""
    cfg = model.cfg
    state: dict[str, Tensor] = {}
    if cfg.shared_embeddings:
        state["model.shared.weight"] = model.src_embed.weight
    if not cfg.shared_embeddings or not cfg.tied_output:  # transformers 5 ties these only with the output
        state["model.encoder.embed_tokens.weight"] = model.src_embed.weight
        state["model.decoder.embed_tokens.weight"] = model.tgt_embed.weight
    if not cfg.tied_output:
        state["lm_head.weight"] = model.output_proj.weight
    state["final_logits_bias"] = torch.zeros(1, model.tgt_embed.num_embeddings)
    for side in ("encoder", "decoder"):
        state[f"model.{side}.embed_positions.weight"] = model.positions
    for i, layer in enumerate(model.encoder_layers):
        prefix = f"model.encoder.layers.{i}."
        state.update(_hf_attention(prefix + "self_attn.", layer.self_attn))
        state.update(_hf_norm(prefix + "self_attn_layer_norm.", layer.attn_res.norm))
        state.update(_hf_ffn(prefix, layer.ffn, layer.ffn_res.norm))
    for i, layer in enumerate(model.decoder_layers):
        prefix = f"model.decoder.layers.{i}."
        state.update(_hf_attention(prefix + "self_attn.", layer.self_attn))
        state.update(_hf_norm(prefix + "self_attn_layer_norm.", layer.self_res.norm))
        state.update(_hf_attention(prefix + "encoder_attn.", layer.cross_attn))
        state.update(_hf_norm(prefix + "encoder_attn_layer_norm.", layer.cross_res.norm))
        state.update(_hf_ffn(prefix, layer.ffn, layer.ffn_res.norm))
    return {name: _tensor(t) for name, t in state.items()}


def _hf_attention(prefix: str, attention: torch.nn.Module) -> dict[str, Tensor]:
    k, v, k_bias, v_bias = _kv(attention)
    return {prefix + "q_proj.weight": attention.q_proj.weight, prefix + "q_proj.bias": attention.q_proj.bias,
            prefix + "k_proj.weight": k, prefix + "k_proj.bias": k_bias,
            prefix + "v_proj.weight": v, prefix + "v_proj.bias": v_bias,
            prefix + "out_proj.weight": attention.out_proj.weight, prefix + "out_proj.bias": attention.out_proj.bias}


def _hf_norm(prefix: str, norm: torch.nn.LayerNorm) -> dict[str, Tensor]:
    return {prefix + "weight": norm.weight, prefix + "bias": norm.bias}


def _hf_ffn(prefix: str, ffn: torch.nn.Module, norm: torch.nn.LayerNorm) -> dict[str, Tensor]:
    return {prefix + "fc1.weight": ffn.fc1.weight, prefix + "fc1.bias": ffn.fc1.bias,
            prefix + "fc2.weight": ffn.fc2.weight, prefix + "fc2.bias": ffn.fc2.bias,
            **_hf_norm(prefix + "final_layer_norm.", norm)}


def _write_hf(generator: TextGenerator, out: Path) -> None:
    import transformers
    from safetensors.torch import save_file

    model, cfg, d = generator.model, generator.model.cfg, generator.dictionary
    config = transformers.MarianConfig(
        vocab_size=len(d), decoder_vocab_size=len(d), d_model=cfg.embed_dim,
        encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
        encoder_attention_heads=cfg.heads, decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, decoder_ffn_dim=cfg.ffn_dim, activation_function=cfg.activation,
        max_position_embeddings=cfg.max_positions, scale_embedding=cfg.scale_embedding,
        share_encoder_decoder_embeddings=cfg.shared_embeddings, tie_word_embeddings=cfg.tied_output,
        dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation_dropout=cfg.activation_dropout,
        pad_token_id=d.pad_idx, eos_token_id=d.eos_idx, bos_token_id=None, decoder_start_token_id=d.eos_idx,
        forced_eos_token_id=None,  # Marian's default (0) would force <s>; the generation config forces eos
        architectures=["MarianMTModel"])
    config.save_pretrained(out)
    options = generator.options
    transformers.GenerationConfig(
        decoder_start_token_id=d.eos_idx, eos_token_id=d.eos_idx, pad_token_id=d.pad_idx,
        forced_eos_token_id=d.eos_idx, bad_words_ids=[[d.pad_idx]], num_beams=options.beam_size,
        length_penalty=options.len_penalty, early_stopping=True, min_new_tokens=options.min_len,
        max_length=cfg.max_positions + 1).save_pretrained(out)
    save_file(_hf_state_dict(model), out / "model.safetensors", metadata={"format": "pt"})

    spm_model, vocab = _plain_sentencepiece(generator), _hf_vocab(generator)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("source.spm", "target.spm"):
            (Path(tmp) / name).write_bytes(spm_model)
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")
        tokenizer = transformers.MarianTokenizer(
            str(Path(tmp) / "source.spm"), str(Path(tmp) / "target.spm"), str(Path(tmp) / "vocab.json"),
            source_lang=generator.source_lang, target_lang=generator.target_lang,
            model_max_length=cfg.max_positions, clean_up_tokenization_spaces=False)
        tokenizer.save_pretrained(out)

    with _quiet(transformers):
        exported = transformers.MarianMTModel.from_pretrained(out).eval()

    def score(source: list[int], target: list[int]) -> Tensor:
        with torch.no_grad():
            logits = exported(input_ids=torch.tensor([source]),
                              decoder_input_ids=torch.tensor([[d.eos_idx, *target[:-1]]])).logits
        return logits[0].log_softmax(-1).gather(1, torch.tensor(target)[:, None])[:, 0]

    _verify(generator, "hf", score)


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bar while the export is loaded back for its check."""
    hf_logging = transformers.utils.logging
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class PaseroConstraints:
    """A transformers logits processor that constrains each step as pasero's search does
    (`search.constrain`): no <pad>, no eos before `min_len` tokens, and only eos, with its own
    log-probability, once a row reached its sentence's maximum length.

    `max_lens`: per sentence of the batch; rows are sentences x beams, as generate() lays them out.
    """

    def __init__(self, max_lens: Sequence[int], min_len: int):
        self.max_lens, self.min_len = torch.as_tensor(max_lens, dtype=torch.long), min_len

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        step = input_ids.size(1) - 1  # generated tokens so far (the first input is the start token)
        rows = scores.size(0)
        sentence = torch.arange(rows, device=scores.device) // (rows // len(self.max_lens))
        force = self.max_lens.to(scores.device)[sentence].le(step)
        return search.constrain(scores.clone(), step, self.min_len, force if bool(force.any()) else None)


def transformers_generate_kwargs(options: SearchOptions, attention_mask: Tensor,
                                 max_positions: int) -> dict[str, Any]:
    """Keyword arguments of `generate()` under which an exported Marian model searches as pasero
    does, for a batch whose (right-padded) sources have this attention mask."""
    src_lens = attention_mask.sum(1).tolist()
    max_lens = [max_length(options, n, max_positions) for n in src_lens]
    return dict(num_beams=options.beam_size, length_penalty=options.len_penalty, early_stopping=options.beam_size > 1,
                do_sample=False, num_return_sequences=1, max_length=max(max_lens, default=0) + 2,  # start + eos
                min_new_tokens=0, forced_eos_token_id=None, bad_words_ids=None,
                logits_processor=[PaseroConstraints(max_lens, options.min_len)])


# -- usage notes written with each export ---------------------------------------------------------


def _write_readme(out: Path, name: str, generator: TextGenerator, fmt: str) -> None:
    """A README.md with the model's provenance and how to translate with it as pasero would."""
    o, cfg = generator.options, generator.model.cfg
    meta = {k: v for k, v in generator.meta.items() if k in ("checkpoint", "step", "params")}
    lines = [f"# {generator.source_lang or 'src'}-{generator.target_lang or 'tgt'} translation model "
             f"exported by pasero-export ({fmt})", "", "Provenance: " + json.dumps(meta), "",
             f"Search settings of the model: beam_size={o.beam_size} len_penalty={o.len_penalty} "
             f"max_len_a={o.max_len_a} max_len_b={o.max_len_b} min_len={o.min_len}.", ""]
    if fmt == "ctranslate2":
        prefix = ", target_prefix=[[LANG_TOKEN]]" if generator.lang_code == "decoder" else ""
        lines += ["```python", "import ctranslate2", "from pasero.tokenizer import Tokenizer",
                  f"tokenizer, translator = Tokenizer.load('{name}'), ctranslate2.Translator('{name}')",
                  "pieces = [tokenizer.tokenize(line).split() for line in lines]",
                  f"results = translator.translate_batch(pieces{prefix}, beam_size={o.beam_size}, "
                  f"length_penalty={o.len_penalty}, return_end_token=True, suppress_sequences=[['{CT2_PAD}']], "
                  "max_decoding_length=MAX_LEN)",
                  "text = [tokenizer.detokenize([t for t in r.hypotheses[0] if t != '</s>']) for r in results]",
                  "```", "",
                  f"MAX_LEN = int({o.max_len_a} * (len(source pieces) + 1) + {o.max_len_b}), at most "
                  f"{cfg.max_positions - 1}: pasero.export.ctranslate2_translate groups sources by length so.",
                  "Without pasero: `sentencepiece` encodes `' ' + ' '.join(line.split())` into the same pieces "
                  "(`spm.model`; not with inline casing or NFKC)."]
        if generator.lang_code == "source":
            lines.append("A multilingual model: start each source with the target language's token, e.g. <lang:en>.")
    else:
        lines += ["```python", "from transformers import pipeline",
                  f"translate = pipeline('translation', model='{name}')",
                  "translate(['A sentence.'])", "```", "",
                  "For pasero's per-sentence maximum length, pass "
                  "`**pasero.export.transformers_generate_kwargs(options, batch.attention_mask, "
                  f"{cfg.max_positions})` to `model.generate`."]
        if generator.lang_code == "source":
            lines.append("A multilingual model: start each input with the target language's code, e.g. `>>en<< `.")
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
