"""A tiny binarized corpus and config for the training tests (made fresh in each test's folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pasero.dictionary import Dictionary
from pasero.indexed_dataset import IndexedDatasetBuilder, best_dtype

VOCAB = [f"w{i}" for i in range(24)]


def write_split(bin_dir: Path, split: str, pairs: list[tuple[list[str], list[str]]], d: Dictionary,
                src: str = "de", tgt: str = "en") -> None:
    for side, lang in enumerate((src, tgt)):
        builder = IndexedDatasetBuilder(bin_dir / f"{split}.{src}-{tgt}.{lang}", best_dtype(len(d)))
        for pair in pairs:
            builder.add(d.encode(pair[side]))
        builder.finalize()


def make_corpus(root: Path, n_train: int = 400, n_valid: int = 40, seed: int = 0) -> dict[str, Any]:
    """A learnable task: the target is the source reversed with every word shifted by one.
    Returns the training config (tiny model) as a dict."""
    d = Dictionary.from_symbols(VOCAB)
    root.mkdir(parents=True, exist_ok=True)
    d.save(root / "dict.txt")
    rng = np.random.default_rng(seed)

    def pair() -> tuple[list[str], list[str]]:
        ids = rng.integers(0, len(VOCAB), size=int(rng.integers(3, 13)))
        return [VOCAB[i] for i in ids], [VOCAB[(i + 1) % len(VOCAB)] for i in ids[::-1]]

    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    write_split(bin_dir, "train", [pair() for _ in range(n_train)], d)
    write_split(bin_dir, "valid", [pair() for _ in range(n_valid)], d)
    return tiny_config(root)


def tiny_config(root: Path, **overrides: Any) -> dict[str, Any]:
    cfg = dict(data_dir=str(root / "bin"), dict=str(root / "dict.txt"), model_dir=str(root / "model"),
               source_lang="de", target_lang="en", arch="transformer_tiny", embed_dim=32, ffn_dim=64,
               encoder_layers=1, decoder_layers=1, heads=2, dropout=0.1, batch_size=256, lr=2e-3, warmup=10,
               max_steps=30, valid_interval=10, log_interval=1, valid_decode=True, best_metric="chrf",
               device="cpu", bleu_tok="none", keep_last=2)
    cfg.update(overrides)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
