"""The Transformer's hyper-parameters and the named architectures, without torch.

Kept apart from the model so that reading and checking a config (the workflow at start-up,
`--help`, inference settings) does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pasero.errors import ConfigError, did_you_mean


@dataclass
class TransformerConfig:
    embed_dim: int = 512
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    heads: int = 8
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation: str = "relu"
    normalize_before: bool = False  # pre-LN when True (more stable for deep models)
    shared_embeddings: bool = False  # one embedding matrix for source and target (joint vocabulary)
    tied_output: bool = True  # output projection = target embedding matrix
    max_positions: int = 1024
    scale_embedding: bool = True  # multiply embeddings by sqrt(embed_dim)


ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Small enough to train on a laptop CPU in minutes (tests and the toy corpus).
    "transformer_tiny": dict(embed_dim=128, ffn_dim=512, encoder_layers=2, decoder_layers=2, heads=4),
    # fairseq's transformer_iwslt_de_en: the usual IWSLT / TED model.
    "transformer_small": dict(embed_dim=512, ffn_dim=1024, encoder_layers=6, decoder_layers=6, heads=4),
    "transformer_base": dict(embed_dim=512, ffn_dim=2048, encoder_layers=6, decoder_layers=6, heads=8),
    "transformer_big": dict(embed_dim=1024, ffn_dim=4096, encoder_layers=6, decoder_layers=6, heads=16,
                            dropout=0.3),
}

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(TransformerConfig))


def build_config(arch: str, **overrides: Any) -> TransformerConfig:
    """A named architecture with any field overridden; typos are errors with suggestions."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHITECTURES)}")
    for key in overrides:
        if key not in CONFIG_FIELDS:
            hint = did_you_mean(key, CONFIG_FIELDS)
            raise ConfigError(f"unknown model option '{key}'" + (f" ({hint})" if hint else ""))
    cfg = TransformerConfig(**{**ARCHITECTURES[arch], **overrides})
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"option '{name}' must be in [0, 1); got {getattr(cfg, name)}")
    for name in ("embed_dim", "ffn_dim", "encoder_layers", "decoder_layers", "heads", "max_positions"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"option '{name}' must be positive; got {getattr(cfg, name)}")
    if cfg.embed_dim % cfg.heads:
        raise ConfigError(f"embed_dim ({cfg.embed_dim}) must be a multiple of heads ({cfg.heads})")
    return cfg
