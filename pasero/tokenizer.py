"""SentencePiece BPE tokenizer, with Pasero's inline casing and language-code tokens.

The model is trained with the `sentencepiece` library, configured so that tokenization is
lossless: identity normalization (NFKC is an option, applied here before SentencePiece),
byte fallback for characters outside the vocabulary, and whitespace handled by this module
(no dummy prefix, no whitespace clean-up inside SentencePiece). Hence, for every line `x`:

    detokenize(tokenize(x)) == normalize(x)

where `normalize` applies NFKC (if enabled), turns `▁` (SentencePiece's space symbol) and,
with inline casing, the literal markers `<T>`/`<U>` into spaces, and collapses whitespace.

A tokenizer directory holds `spm.model`, `spm.vocab` (for reading) and `settings.yaml`.
`to_state()` embeds the whole tokenizer in a checkpoint, so a model file is self-contained.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import yaml

from pasero import casing
from pasero.errors import ConfigError, DataError
from pasero.files import atomic_output, count_lines, decode_line, lang_of
from pasero.progress import progress_bar
from pasero.sampling import temperature_shares, times_drawn

logger = logging.getLogger(__name__)

MODEL_FILE = "spm.model"
VOCAB_FILE = "spm.vocab"
SETTINGS_FILE = "settings.yaml"
STATE_VERSION = 1
_BYTE_PIECE = re.compile(r"<0x([0-9A-F]{2})>")
_UNK_SURFACE = " \u2047 "  # what SentencePiece prints for an unknown piece


@dataclass
class TokenizerSettings:
    """What a tokenizer was trained with; saved as settings.yaml and inside checkpoints."""

    vocab_size: int
    inline_case: bool = False
    nfkc: bool = False
    lang_codes: list[str] = field(default_factory=list)
    character_coverage: float = 0.9995
    sample_size: int = 1_000_000
    seed: int = 1
    temperature: float = 1.0  # > 1: small languages (inputs) get more of the sample
    inputs: list[str] = field(default_factory=list)
    model_type: str = "bpe"


def lang_token(code: str) -> str:
    """The vocabulary token of a language code: `en` -> `<lang:en>` (tokens pass through)."""
    return code if code.startswith("<") and code.endswith(">") else f"<lang:{code}>"


class Tokenizer:
    """A trained SentencePiece model and its settings: text <-> pieces, losslessly."""

    def __init__(self, model_proto: bytes, settings: TokenizerSettings):
        self.settings = settings
        self._model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._model_proto)
        except Exception as e:  # sentencepiece raises bare RuntimeError/OSError
            raise DataError(f"invalid SentencePiece model: {e}") from None
        size = self._sp.get_piece_size()
        self.pieces: list[str] = [self._sp.id_to_piece(i) for i in range(size)]
        self._index = {p: i for i, p in enumerate(self.pieces)}
        self.byte_ids = {i for i in range(size) if self._sp.is_byte(i)}
        self.special_ids = {i for i in range(size) if self._sp.is_unknown(i) or self._sp.is_control(i)}
        # Surface length of each piece in characters: `▁` stands for one space; a byte piece
        # counts 1 if it starts a UTF-8 character, 0 if it continues one.
        self._lengths = np.array([len(p) for p in self.pieces], dtype=np.int64)
        for i in self.byte_ids:
            self._lengths[i] = int(not 0x80 <= self.byte_value(i) < 0xC0)
        self._case: casing.InlineCase | None = None
        self._marker_ids: dict[str, int] = {}
        if settings.inline_case:
            chars = [p for i, p in enumerate(self.pieces) if len(p) == 1 and i not in self.byte_ids]
            self._case = casing.InlineCase(chars)
            self._marker_ids = {m: self._index[m] for m in casing.MARKERS}

    # -- construction ------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        inputs: Sequence[str | Path],
        output_dir: str | Path,
        vocab_size: int,
        inline_case: bool = False,
        nfkc: bool = False,
        lang_codes: Sequence[str] = (),
        character_coverage: float = 0.9995,
        sample_size: int = 1_000_000,
        seed: int = 1,
        threads: int | None = None,
        temperature: float = 1.0,
    ) -> Tokenizer:
        """Train a BPE model on a random sample of lines of `inputs` (jointly) and save it.

        Sampling keeps training time bounded on large corpora: the same `sample_size`
        sentences are drawn whatever the corpus size, uniformly over all input lines, or, with a
        `temperature` above 1 and one input per language, in proportion to each language's
        `n_lines ** (1 / temperature)` (Pasero's multilingual tokenizers), so that the small
        languages of a multilingual corpus get pieces of their own.
        """
        if temperature <= 0:
            raise ConfigError(f"--temperature must be positive, not {temperature}")
        if vocab_size < 1:
            raise ConfigError(f"--vocab-size must be positive, not {vocab_size}")
        settings = TokenizerSettings(
            vocab_size=vocab_size, inline_case=inline_case, nfkc=nfkc,
            lang_codes=[lang_token(c) for c in lang_codes], character_coverage=character_coverage,
            sample_size=sample_size, seed=seed, temperature=temperature, inputs=[str(p) for p in inputs],
        )
        start = time.perf_counter()
        normalize = _Normalizer(nfkc, inline_case)
        fold = casing.fold_for_training if inline_case else (lambda s: s)
        sentences = [" " + fold(s) for s in map(normalize, _sample_lines(inputs, sample_size, seed, temperature)) if s]
        if not sentences:
            raise DataError(f"{', '.join(map(str, inputs))}: no text to train a tokenizer on")
        user_symbols = (list(casing.MARKERS) if inline_case else []) + settings.lang_codes
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, model_type="bpe",
                vocab_size=vocab_size, character_coverage=character_coverage, byte_fallback=True,
                normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, split_by_whitespace=True,
                user_defined_symbols=user_symbols, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
                input_sentence_size=0, num_threads=threads or os.cpu_count() or 1, minloglevel=2,
                max_sentence_length=1 << 16,
            )
        except RuntimeError as e:
            raise ConfigError(_explain_training_error(str(e), vocab_size)) from None
        tokenizer = cls(model.getvalue(), settings)
        tokenizer.save(output_dir)
        logger.info(
            "trained a %d-piece BPE tokenizer on %d sentences in %.1fs -> %s",
            len(tokenizer), len(sentences), time.perf_counter() - start, output_dir,
        )
        return tokenizer

    def save(self, output_dir: str | Path) -> None:
        """Write spm.model, spm.vocab and settings.yaml (last: its presence means complete)."""
        output_dir = Path(output_dir)
        with atomic_output(output_dir / MODEL_FILE, "wb") as f:
            f.write(self._model_proto)
        with atomic_output(output_dir / VOCAB_FILE) as f:
            for i, piece in enumerate(self.pieces):
                f.write(f"{piece}\t{self._sp.get_score(i):g}\n")
        with atomic_output(output_dir / SETTINGS_FILE) as f:
            yaml.safe_dump(asdict(self.settings), f, sort_keys=False, allow_unicode=True)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        path = Path(path)
        model_path, settings_path = path / MODEL_FILE, path / SETTINGS_FILE
        if not model_path.is_file() or not settings_path.is_file():
            raise DataError(
                f"{path}: not a tokenizer (expected {MODEL_FILE} and {SETTINGS_FILE}); "
                "build one with pasero-build-tokenizer"
            )
        try:
            settings = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise DataError(f"{settings_path}: invalid YAML ({e.__class__.__name__})") from None
        try:
            return cls(model_path.read_bytes(), _settings_from_dict(settings, settings_path))
        except DataError as e:
            raise DataError(f"{model_path}: {e}; build the tokenizer again") from None

    def to_state(self) -> dict[str, Any]:
        """A `torch.load(weights_only=True)`-safe description: settings + model bytes as uint8."""
        import torch

        model = torch.frombuffer(bytearray(self._model_proto), dtype=torch.uint8).clone()
        return {"type": "sentencepiece", "version": STATE_VERSION,
                "settings": asdict(self.settings), "model": model}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Tokenizer:
        if not isinstance(state, dict) or state.get("type") != "sentencepiece" or "model" not in state:
            raise DataError("checkpoint has no SentencePiece tokenizer state")
        model = state["model"]
        proto = model.numpy().tobytes() if hasattr(model, "numpy") else bytes(model)
        return cls(proto, _settings_from_dict(state.get("settings"), "checkpoint tokenizer"))

    def __reduce__(self):  # worker processes receive the model bytes, not the C++ object
        return (Tokenizer, (self._model_proto, self.settings))

    # -- tokenization ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def inline_case(self) -> bool:
        return self.settings.inline_case

    @property
    def user_symbols(self) -> list[str]:
        """Case markers and language codes: tokens a dictionary must keep even if unseen."""
        return (list(casing.MARKERS) if self.inline_case else []) + list(self.settings.lang_codes)

    def normalize(self, text: str) -> str:
        return _Normalizer(self.settings.nfkc, self.settings.inline_case)(text)

    def tokenize(self, line: str) -> str:
        """One line of text -> its space-separated pieces."""
        return " ".join(map(self.pieces.__getitem__, self.encode_batch([line])[0]))

    def encode_batch(self, lines: Sequence[str], threads: int = 1) -> list[list[int]]:
        """Lines -> lists of SentencePiece ids (case markers included)."""
        ids, sizes = self.encode_flat(lines, threads)
        return [a.tolist() for a in np.split(ids, np.cumsum(sizes)[:-1])] if len(lines) else []

    def encode_flat(self, lines: Sequence[str], threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Lines -> (their SentencePiece ids back to back, the number of ids of each line).

        The whole batch is processed at once: lines are joined into one string (each starts
        with the space that SentencePiece turns into `▁`), lower-cased and cut in one go,
        and the case markers are computed with array operations over all pieces.
        """
        normalize = _Normalizer(self.settings.nfkc, self.settings.inline_case)
        texts = [" " + t if t else "" for t in map(normalize, lines)]
        starts = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in texts], out=starts[1:])
        text = "".join(texts)
        low, kinds, points = text, None, []
        if self._case is not None:
            low, kinds, points = self._case.fold_text(text)
        cuts = starts
        if points or not all(texts):  # cut mixed-case words; empty lines give no segment
            cuts = np.union1d(starts, np.array(points, dtype=np.int64))
        segments = [low[a:b] for a, b in itertools.pairwise(cuts.tolist())]
        if len(segments) < 64:  # a batch call costs a thread pool: ~0.3 ms
            encoded = [self._sp.encode(segment, out_type=int) for segment in segments]
        else:
            encoded = self._sp.encode(segments, out_type=int, num_threads=threads)
        segment_sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64, count=int(segment_sizes.sum()))
        line_of_segment = np.searchsorted(starts, cuts[:-1], side="right") - 1
        sizes = np.bincount(line_of_segment, weights=segment_sizes, minlength=len(texts)).astype(np.int64)
        if kinds is None:
            return ids, sizes
        marked, upper = self._case.markers(kinds, np.cumsum(self._lengths[ids]))
        markers = np.where(upper, self._marker_ids[casing.UPPER], self._marker_ids[casing.TITLE])
        line_ends = np.cumsum(sizes)
        sizes += np.bincount(np.searchsorted(line_ends, marked, side="right"), minlength=len(texts))
        return np.insert(ids, marked + 1, markers), sizes

    def detokenize(self, pieces: str | Sequence[str]) -> str:
        """Space-separated pieces (or a list) -> text; restores inline casing.

        Robust to model output: stray markers are ignored, unknown tokens print as `⁇`.
        """
        if isinstance(pieces, str):
            pieces = pieces.split()
        out: list[str] = []
        pending = bytearray()  # consecutive byte pieces form UTF-8 characters together
        last_text = -1  # index in `out` of the last piece a marker may apply to
        for piece in pieces:
            i = self._index.get(piece)
            if i in self.byte_ids:
                pending.append(self.byte_value(i))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending.clear()
                last_text = -1
            if piece in self._marker_ids:
                if last_text >= 0:
                    out[last_text] = self._case.restore(out[last_text], piece)
                last_text = -1
            elif i is None or i in self.special_ids:
                out.append(_UNK_SURFACE)
                last_text = -1
            else:
                out.append(piece)
                last_text = len(out) - 1
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        return " ".join("".join(out).replace("\u2581", " ").split())

    def byte_value(self, i: int) -> int:
        return int(_BYTE_PIECE.fullmatch(self.pieces[i]).group(1), 16)


class _Normalizer:
    """The text normalization under which tokenization round-trips (see the module doc)."""

    def __init__(self, nfkc: bool, inline_case: bool):
        self.nfkc = nfkc
        self.inline_case = inline_case

    def __call__(self, text: str) -> str:
        if self.nfkc and not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        if "\u2581" in text:
            text = text.replace("\u2581", " ")
        if self.inline_case and "<" in text:
            text = text.replace(casing.TITLE, " ").replace(casing.UPPER, " ")
        return " ".join(text.split())


def _sample_lines(inputs: Sequence[str | Path], size: int, seed: int, temperature: float = 1.0) -> Iterator[str]:
    """A random sample of `size` lines (0: as many as there are) over all inputs, in file order.

    With temperature 1 the sample is uniform over all lines. Above 1 each language (the inputs
    grouped by extension: train.de, train.en) gets a share of the sample proportional to
    `n_lines ** (1 / temperature)` (Pasero's temperature): small languages get more lines than their
    size, drawn again when they have too few.
    """
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    kept = _new_lines(paths)
    counts = np.array([count_lines(p) if k is None else int(k.sum()) for p, k in zip(paths, kept, strict=True)],
                      dtype=np.int64)
    total = int(counts.sum())
    rng = np.random.default_rng(seed)
    if temperature == 1.0:
        if size <= 0 or size >= total:
            picks = [None] * len(paths)
        else:
            chosen = np.zeros(total, dtype=np.int64)
            chosen[rng.choice(total, size, replace=False)] = 1
            picks = np.split(chosen, np.cumsum(counts)[:-1])
    else:
        picks = _picks_by_language(paths, counts, size or total, temperature, rng)
    picks = [_scatter(times, k) for times, k in zip(picks, kept, strict=True)]
    sizes = [path.stat().st_size for path in paths]  # the bar counts bytes read
    with progress_bar(sum(sizes), "tokenizer sample", "B", unit_scale=True) as bar:
        for path, times, start, size in zip(paths, picks, itertools.accumulate([0, *sizes]), sizes, strict=False):
            with open(path, "rb") as f:
                for lineno, raw in enumerate(f, 1):
                    repeat = 1 if times is None else int(times[lineno - 1])
                    if repeat:
                        line = decode_line(raw, path, lineno)
                        for _ in range(repeat):
                            yield line
                    if lineno % 10000 == 0:
                        bar.update(start + f.tell() - bar.n)
            bar.update(start + size - bar.n)


def _new_lines(paths: list[Path]) -> list[np.ndarray | None]:
    """Per input, a mask of the lines not already in an earlier input of its language (None: all).

    A multilingual experiment's English side comes from every X-en pair, and TED's pairs hold the
    same talks: without this, each English sentence would weigh in the sample as many times as it
    has pairs. A file's own repeated lines are kept, as in a bilingual tokenizer's input.
    """
    langs = [lang_of(path) for path in paths]
    kept: list[np.ndarray | None] = [None] * len(paths)
    seen: dict[str, np.ndarray] = {}
    for i, (path, lang) in enumerate(zip(paths, langs, strict=True)):
        if langs.count(lang) == 1:
            continue
        hashes = _line_hashes(path)
        if lang in seen:
            kept[i] = ~np.isin(hashes, seen[lang])
            seen[lang] = np.union1d(seen[lang], hashes)
        else:
            kept[i], seen[lang] = np.ones(len(hashes), dtype=bool), np.unique(hashes)
    return kept


def _line_hashes(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        return np.fromiter((int.from_bytes(hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=8).digest(), "little")
                            for raw in f), dtype=np.uint64)


def _scatter(times: np.ndarray | None, kept: np.ndarray | None) -> np.ndarray | None:
    """Draw counts of the kept lines spread over all the lines of a file (0 for the others)."""
    if kept is None:
        return times
    full = np.zeros(len(kept), dtype=np.int64)
    full[kept] = 1 if times is None else times
    return full


def _picks_by_language(paths: list[Path], counts: np.ndarray, size: int, temperature: float,
                       rng: np.random.Generator) -> list[np.ndarray]:
    """How many times each line of each input is drawn, the inputs grouped by language (`lang_of`)."""
    langs = [lang_of(path) for path in paths]
    groups = list(dict.fromkeys(langs))
    members = [[i for i, lang in enumerate(langs) if lang == group] for group in groups]
    shares = temperature_shares([int(counts[idx].sum()) for idx in members], size, temperature)
    picks: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(paths)
    for idx, k in zip(members, shares, strict=True):
        times = times_drawn(rng, int(counts[idx].sum()), int(k))
        for i, part in zip(idx, np.split(times, np.cumsum(counts[idx])[:-1]), strict=True):
            picks[i] = part
    return picks


def _settings_from_dict(data: Any, origin: Any) -> TokenizerSettings:
    if not isinstance(data, dict) or "vocab_size" not in data:
        raise DataError(f"{origin}: tokenizer settings lack 'vocab_size'")
    known = TokenizerSettings.__dataclass_fields__
    return TokenizerSettings(**{k: v for k, v in data.items() if k in known})


def _explain_training_error(message: str, vocab_size: int) -> str:
    match = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if match:
        return (f"--vocab-size {vocab_size} is too large for this training text: "
                f"use --vocab-size {match.group(2)} or less, or more text")
    match = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if match:
        return (f"--vocab-size {vocab_size} is too small: the text needs at least {match.group(2)} "
                "pieces for its characters, bytes and special tokens")
    return "SentencePiece training failed: " + message.strip().splitlines()[-1]
