"""The Transformer's hyper-parameters and the named architectures, without torch.

Kept apart from the model so that reading and checking a config (the workflow at start-up,
`--help`, inference settings) does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pasero.errors import ConfigError, did_you_mean
from pasero.options import check_values, option


@dataclass
class TransformerConfig:
    """The model's hyper-parameters; defaults are transformer_base's (see ARCHITECTURES)."""

    embed_dim: int = option(512, "model (embedding) dimension", gt=0)
    ffn_dim: int = option(2048, "hidden dimension of the feed-forward layers", gt=0)
    encoder_layers: int = option(6, "encoder layers", gt=0)
    decoder_layers: int = option(6, "decoder layers", gt=0)
    heads: int = option(8, "attention heads (must divide embed_dim)", gt=0)
    dropout: float = option(0.1, "dropout of the residual connections and embeddings", min=0, lt=1)
    attention_dropout: float = option(0.0, "dropout of the attention probabilities", min=0, lt=1)
    activation_dropout: float = option(0.0, "dropout after the feed-forward activation", min=0, lt=1)
    activation: str = option("relu", "feed-forward activation", choices=("relu", "gelu"))
    normalize_before: bool = option(False, "pre-LN instead of post-LN (more stable for deep models)")
    shared_embeddings: bool = option(False, "one embedding matrix for source and target (joint dictionary)")
    tied_output: bool = option(True, "output projection = target embedding matrix")
    max_positions: int = option(1024, "longest sentence the position table covers (tokens)", gt=0)
    scale_embedding: bool = option(True, "multiply embeddings by sqrt(embed_dim)")
    position_offset: int = option(0, "row of the sinusoidal position table that the first token gets (fairseq's "
                                  "models: padding_idx + 1 = 2; set by pasero-import-fairseq)", min=0)


ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Small enough to train on a laptop CPU in minutes (tests and the toy corpus).
    "transformer_tiny": dict(embed_dim=128, ffn_dim=512, encoder_layers=2, decoder_layers=2, heads=4),
    # fairseq's transformer_iwslt_de_en: the usual IWSLT / TED model.
    "transformer_small": dict(embed_dim=512, ffn_dim=1024, encoder_layers=6, decoder_layers=6, heads=4),
    "transformer_base": dict(embed_dim=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8),
    "transformer_big": dict(embed_dim=1024, ffn_dim=4096, encoder_layers=6, decoder_layers=6, heads=16,
                            dropout=0.3),
}

DEFAULT_ARCH = "transformer_small"
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TransformerConfig))
# What a checkpoint written before a field existed means by its absence.
CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TransformerConfig)}


def build_config(arch: str, **overrides: Any) -> TransformerConfig:
    """A named architecture with any field overridden; typos are errors with suggestions."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHITECTURES)}")
    for key in overrides:
        if key not in CONFIG_FIELDS:
            hint = did_you_mean(key, CONFIG_FIELDS)
            raise ConfigError(f"unknown model option '{key}'" + (f" ({hint})" if hint else ""))
    cfg = TransformerConfig(**{**ARCHITECTURES[arch], **overrides})
    check_values(cfg)
    if cfg.embed_dim % cfg.heads:
        raise ConfigError(f"embed_dim ({cfg.embed_dim}) must be a multiple of heads ({cfg.heads})")
    return cfg
