"""Training throughput and peak memory of pasero's Trainer (the real update path).

Measures target tokens per second (padding excluded; what fairseq logs as `wps`) for
`transformer_small` (fairseq's transformer_iwslt_de_en) on 4096-token batches of random
IWSLT-like data (10k joint vocabulary, sentence lengths around 25 tokens), in the precision that
`dtype: auto` picks (bf16 on CUDA and on CPUs with AVX512-BF16/AMX, else float32), on CPU and, when a GPU
is present, on CUDA (with --peak-tflops, the model FLOPs utilization). Usage:

    python bench/train.py [--device cpu cuda] [--steps 10] [--arch transformer_small] [--batch-size 4096]

The fairseq equivalent for a side-by-side comparison (same model and batch):
    fairseq-train DATA --arch transformer_iwslt_de_en --max-tokens 4096 --optimizer adam
        --adam-betas '(0.9, 0.98)' --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 4000
        --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --dropout 0.3 [--bf16]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pasero.dictionary import Dictionary
from pasero.indexed_dataset import IndexedDatasetBuilder, best_dtype
from pasero.train_config import load_config
from pasero.training import Trainer


def make_data(root: Path, vocab: int, n_train: int, seed: int = 0) -> None:
    d = Dictionary.from_symbols([f"tok{i}" for i in range(vocab - 4)])
    d.save(root / "dict.txt")
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("valid", 50)):
        src_len = np.clip(rng.normal(25, 12, n), 3, 120).astype(int)
        tgt_len = np.clip(src_len * rng.normal(1.0, 0.1, n), 2, 120).astype(int)
        for lang, lengths in (("de", src_len), ("en", tgt_len)):
            builder = IndexedDatasetBuilder(root / f"{split}.de-en.{lang}", best_dtype(len(d)))
            for length in lengths:  # Zipf-like token ids, eos at the end
                ids = np.minimum(rng.zipf(1.2, length) + 3, len(d) - 1)
                builder.add(np.append(ids, d.eos_idx))
            builder.finalize()


def bench(device: str, arch: str, batch_size: int, steps: int, warmup_steps: int, root: Path) -> dict:
    cfg = load_config(None, dict(
        data_dir=str(root), model_dir=str(root / f"model-{device}"), source_lang="de", target_lang="en",
        arch=arch, dropout=0.3, batch_size=batch_size, device=device, valid_decode=False, best_metric="nll",
        max_steps=steps + warmup_steps, log_interval=10**9, valid_interval=10**9))
    trainer = Trainer(cfg)
    try:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(warmup_steps):
            trainer.train_step(trainer.iterator.next_step())
        tokens, seconds = 0.0, 0.0
        for _ in range(steps):
            counted = trainer._stats.ntokens
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step(trainer.iterator.next_step())  # ends with a host sync (.tolist of the stats)
            seconds += time.perf_counter() - start
            tokens += trainer._stats.ntokens - counted
        if device == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        return dict(device=device, dtype=str(trainer.amp_dtype).replace("torch.", ""), params=trainer.num_params,
                    tokens_per_s=tokens / seconds, seconds_per_step=seconds / steps, peak_mib=peak,
                    threads=torch.get_num_threads())
    finally:
        trainer.close()


def mfu(params: int, tokens_per_s: float, peak_flops: float) -> float:
    """Model FLOPs utilization: 6 FLOPs per parameter and target token (forward + backward, the usual
    estimate; attention's sequence-length term is left out, as it is small at IWSLT lengths)."""
    return 6 * params * tokens_per_s / peak_flops


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    p.add_argument("--arch", default="transformer_small")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=10, help="timed updates")
    p.add_argument("--warmup-steps", type=int, default=3, help="untimed updates first (allocator, kernels)")
    p.add_argument("--train-size", type=int, default=5000, help="random training pairs")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the accelerator's dense bf16 peak (e.g. 989 for an H100/H200 SXM): prints the MFU")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, vocab=10000, n_train=args.train_size)
        print(f"{'device':6} {'dtype':8} {'params':>11} {'tokens/s':>10} {'s/step':>7} {'peak MiB':>9} threads")
        for device in args.device:
            if device == "cuda" and not torch.cuda.is_available():
                print("cuda: not available", file=sys.stderr)
                continue
            r = bench(device, args.arch, args.batch_size, args.steps, args.warmup_steps, root)
            print(f"{r['device']:6} {r['dtype']:8} {r['params']:>11,} {r['tokens_per_s']:>10.0f} "
                  f"{r['seconds_per_step']:>7.3f} {r['peak_mib']:>9.0f} {r['threads']}", flush=True)
            if device == "cuda" and args.peak_tflops:
                print(f"MFU {100 * mfu(r['params'], r['tokens_per_s'], args.peak_tflops * 1e12):.1f}% "
                      f"(6 x params x tokens/s / {args.peak_tflops:g} TFLOPS)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
