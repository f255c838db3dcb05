"""Small multilingual, mixed-case text corpora and tokenizers trained on them (tests only)."""

from __future__ import annotations

import random
from pathlib import Path

from pasero.tokenizer import Tokenizer

WORDS = (
    "the cat sat on a mat and we saw it there today with our friends while singing songs "
    "der Hund läuft über die Straße zur Schule naïve café déjà vu Ελλάδα Σοφία οδός "
    "Москва улица 東京 日本語 I A it's e-mail 3.5 20% ( ) , . ! ? — «ok»"
).split()


def variants(word: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.2:
        return word.capitalize()
    if roll < 0.3:
        return word.upper()
    return word


def write_corpus(path: Path, lines: int = 1500, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            f.write(" ".join(variants(rng.choice(WORDS), rng) for _ in range(rng.randint(1, 14))) + "\n")
    return path


def train(tmp: Path, name: str, vocab_size: int = 500, **options) -> Tokenizer:
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        write_corpus(corpus)
    return Tokenizer.train([corpus], tmp / name, vocab_size, threads=1, **options)
