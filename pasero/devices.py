"""Where tensors live and in which precision: shared by training and inference."""

from __future__ import annotations

import torch

from pasero.errors import ConfigError
from pasero.search_options import DTYPES


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, so the same command runs on a laptop and a GPU node."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA device is available; use --device auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}'; use auto, cpu or cuda") from None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Autocast dtype: float32 on CPU; bfloat16 on CUDA when supported, else float16."""
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}'; use one of: {', '.join(DTYPES)}")
    if device.type != "cuda" or name == "float32":
        return torch.float32
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, name)
