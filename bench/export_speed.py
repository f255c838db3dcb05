"""Decoding speed of one model in pasero, in CTranslate2 and in transformers (pasero-export's formats).

    python bench/export_speed.py                              # 500 toy sentences, threads 1 and 2, beam 5 and 1
    python bench/export_speed.py --model results/toy/de-en/model.pt --input test.de --sentences 200

Without --model, the model is a randomly initialized `transformer_small` (fairseq's
transformer_iwslt_de_en, shared embeddings) over a SentencePiece tokenizer trained on the toy
corpus, and the inputs are toy test sentences. As in bench/decode.py, random weights get realistic
lengths by forcing them: eos is forbidden until the maximum length, 1.0 * source length, so every
runtime writes as many tokens per sentence as its source has (eos included). With --model, a
trained model decodes with its own search settings and natural lengths.

The timed path is decoding alone (inputs already tokenized into ids or pieces, outputs left as
ids or pieces), after a warm-up, each runtime in a fresh process, sorted by length in each
runtime's way: pasero's and transformers' batches of 4096 source tokens, CTranslate2's groups of
equal source length (`ctranslate2_translate`: pasero's maximum length is per sentence), with its
threads inside each batch (intra_threads) or, for `ctranslate2-inter`, on batches in parallel
(inter_threads). Each line reports sentences/s and how many outputs equal pasero's.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pasero import export, export_ct2, export_hf, toy
from pasero.batching import make_batches
from pasero.dictionary import SPECIALS, Dictionary
from pasero.generator import TextGenerator
from pasero.model import Transformer
from pasero.model_config import build_config
from pasero.tokenizer import Tokenizer

BATCH_TOKENS = 4096


def random_model(folder: Path) -> Path:
    """A random transformer_small with a toy-corpus tokenizer, as a self-contained checkpoint."""
    pairs = toy.generate(seed=1, sizes={"train": 20000, "valid": 10, "test": 10})["train"]
    text = folder / "train.txt"
    text.write_text("".join(f"{de}\n{en}\n" for de, en in pairs), encoding="utf-8")
    tokenizer = Tokenizer.train([text], folder / "tokenizer", vocab_size=4000, threads=2)
    dictionary = Dictionary.from_symbols([p for p in tokenizer.pieces if p not in SPECIALS])
    torch.manual_seed(0)
    cfg = build_config("transformer_small", dropout=0.0, shared_embeddings=True)
    model = Transformer(cfg, len(dictionary), len(dictionary))
    ckpt = {"model": model.state_dict(), "model_config": dataclasses.asdict(cfg),
            "dictionary": dictionary.symbols, "tokenizer": tokenizer.to_state(),
            "inference": {"beam_size": 5, "max_len_a": 1.0, "max_len_b": 0, "min_len": 10_000}}
    torch.save(ckpt, folder / "model.pt")
    return folder / "model.pt"


def measure(runtime: str, folder: Path, model_path: Path, encoded: list[np.ndarray], beam: int,
            threads: int) -> tuple[list[list[str]], float]:
    """Outputs and seconds of one runtime decoding `encoded` (after a warm-up on 8 sentences). Run in
    a fresh process: the OpenMP threads of one runtime spin for a while after its work, which would
    slow the next runtime down on a small machine."""
    torch.set_num_threads(threads)
    generator = TextGenerator.build(model_path, device="cpu", dtype="float32")
    options = dataclasses.replace(generator.options, beam_size=beam)
    if runtime == "pasero":
        run = functools.partial(pasero_run, generator)
    elif runtime.startswith("ctranslate2"):  # threads inside each batch, or batches in parallel (inter)
        import ctranslate2

        inter = runtime.endswith("inter")
        translator = ctranslate2.Translator(str(folder / "ct2"), intra_threads=1 if inter else threads,
                                            inter_threads=threads if inter else 1)
        run = functools.partial(ct2_run, translator, generator)
    else:
        import transformers

        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder / "hf").eval()
        run = functools.partial(hf_run, model, generator)
    run(encoded[:8], options)
    start = time.perf_counter()
    out = run(encoded, options)
    return out, time.perf_counter() - start


def pasero_run(generator: TextGenerator, encoded: list[np.ndarray], options) -> list[list[str]]:
    results = generator.decode_ids(encoded, options, batch_size=BATCH_TOKENS)
    return [nbest[0]["tokens"] for nbest in results]


def ct2_run(translator, generator: TextGenerator, encoded: list[np.ndarray], options) -> list[list[str]]:
    sources = [generator.dictionary.decode(ids).split() for ids in encoded]
    return export_ct2.ctranslate2_translate(translator, sources, options, generator.model.cfg.max_positions)


def hf_run(model, generator: TextGenerator, encoded: list[np.ndarray], options) -> list[list[str]]:
    sizes = np.array([len(ids) for ids in encoded])
    out: list[list[str]] = [[] for _ in encoded]
    for batch in make_batches(np.argsort(sizes, kind="stable"), sizes, sizes, BATCH_TOKENS):
        ids = torch.full((len(batch), int(sizes[batch].max())), generator.dictionary.pad_idx)
        for row, i in enumerate(batch):
            ids[row, :sizes[i]] = torch.as_tensor(encoded[i])
        mask = ids.ne(generator.dictionary.pad_idx).long()
        kwargs = export_hf.transformers_generate_kwargs(options, mask, generator.model.cfg.max_positions)
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        for row, i in enumerate(batch):
            out[i] = generator.pieces(generated[row, 1:].tolist())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a pasero model (default: a random transformer_small, forced lengths)")
    parser.add_argument("--input", help="source text, one sentence per line (default: toy test sentences)")
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    args = parser.parse_args()

    import ctranslate2
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = args.model or random_model(folder)
        export.export(model_path, "ctranslate2", folder / "ct2")
        export.export(model_path, "hf", folder / "hf")
        generator = TextGenerator.build(model_path, device="cpu", dtype="float32")
        if args.input:
            lines = Path(args.input).read_text(encoding="utf-8").splitlines()[:args.sentences]
        else:
            lines = [de for de, _ in toy.generate(seed=2, sizes={"train": 10, "valid": 10,
                                                                   "test": args.sentences})["test"]]
        encoded = generator.encode(lines)
        print(f"{len(lines)} sentences, {sum(map(len, encoded)) / len(lines):.1f} source tokens on average, "
              f"{generator.model.num_parameters() / 1e6:.1f}M parameters, transformers {transformers.__version__}, "
              f"ctranslate2 {ctranslate2.__version__}, torch {torch.__version__}")
        for threads in args.threads:
            for beam in args.beams:
                reference = None
                for runtime in ("pasero", "ctranslate2", "ctranslate2-inter", "transformers"):
                    if runtime == "ctranslate2-inter" and threads == 1:
                        continue
                    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                        out, seconds = pool.submit(measure, runtime, folder, Path(model_path), encoded, beam,
                                                   threads).result()
                    reference = reference or out
                    same = sum(a == b for a, b in zip(out, reference, strict=True))
                    print(f"threads {threads}  beam {beam}  {runtime:17s} {len(lines) / seconds:8.1f} sentences/s"
                          f"  ({same}/{len(lines)} outputs equal pasero's)", flush=True)


if __name__ == "__main__":
    main()
