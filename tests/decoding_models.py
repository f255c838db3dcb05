"""Small real models for the decoding tests: trained for a few seconds on a toy task so that
their hypotheses have realistic, varied lengths (a random model mostly runs to the length limit)."""

from __future__ import annotations

import dataclasses
import functools
import io
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from pasero.model import Transformer
from pasero.model_config import build_config
from pasero.search import EOS, PAD, collate_source

FIRST_WORD = 4  # after <s> <pad> </s> <unk>


def tiny_config(**overrides):
    options = dict(embed_dim=32, ffn_dim=64, heads=4, encoder_layers=2, decoder_layers=2, dropout=0.0,
                   max_positions=64)
    return build_config("transformer_tiny", **{**options, **overrides})


def reverse_batch(generator: torch.Generator, vocab: int, size: int, max_len: int = 8):
    """Sources of random words and their reversal as targets: the model must attend to the source."""
    lengths = torch.randint(1, max_len + 1, (size,), generator=generator).tolist()
    srcs = [torch.randint(FIRST_WORD, vocab, (n,), generator=generator) for n in lengths]
    tgts = [s.flip(0) for s in srcs]
    eos = torch.tensor([EOS])
    src = collate_source([torch.cat([s, eos]) for s in srcs])
    prev = collate_source([torch.cat([eos, t]) for t in tgts])
    target = collate_source([torch.cat([t, eos]) for t in tgts])
    return src, prev, target


def train_reverse_model(vocab: int = 24, steps: int = 150, seed: int = 0, **overrides) -> Transformer:
    """A tiny Transformer that has learnt to reverse its input, imperfectly (a few seconds of CPU)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Transformer(tiny_config(**overrides), vocab, vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        src, prev, target = reverse_batch(generator, vocab, 32)
        logits = model(src, prev)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), target.view(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


WORDS = ["the", "cat", "sat", "on", "mat", "Hello", "world", "small", "house", "green", "tree", "river", "walks",
         "quickly", "under", "bridge", "and", "a", "dog", "runs"]


def word_corpus(n: int, seed: int) -> list[str]:
    rng = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        length = int(torch.randint(1, 7, (1,), generator=rng))
        lines.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (length,), generator=rng)))
    return lines


@functools.cache
def copy_checkpoint_state(steps: int = 150) -> bytes:
    """A complete inference checkpoint (tokenizer, dictionary, decoding defaults, provenance) of a
    tiny model trained to copy sentences of WORDS. Serialized once per test session."""
    from pasero.dictionary import Dictionary
    from pasero.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(word_corpus(500, seed=0)) + "\n")
        tokenizer = Tokenizer.train([corpus], Path(tmp) / "tok", vocab_size=360, threads=1)
    dictionary = Dictionary.from_symbols(tokenizer.pieces)
    piece_ids = torch.tensor([dictionary.index(p) for p in tokenizer.pieces])
    sentences = [piece_ids[torch.tensor(ids)] for ids in tokenizer.encode_batch(word_corpus(2000, seed=1))]

    torch.manual_seed(0)
    cfg = tiny_config(embed_dim=64, ffn_dim=128)
    model = Transformer(cfg, len(dictionary), len(dictionary))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    eos = torch.tensor([EOS])
    for step in range(steps):
        batch = [sentences[(step * 32 + i) % len(sentences)] for i in range(32)]
        src = collate_source([torch.cat([s, eos]) for s in batch])
        prev = collate_source([torch.cat([eos, s]) for s in batch])
        logits = model(src, prev)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), src.view(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ckpt = {
        "model": model.state_dict(), "model_config": dataclasses.asdict(cfg), "arch": "transformer_tiny",
        "dictionary": list(dictionary.symbols), "tokenizer": tokenizer.to_state(),
        "inference": {"beam_size": 3, "len_penalty": 1.0, "max_len_a": 1.0, "max_len_b": 5,
                      "source_lang": "de", "target_lang": "en", "bleu_tok": "13a"},
        "step": steps, "meta": {"steps": [steps], "train_seconds": 12.5, "params": model.num_parameters()},
    }
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    return buffer.getvalue()


def save_copy_checkpoint(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(copy_checkpoint_state())
    return path
