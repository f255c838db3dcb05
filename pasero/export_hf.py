"""Hugging Face transformers export: a MarianMTModel folder with its MarianTokenizer (see pasero.export
for what all exports share), and `transformers_generate_kwargs`, under which `generate` searches as
pasero does.

transformers' architecture is Marian (MarianMTModel): post-LN, scaled embeddings, sinusoidal
positions (a table it takes as weights) and a SentencePiece tokenizer (MarianTokenizer), as ours.
FSMT, fairseq's own port, would need Moses + BPE instead of SentencePiece and offsets positions by
padding_idx + 1; M2M100 (pre-LN only) offsets them too. Marian has no pre-LN: pre-LN models go to
CTranslate2 only.

What differs, by construction of the runtime:
- `generate(**transformers_generate_kwargs(...))` is pasero's search, length limit
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
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pasero import search
from pasero.errors import ConfigError
from pasero.export import detached, max_length, split_kv, verify
from pasero.search_options import SearchOptions

if TYPE_CHECKING:
    from pasero.generator import TextGenerator
    from pasero.model import Transformer


def check_supported(generator: TextGenerator) -> None:
    """Refuse, before writing anything, what Marian cannot reproduce exactly."""
    cfg, where = generator.model.cfg, generator.path
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


def _plain_sentencepiece(generator: TextGenerator) -> bytes:
    """The tokenizer's SentencePiece model, set to do itself what pasero does around it (a leading
    space, whitespace clean-up), so that SentencePiece alone cuts text into pasero's pieces."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(generator.tokenizer._model_proto)
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    return proto.SerializeToString()


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
    return {name: detached(t) for name, t in state.items()}


def _hf_attention(prefix: str, attention: torch.nn.Module) -> dict[str, Tensor]:
    k, v, k_bias, v_bias = split_kv(attention)
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


def write(generator: TextGenerator, out: Path) -> None:
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

    verify(generator, "hf", score)


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


def usage(generator: TextGenerator, name: str) -> list[str]:
    """How to translate with the export as pasero would (its README)."""
    lines = ["```python", "from transformers import pipeline", f"translate = pipeline('translation', model='{name}')",
             "translate(['A sentence.'])", "```", "",
             "For pasero's per-sentence maximum length, pass "
             "`**pasero.export_hf.transformers_generate_kwargs(options, batch.attention_mask, "
             f"{generator.model.cfg.max_positions})` to `model.generate`."]
    if generator.lang_code == "source":
        lines.append("A multilingual model: start each input with the target language's code, e.g. `>>en<< `.")
    return lines
