"""fairseq checkpoints in: a fairseq `transformer` model (any of its architectures: transformer,
transformer_iwslt_de_en, transformer_wmt_en_de, ..., post-LN or pre-LN, shared or separate
embeddings and dictionaries) as a self-contained pasero model that decodes as fairseq-generate does.

    model = import_fairseq("checkpoint_best.pt", "data-bin/iwslt14.de-en", "model.pt", spm="spm.model")

What is mapped, and why it gives fairseq's numbers:
- weights: fairseq's separate k_proj/v_proj become pasero's fused kv_proj (keys first), its
  `in_proj_weight` of older versions is split into q/k/v; layer norms map one to one
  (self_attn_layer_norm, encoder_attn_layer_norm, final_layer_norm; the stack's layer_norm when
  normalize_before). Anything the pasero model cannot compute (learned positions, layernorm_embedding,
  adaptive softmax, different encoder/decoder widths...) is refused, naming the fairseq key or option.
- positions: fairseq numbers the first token padding_idx + 1 (= 2) in its sinusoidal table; the
  imported model gets `position_offset: 2`, so the table rows are the same.
- dictionaries: the task's dict.{src}.txt and dict.{tgt}.txt (or one dict.txt) as they are, their
  sizes checked against the embedding matrices; separate ones stay separate.
- decoding defaults: fairseq-generate's (beam 5, max_len_a 0, max_len_b 200, len_penalty 1), so
  that `pasero-decode model.pt` and `fairseq-generate` with default options search alike.

Reading: a fairseq checkpoint pickles more than tensors (argparse.Namespace, fairseq's and
omegaconf's classes in its training state), which `torch.load(weights_only=True)` refuses. It is
read with an unpickler that builds tensors and plain containers and turns every other class into
an inert placeholder (`_Opaque`): no code named by the file runs, and fairseq need not be installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pasero import __version__
from pasero.checkpoints import save_model
from pasero.dictionary import Dictionary
from pasero.errors import CheckpointError, ConfigError, DataError
from pasero.model import Transformer
from pasero.model_config import TransformerConfig
from pasero.tokenizer import Tokenizer, TokenizerSettings

# fairseq-generate's defaults (fairseq/dataclass/configs.py, GenerationConfig).
FAIRSEQ_GENERATE = {"beam_size": 5, "nbest": 1, "len_penalty": 1.0, "max_len_a": 0.0, "max_len_b": 200, "min_len": 1}
# Options of fairseq's transformer that pasero's model does not compute (each must be off/unset).
UNSUPPORTED = ("encoder_learned_pos", "decoder_learned_pos", "layernorm_embedding", "no_token_positional_embeddings",
               "adaptive_softmax_cutoff", "cross_self_attention", "no_decoder_final_norm", "adaptive_input",
               "tie_adaptive_weights", "encoder_layers_to_keep", "decoder_layers_to_keep")
# State-dict entries that hold no weights: versions and the sinusoidal tables' placeholders.
IGNORED = ("version", "_float_tensor")
# fairseq 0.12's encoder layers also hold copies of their weights for PyTorch's BetterTransformer
# (zeros until an inference load fills them), under the layer's own names: the weights are the others.
BETTER_TRANSFORMER = re.compile(r"encoder\.layers\.\d+\.(in_proj|out_proj|fc1|fc2)_(weight|bias)")


# Reading -----------------------------------------------------------------------------------------

class _Opaque:
    """A stand-in for an object of a class the checkpoint names that is not plain data: built
    without running that class's code, its pickled content kept for inspection only."""

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state, self.items = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)


_ALLOWED = {("collections", "OrderedDict"): OrderedDict, ("argparse", "Namespace"): argparse.Namespace,
            ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("torch", "Size"): torch.Size,
            ("torch", "device"): torch.device}
_REBUILD = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch._utils" and name in _REBUILD:
            return getattr(torch._utils, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (_Opaque,), {"qualname": f"{module}.{name}"})


class _SafePickle:
    """The `pickle_module` torch.load reads the checkpoint with."""

    Unpickler = _Unpickler
    load = staticmethod(lambda f, **kw: _Unpickler(f, **kw).load())


def read_fairseq_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's dict (model weights, args/cfg), without running code the file names."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_SafePickle)
    except Exception as e:  # zip, pickle and torch errors all mean: not a readable checkpoint
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), Mapping):
        raise CheckpointError(f"{path}: not a fairseq checkpoint (no 'model' state dict)")
    return ckpt


def fairseq_args(ckpt: Mapping[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The model and task options, flat: `args` (fairseq < 0.10) or `cfg.model` + `cfg.task` (>= 0.10,
    where cfg.model is itself an argparse.Namespace for the legacy transformer architectures)."""
    def plain(value: Any) -> dict[str, Any]:
        if isinstance(value, argparse.Namespace):
            return vars(value)
        return dict(value) if isinstance(value, Mapping) else {}

    if ckpt.get("args") is not None:
        return plain(ckpt["args"])
    cfg = ckpt.get("cfg")
    if isinstance(cfg, _Opaque):
        raise CheckpointError(f"{path}: its cfg is a pickled {cfg.qualname}, not plain data; load it with fairseq "
                              "and save it again (fairseq's checkpoint_utils.save_state converts cfg to a dict)")
    if not isinstance(cfg, Mapping) or not plain(cfg.get("model")):
        raise CheckpointError(f"{path}: no model options (neither 'args' nor 'cfg.model'): not a fairseq checkpoint")
    return {**plain(cfg.get("task")), **_flatten(plain(cfg["model"]))}


def _flatten(options: dict[str, Any]) -> dict[str, Any]:
    """fairseq's dataclass TransformerConfig nests encoder/decoder options (encoder.embed_dim);
    the legacy names are flat (encoder_embed_dim)."""
    flat = dict(options)
    for side in ("encoder", "decoder"):
        nested = options.get(side)
        if isinstance(nested, Mapping):
            flat.update({f"{side}_{key}": value for key, value in nested.items() if f"{side}_{key}" not in options})
            if "ffn_embed_dim" in nested:
                flat.setdefault(f"{side}_ffn_embed_dim", nested["ffn_embed_dim"])
    return flat


# Converting --------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Weights:
    """fairseq's state dict, consumed key by key so that anything left over is reported."""

    state: dict[str, Tensor]
    path: str

    def take(self, key: str) -> Tensor:
        if key not in self.state:
            raise CheckpointError(f"{self.path}: no '{key}' in the model weights: not a fairseq transformer "
                                  "checkpoint, or an architecture pasero cannot import")
        return self.state.pop(key).float()

    def has(self, key: str) -> bool:
        return key in self.state

    def leftover(self) -> list[str]:
        return sorted(k for k in self.state if not k.endswith(IGNORED) and not BETTER_TRANSFORMER.fullmatch(k))


def _attention(w: _Weights, src: str, dst: str) -> dict[str, Tensor]:
    if w.has(f"{src}.in_proj_weight"):  # fairseq < 0.9: one (3D, D) projection
        q, k, v = w.take(f"{src}.in_proj_weight").chunk(3)
        qb, kb, vb = w.take(f"{src}.in_proj_bias").chunk(3)
    else:
        q, k, v = (w.take(f"{src}.{n}_proj.weight") for n in "qkv")
        qb, kb, vb = (w.take(f"{src}.{n}_proj.bias") for n in "qkv")
    return {f"{dst}.q_proj.weight": q, f"{dst}.q_proj.bias": qb,
            f"{dst}.kv_proj.weight": torch.cat([k, v]), f"{dst}.kv_proj.bias": torch.cat([kb, vb]),
            f"{dst}.out_proj.weight": w.take(f"{src}.out_proj.weight"),
            f"{dst}.out_proj.bias": w.take(f"{src}.out_proj.bias")}


def _linear_or_norm(w: _Weights, src: str, dst: str) -> dict[str, Tensor]:
    return {f"{dst}.weight": w.take(f"{src}.weight"), f"{dst}.bias": w.take(f"{src}.bias")}


def _layer(w: _Weights, src: str, dst: str, decoder: bool) -> dict[str, Tensor]:
    out = {**_attention(w, f"{src}.self_attn", f"{dst}.self_attn"),
           **_linear_or_norm(w, f"{src}.self_attn_layer_norm", f"{dst}.{'self' if decoder else 'attn'}_res.norm"),
           **_linear_or_norm(w, f"{src}.fc1", f"{dst}.ffn.fc1"), **_linear_or_norm(w, f"{src}.fc2", f"{dst}.ffn.fc2"),
           **_linear_or_norm(w, f"{src}.final_layer_norm", f"{dst}.ffn_res.norm")}
    if decoder:
        out.update(_attention(w, f"{src}.encoder_attn", f"{dst}.cross_attn"))
        out.update(_linear_or_norm(w, f"{src}.encoder_attn_layer_norm", f"{dst}.cross_res.norm"))
    return out


def _count_layers(state: Mapping[str, Tensor], side: str) -> int:
    prefix = f"{side}.layers."
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


def model_config(args: Mapping[str, Any], state: Mapping[str, Tensor], path: str) -> TransformerConfig:
    """Pasero's config of the fairseq model: sizes from the weights, the rest from its options."""
    for name in UNSUPPORTED:
        if args.get(name) not in (None, False, 0, ""):
            raise CheckpointError(f"{path}: fairseq option {name}={args[name]} is not supported by pasero's model")
    enc, dec = state["encoder.embed_tokens.weight"], state["decoder.embed_tokens.weight"]
    if enc.size(1) != dec.size(1):
        raise CheckpointError(f"{path}: encoder and decoder widths differ ({enc.size(1)} vs {dec.size(1)}); "
                              "pasero's model has one embed_dim")
    pre = [bool(args.get(f"{side}_normalize_before", False)) for side in ("encoder", "decoder")]
    if pre[0] != pre[1]:
        raise CheckpointError(f"{path}: encoder_normalize_before={pre[0]} but decoder_normalize_before={pre[1]}; "
                              "pasero's model is pre-LN or post-LN on both sides")
    ffn = [state[f"{side}.layers.0.fc1.weight"].size(0) for side in ("encoder", "decoder")]
    heads = [int(args.get(f"{side}_attention_heads", 8)) for side in ("encoder", "decoder")]
    if ffn[0] != ffn[1] or heads[0] != heads[1]:
        raise CheckpointError(f"{path}: encoder and decoder differ in ffn size {ffn} or heads {heads}; pasero's "
                              "model has one ffn_dim and one number of heads")
    shared = bool(args.get("share_all_embeddings", False))
    return TransformerConfig(
        embed_dim=enc.size(1), ffn_dim=ffn[0], encoder_layers=_count_layers(state, "encoder"),
        decoder_layers=_count_layers(state, "decoder"), heads=heads[0], dropout=float(args.get("dropout", 0.1)),
        attention_dropout=float(args.get("attention_dropout", 0.0)),
        activation_dropout=float(args.get("activation_dropout", args.get("relu_dropout", 0.0)) or 0.0),
        activation=_activation(args, path), normalize_before=pre[0], shared_embeddings=shared,
        tied_output=shared or bool(args.get("share_decoder_input_output_embed", False)),
        max_positions=int(max(args.get("max_source_positions", 1024), args.get("max_target_positions", 1024))),
        scale_embedding=not args.get("no_scale_embedding", False), position_offset=Dictionary.pad_idx + 1)


def _activation(args: Mapping[str, Any], path: str) -> str:
    name = str(args.get("activation_fn", "relu"))
    if name not in ("relu", "gelu"):
        raise CheckpointError(f"{path}: fairseq activation_fn={name} is not supported (pasero has relu and gelu)")
    return name


def convert_weights(state: Mapping[str, Tensor], cfg: TransformerConfig, path: str) -> dict[str, Tensor]:
    """fairseq's TransformerModel state dict -> pasero's Transformer state dict."""
    w = _Weights(dict(state), path)
    # With shared embeddings both names hold the one matrix, in fairseq's state dict as in pasero's.
    out = {"src_embed.weight": w.take("encoder.embed_tokens.weight"),
           "tgt_embed.weight": w.take("decoder.embed_tokens.weight")}
    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(n):
            out.update(_layer(w, f"{side}.layers.{i}", f"{side}_layers.{i}", side == "decoder"))
        if cfg.normalize_before:
            out.update(_linear_or_norm(w, f"{side}.layer_norm", f"{side}_norm"))
    if w.has("decoder.output_projection.weight"):  # fairseq >= 0.10 (the tied embeddings again when tied)
        projection = w.take("decoder.output_projection.weight")
        if not cfg.tied_output:
            out["output_proj.weight"] = projection
    elif not cfg.tied_output:
        out["output_proj.weight"] = w.take("decoder.embed_out")
    if leftover := w.leftover():
        raise CheckpointError(f"{path}: weights pasero's model has no place for: {', '.join(leftover[:5])}"
                              f"{' ...' if len(leftover) > 5 else ''} (an architecture pasero cannot import)")
    return out


# Dictionaries ------------------------------------------------------------------------------------

def find_dictionaries(dict_dir: str | os.PathLike, source_lang: str | None,
                      target_lang: str | None) -> tuple[Path, Path]:
    """The task's source and target dictionary files: dict.{src}.txt and dict.{tgt}.txt (fairseq-preprocess
    writes both, identical with --joined-dictionary), else one dict.txt for both."""
    folder = Path(dict_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder (--dict-dir: the fairseq data folder with dict.*.txt)")
    if source_lang and target_lang:
        paths = folder / f"dict.{source_lang}.txt", folder / f"dict.{target_lang}.txt"
        if all(p.is_file() for p in paths):
            return paths
    if (folder / "dict.txt").is_file():
        return folder / "dict.txt", folder / "dict.txt"
    found = sorted(p.name for p in folder.glob("dict.*.txt"))
    langs = (f"{source_lang}-{target_lang}" if source_lang and target_lang
             else "unknown (pass --source-lang/--target-lang)")
    raise ConfigError(f"{folder}: no dict.{{src}}.txt/dict.{{tgt}}.txt for the languages {langs} nor a dict.txt "
                      f"(found: {', '.join(found) or 'none'})")


def _load_dictionary(path: Path, embedding: Tensor, side: str, ckpt_path: str) -> Dictionary:
    dictionary = Dictionary.load(path)
    if len(dictionary) != embedding.size(0):
        raise ConfigError(f"{path} has {len(dictionary)} symbols (specials included) but the model's {side} "
                          f"embeddings have {embedding.size(0)} rows ({ckpt_path}): the dictionary of another model?")
    return dictionary


# The command -------------------------------------------------------------------------------------

def import_fairseq(checkpoint: str | os.PathLike, dict_dir: str | os.PathLike, output: str | os.PathLike,
                   spm: str | os.PathLike | None = None, source_lang: str | None = None,
                   target_lang: str | None = None) -> dict[str, Any]:
    """Write `output`, a pasero model of the fairseq checkpoint; returns its checkpoint dict."""
    path = str(checkpoint)
    ckpt = read_fairseq_checkpoint(checkpoint)
    args = fairseq_args(ckpt, path)
    state = {k: v for k, v in ckpt["model"].items() if isinstance(v, Tensor)}
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "encoder.layers.0.fc1.weight",
                "decoder.layers.0.fc1.weight"):
        if key not in state:
            raise CheckpointError(f"{path}: no '{key}' in the model weights: not a fairseq transformer checkpoint")
    source_lang, target_lang = source_lang or args.get("source_lang"), target_lang or args.get("target_lang")
    cfg = model_config(args, state, path)
    src_path, tgt_path = find_dictionaries(dict_dir, source_lang, target_lang)
    src_dict = _load_dictionary(src_path, state["encoder.embed_tokens.weight"], "encoder", path)
    tgt_dict = _load_dictionary(tgt_path, state["decoder.embed_tokens.weight"], "decoder", path)
    model = Transformer(cfg, len(src_dict), len(tgt_dict))
    model.load_state_dict(convert_weights(state, cfg, path))
    out = {"model": model.state_dict(), "model_config": dataclasses.asdict(cfg), "arch": args.get("arch"),
           "dictionary": list(tgt_dict.symbols), "tokenizer": _tokenizer(spm),
           "inference": {**FAIRSEQ_GENERATE, "source_lang": source_lang, "target_lang": target_lang},
           "meta": {"imported_from": str(Path(checkpoint).resolve()), "fairseq_arch": args.get("arch"),
                    "params": model.num_parameters(), "pasero_version": __version__}}
    if src_dict != tgt_dict:
        out["source_dictionary"] = list(src_dict.symbols)
    save_model(out, output)
    return out


def _tokenizer(spm: str | os.PathLike | None) -> dict[str, Any] | None:
    """The SentencePiece model the fairseq data was encoded with (fairseq's --bpe sentencepiece: pieces
    joined by spaces, no other normalization than the model's own)."""
    if spm is None:
        return None
    path = Path(spm)
    if not path.is_file():
        raise ConfigError(f"{path}: no such SentencePiece model (--spm)")
    try:
        tokenizer = Tokenizer(path.read_bytes(), TokenizerSettings(vocab_size=0))
    except DataError as e:
        raise ConfigError(f"{path}: {e} (--spm needs the .model file of sentencepiece)") from None
    tokenizer.settings.vocab_size = len(tokenizer)
    return tokenizer.to_state()
