"""Decoding speed: sentences/s and target tokens/s of beam search (beam 5) and greedy decoding.

    python bench/decode.py                      # CPU, and CUDA when available
    python bench/decode.py --devices cpu --sentences 200 --batch-sizes 1000 4000

The model is a randomly initialized `transformer_small` (fairseq's transformer_iwslt_de_en) with
a 10,000-symbol joint dictionary. To get realistic lengths from random weights, the output length
is forced: eos is forbidden until the maximum length, and the maximum is `1.0 * source length`,
so each hypothesis has as many tokens as its source (eos included). Source lengths follow an
IWSLT-like distribution (log-normal, median ~22 tokens, 3 to 120). The timed path is the one of
pasero-decode: sorting by length, batching by tokens, search, and conversion of the hypotheses.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pasero.devices import resolve_dtype
from pasero.dictionary import Dictionary
from pasero.generator import TextGenerator
from pasero.model import Transformer
from pasero.model_config import build_config
from pasero.search_options import DTYPES, SearchOptions


def source_sentences(n: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(22), 0.5, n).astype(int), 3, 120)
    return [np.append(rng.integers(4, vocab, length - 1), 2) for length in lengths]


def build_generator(device: str, dtype: torch.dtype, vocab: int) -> TextGenerator:
    torch.manual_seed(0)
    cfg = build_config("transformer_small", dropout=0.0, shared_embeddings=True)
    model = Transformer(cfg, vocab, vocab).to(device=device, dtype=dtype).eval()
    dictionary = Dictionary.from_symbols([f"w{i}" for i in range(vocab - 4)])
    return TextGenerator(model, dictionary, None, SearchOptions())  # no tokenizer: ids in, pieces out


def bench(generator: TextGenerator, sentences: list[np.ndarray], beam: int,
          batch_size: int) -> tuple[float, float, float]:
    """Sentences/s, target tokens/s (eos included) and the process's CPU seconds (a shared machine
    slows the wall clock down, not the CPU time)."""
    opts = SearchOptions(beam_size=beam, max_len_a=1.0, max_len_b=0, min_len=10_000)
    generator.decode_ids(sentences[:8], opts, batch_size=batch_size)  # warm-up
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    results = generator.decode_ids(sentences, opts, batch_size=batch_size)
    if generator.device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    tokens = sum(len(nbest[0]["tokens"]) + 1 for nbest in results)
    return len(sentences) / seconds, tokens / seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--sentences", type=int, help="default: 300 on CPU, 3000 on CUDA")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="source tokens per batch")
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"transformer_small, random weights, vocab {args.vocab}, output length forced to the source length")
    print(f"{'device':<8} {'dtype':<9} {'beam':>4} {'batch tok':>9} {'sentences':>9} {'sent/s':>9} {'tok/s':>9} "
          f"{'cpu s':>8}")
    for device in args.devices:
        cuda = device == "cuda"
        dtype = resolve_dtype(args.dtype, torch.device(device))  # as pasero-decode: bf16 on CPUs that have it
        n = args.sentences or (3000 if cuda else 300)
        batch_sizes = args.batch_sizes or ([2000, 8000, 32000] if cuda else [250, 1000, 4000])
        sentences = source_sentences(n, args.vocab)
        generator = build_generator(device, dtype, args.vocab)
        for beam in args.beams:
            for batch_size in batch_sizes:
                sent_s, tok_s, cpu = bench(generator, sentences, beam, batch_size)
                print(f"{device:<8} {str(dtype).split('.')[-1]:<9} {beam:>4} {batch_size:>9} {n:>9} "
                      f"{sent_s:>9.1f} {tok_s:>9.0f} {cpu:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
