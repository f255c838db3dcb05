"""Text in, translations out: a trained model with its tokenizer, dictionary and decoding defaults.

    generator = TextGenerator.build("results/toy/de-en/model.pt", beam_size=4)
    generator.decode("Ein kleiner Test.")  # -> [[{"detok": "A small test.", "score": ..., ...}]]

A checkpoint is self-contained (weights, config, dictionary, tokenizer, decoding defaults), so
this is all that is needed to translate. Input sentences are sorted by length and cut into
batches of at most `batch_size` source tokens (little padding, few wasted steps); results come
back in input order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from pasero import checkpoints, search
from pasero.batching import make_batches
from pasero.devices import resolve_device, resolve_dtype
from pasero.dictionary import Dictionary
from pasero.errors import CheckpointError, ConfigError
from pasero.model import Transformer
from pasero.options import updated
from pasero.search_options import DecodeOptions, SearchOptions
from pasero.tokenizer import Tokenizer, lang_token
from pasero.train_config import experiment_settings

logger = logging.getLogger(__name__)


def model_defaults(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    """Decoding defaults saved with the model, and an `inference.yaml` beside it, which wins (a
    user can edit it to change the defaults without rewriting the checkpoint)."""
    defaults = dict(ckpt.get("inference") or {})
    yaml_path = path.parent / "inference.yaml"
    if yaml_path.is_file():
        try:
            defaults.update(yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {})
        except yaml.YAMLError as e:
            raise ConfigError(f"{yaml_path}: invalid YAML ({e.__class__.__name__})") from None
    return defaults


def check_finite(model: torch.nn.Module, path: Path) -> None:
    """A model with NaN or inf weights translates nothing sensible and fails deep in the search:
    refuse it at load time, naming the first damaged parameter."""
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise CheckpointError(f"{path}: the weights hold NaN or inf values (first in '{name}'); "
                                  "the training diverged or the file is damaged: select another checkpoint")


class TextGenerator:
    def __init__(self, model: Transformer, dictionary: Dictionary, tokenizer: Tokenizer | None,
                 options: SearchOptions, path: Path | None = None, inference: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None, batch_size: int = DecodeOptions.batch_size,
                 source_dictionary: Dictionary | None = None):
        """Prefer `build`; `inference` holds the model's language codes and BLEU tokenization,
        `meta` its provenance (training steps, time...); `batch_size` counts source tokens.
        `dictionary` is the target side's, and the source side's too unless `source_dictionary` is given
        (models imported from fairseq with separate dictionaries)."""
        self.model, self.dictionary, self.tokenizer, self.options = model, dictionary, tokenizer, options
        self.source_dictionary = source_dictionary or dictionary
        self.batch_size = batch_size
        self.path, self._meta = path, dict(meta or {})
        self.device = next(model.parameters()).device
        inference = inference or {}
        self.source_lang, self.target_lang = inference.get("source_lang"), inference.get("target_lang")
        self.bleu_tok = inference.get("bleu_tok") or "13a"
        self.lang_code = inference.get("lang_code") or "none"  # how the model is told the target language
        self.lang_pairs = inference.get("lang_pairs")  # the directions of a multilingual model
        self._lang_id = self._target_code() if self.lang_code != "none" else None
        # SentencePiece id -> dictionary id, to encode whole batches without going through strings.
        self._piece_ids = (np.array([self.source_dictionary.index(p) for p in tokenizer.pieces], dtype=np.int64)
                           if tokenizer is not None else None)

    def _target_code(self) -> int:
        """The dictionary id of the target language's code token, which a multilingual model needs."""
        known = sorted({pair.split("-")[1] for pair in self.lang_pairs or []})
        if not self.target_lang:
            raise ConfigError(f"{self.path}: a multilingual model needs the target language (-t / target_lang; "
                              f"it was trained to produce {', '.join(known) or 'several'})")
        token = lang_token(self.target_lang)
        if token not in self.dictionary:
            raise ConfigError(f"{self.path}: the model has no language code for '{self.target_lang}' "
                              f"(it was trained to produce {', '.join(known)})")
        return self.dictionary.index(token)

    @property
    def zero_shot(self) -> bool:
        """Whether the direction being decoded was not among a multilingual model's training directions."""
        return bool(self.lang_pairs) and f"{self.source_lang}-{self.target_lang}" not in self.lang_pairs

    @classmethod
    def build(cls, path: str | Path, device: str = "auto", dtype: str = "auto", batch_size: int | None = None,
              source_lang: str | None = None, target_lang: str | None = None, **options: Any) -> TextGenerator:
        """Load a model file or folder (model.pt, else checkpoint_best.pt, else checkpoint_last.pt).

        `options` (SearchOptions fields) override the model's decoding defaults; the languages (needed
        by multilingual models) override those the model was trained with.
        """
        torch_device = resolve_device(device)
        path = checkpoints.resolve_model_path(path)
        model, ckpt = checkpoints.load_model(path, torch_device)
        check_finite(model, path)
        torch_dtype = resolve_dtype(dtype, torch_device)
        if dtype not in ("auto", "float32") and torch_dtype == torch.float32:
            logger.warning("dtype %s ignored on %s: decoding in float32", dtype, torch_device)
        model = model.to(torch_dtype).eval()
        dictionary = Dictionary.from_symbols(ckpt["dictionary"])
        separate = ckpt.get("source_dictionary")  # models imported from fairseq
        source_dictionary = Dictionary.from_symbols(separate) if separate else dictionary
        for side, d, embed in (("target", dictionary, model.tgt_embed), ("source", source_dictionary, model.src_embed)):
            if len(d) != embed.num_embeddings:
                raise CheckpointError(f"{path}: {side} dictionary of {len(d)} symbols does not match the model "
                                      f"({embed.num_embeddings})")
        tokenizer = Tokenizer.from_state(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
        inference = model_defaults(ckpt, path)
        inference.update({k: v for k, v in (("source_lang", source_lang), ("target_lang", target_lang)) if v})
        defaults = {k: v for k, v in inference.items() if k in SearchOptions.__dataclass_fields__}
        search_options = updated(updated(SearchOptions(), f"{path} (inference settings)", **defaults),
                                 "decoding options", **options)
        batch_size = updated(DecodeOptions(), "decoding options", batch_size=batch_size).batch_size
        meta = {**(ckpt.get("meta") or {}), **({"step": ckpt["step"]} if "step" in ckpt else {}),
                "training": experiment_settings(ckpt.get("train_config") or {})}
        return cls(model, dictionary, tokenizer, search_options, path, inference, meta,  # the rest of ckpt is freed
                   batch_size, source_dictionary)

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance of the model: checkpoint path (relative to the current folder when inside it,
        so that results moved to another machine still name it), training steps, time and settings,
        parameters."""
        meta = {"params": self.model.num_parameters(), **self._meta}
        return {"checkpoint": _shown_path(self.path) if self.path else None, **meta}

    # Text <-> ids ------------------------------------------------------------------------------

    def tokenize(self, line: str) -> str:
        """The pieces the model sees (space-separated); without tokenizer the input is already tokenized."""
        return self.tokenizer.tokenize(line) if self.tokenizer is not None else " ".join(line.split())

    def encode(self, lines: Sequence[str]) -> list[np.ndarray]:
        """Dictionary ids of each line, eos appended, cut to the model's maximum source length."""
        if self.tokenizer is not None:
            eos = self.source_dictionary.eos_idx
            encoded = [np.append(self._piece_ids[ids], eos) if ids else np.array([eos])
                       for ids in self.tokenizer.encode_batch(list(lines))]
        else:
            encoded = [self.source_dictionary.encode(line) for line in lines]
        if self.lang_code == "source":  # the target language's code starts the source (Pasero)
            encoded = [np.concatenate([[self._lang_id], ids]) for ids in encoded]
        limit = self.model.cfg.max_positions
        for i, ids in enumerate(encoded):
            if len(ids) > limit:
                logger.warning("input %d has %d tokens: truncated to the model's max_positions (%d)",
                               i, len(ids), limit)
                encoded[i] = np.append(ids[:limit - 1], self.dictionary.eos_idx)
        return encoded

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """Hypothesis ids -> pieces, eos and padding removed."""
        return self.dictionary.decode(ids).split()

    def detokenize(self, pieces: Sequence[str]) -> str:
        return self.tokenizer.detokenize(pieces) if self.tokenizer is not None else " ".join(pieces)

    # Decoding ----------------------------------------------------------------------------------

    def decode(self, *sentences: str | Sequence[str], return_scores: bool = False, return_attention: bool = False,
               batch_size: int | None = None, progress: Callable[[int], Any] | None = None,
               **options: Any) -> list[list[dict[str, Any]]]:
        """Translate `sentences` (strings, or one list of them); per input, its n-best list of dicts:
        tokens (pieces), detok (text), score (sum of log-probs), normalized_score (what the search
        ranks by) and, on request, positional_scores (per token, eos included) and attention
        (target x source tensor, eos included)."""
        if len(sentences) == 1 and not isinstance(sentences[0], str):
            sentences = tuple(sentences[0])
        opts = updated(self.options, "decoding options", **options)
        return self.decode_ids(self.encode(sentences), opts, return_scores, return_attention, batch_size, progress)

    def decode_ids(self, encoded: Sequence[np.ndarray], opts: SearchOptions | None = None,
                   return_scores: bool = False, return_attention: bool = False,
                   batch_size: int | None = None, progress: Callable[[int], Any] | None = None,
                   ) -> list[list[dict[str, Any]]]:
        """`progress` is called with the number of sentences of each batch once it is decoded."""
        opts = opts or self.options
        sizes = np.array([len(ids) for ids in encoded], dtype=np.int64)
        order = np.argsort(sizes, kind="stable")
        results: list[list[dict[str, Any]]] = [[] for _ in encoded]
        bos = torch.tensor(self._lang_id) if self.lang_code == "decoder" else None  # fairseq's --decoder-langtok
        for n, batch in enumerate(make_batches(order, sizes, sizes, batch_size or self.batch_size)):
            src = search.collate_source([encoded[i] for i in batch], self.dictionary.pad_idx).to(self.device)
            # a seed makes sampling repeatable, yet with different random draws per batch
            batch_opts = opts if opts.seed is None else dataclasses.replace(opts, seed=opts.seed + n)
            hyps = search.generate(self.model, src, batch_opts, need_attention=return_attention, bos=bos)
            for i, nbest in zip(batch.tolist(), hyps, strict=True):
                results[i] = [self._to_dict(h, return_scores, return_attention) for h in nbest]
            if progress is not None:
                progress(len(batch))
        return results

    def _to_dict(self, hyp: search.Hypothesis, return_scores: bool, return_attention: bool) -> dict[str, Any]:
        pieces = self.pieces(hyp.tokens.tolist())
        out = {"tokens": pieces, "detok": self.detokenize(pieces), "score": hyp.score,
               "normalized_score": hyp.normalized_score}
        if return_scores:
            out["positional_scores"] = hyp.positional_scores.tolist()
        if return_attention:
            out["attention"] = hyp.attention
        return out


def _shown_path(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else str(resolved)
