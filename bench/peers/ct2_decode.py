"""Decode tokenized text with a CTranslate2 model the way fairseq-generate batches it, and time it.

    FAIRSEQ_VENV/bin/python bench/peers/ct2_decode.py CT2_MODEL_DIR INPUT.tok OUTPUT.tok [--beam 5]
        [--batch-size 4096] [--compute-type float32] [--threads 1] [--max-len-a 1.2] [--max-len-b 10]

INPUT.tok has one sentence of space-separated pieces per line (pasero-tokenize's output). Sentences
are sorted by length and cut into batches of at most --batch-size padded source tokens, eos included
(fairseq's --max-tokens, pasero-decode's --batch-size); each batch may decode up to
int(max_len_a * its longest source + max_len_b) tokens, fairseq's limit (CTranslate2 itself only has
an absolute maximum). OUTPUT.tok gets the best hypothesis of each line, in input order. Prints one
JSON line: sentences, target tokens (eos included), seconds (the translate calls only, model loading
excluded, like fairseq-generate's own timer) and the rates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import ctranslate2


def batches(lengths: list[int], max_tokens: int) -> Iterator[list[int]]:
    """Indices sorted by length, cut so that (longest + 1) * count <= max_tokens (one line at least)."""
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if batch and (lengths[i] + 1) * (len(batch) + 1) > max_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def decode(translator: ctranslate2.Translator, sources: list[list[str]], args: argparse.Namespace
           ) -> tuple[list[list[str]], float]:
    hypotheses: list[list[str]] = [[] for _ in sources]
    seconds = 0.0
    for batch in batches([len(s) for s in sources], args.batch_size):
        longest = max(len(sources[i]) for i in batch) + 1
        start = time.perf_counter()
        results = translator.translate_batch(
            [sources[i] for i in batch], beam_size=args.beam, length_penalty=1.0,
            max_decoding_length=int(args.max_len_a * longest + args.max_len_b))
        seconds += time.perf_counter() - start
        for i, result in zip(batch, results, strict=True):
            hypotheses[i] = result.hypotheses[0]
    return hypotheses, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4096, help="padded source tokens per batch")
    parser.add_argument("--compute-type", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-len-a", type=float, default=1.2)
    parser.add_argument("--max-len-b", type=int, default=10)
    args = parser.parse_args()
    translator = ctranslate2.Translator(args.model, device="cpu", compute_type=args.compute_type,
                                        inter_threads=1, intra_threads=args.threads)
    sources = [line.split() for line in Path(args.input).read_text().splitlines()]
    hypotheses, seconds = decode(translator, sources, args)
    Path(args.output).write_text("".join(" ".join(h) + "\n" for h in hypotheses))
    tokens = sum(len(h) + 1 for h in hypotheses)
    print(json.dumps({"sentences": len(sources), "tokens": tokens, "seconds": round(seconds, 3),
                      "sentences_per_second": len(sources) / seconds, "tokens_per_second": tokens / seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
