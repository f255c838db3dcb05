"""Training and validation batches from memory-mapped parallel data.

Batches are built like fairseq's: sentences ordered by length (ties broken by a per-epoch
shuffle), cut into batches of at most `max_tokens` tokens *padding included* (batch size times the
longest source or target), then the batch order is shuffled. Everything is a pure function of
(seed, epoch), so the position in the data is just (epoch, batches consumed): that pair is all a
checkpoint needs to resume exactly where training stopped, and every process of a data-parallel run
computes the same batch list without communicating.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pasero.dictionary import Dictionary
from pasero.errors import ConfigError, DataError
from pasero.indexed_dataset import IndexedDataset, dataset_exists
from pasero.sampling import temperature_shares, times_drawn

logger = logging.getLogger(__name__)

PAD, EOS = Dictionary.pad_idx, Dictionary.eos_idx


@dataclass
class Batch:
    src_tokens: torch.Tensor  # (B, S) int64, right-padded with PAD, each row ends with eos
    prev_output_tokens: torch.Tensor  # (B, T) eos + target[:-1] (teacher forcing input)
    target: torch.Tensor  # (B, T) ends with eos, right-padded with PAD
    ntokens: int  # target tokens, padding excluded
    ids: np.ndarray  # line numbers in the original files

    def to(self, device: torch.device | str) -> Batch:
        non_blocking = torch.device(device).type == "cuda"
        return Batch(self.src_tokens.to(device, non_blocking=non_blocking),
                     self.prev_output_tokens.to(device, non_blocking=non_blocking),
                     self.target.to(device, non_blocking=non_blocking), self.ntokens, self.ids)

    @property
    def nsentences(self) -> int:
        return len(self.ids)


def split_prefix(data_dir: str | os.PathLike, split: str, src: str, tgt: str, lang: str) -> Path:
    """fairseq's naming of binarized files: {split}.{src}-{tgt}.{lang}.{bin,idx}."""
    return Path(data_dir) / f"{split}.{src}-{tgt}.{lang}"


class PairDataset:
    """Aligned source/target sentences with the pairs a model should not train on removed.

    Removed: empty lines (on either side: only eos), sides longer than the limits, and pairs whose
    length ratio is implausible (misalignments). Positions 0..len-1 index the kept pairs.
    """

    def __init__(self, src: IndexedDataset, tgt: IndexedDataset, max_source_len: int | None = None,
                 max_target_len: int | None = None, max_len_ratio: float | None = None, name: str = "data"):
        if len(src) != len(tgt):
            raise DataError(f"{name}: source and target have different numbers of lines ({len(src)} vs {len(tgt)})")
        self.src, self.tgt, self.name = src, tgt, name
        src_sizes = np.asarray(src.sizes, dtype=np.int64)
        tgt_sizes = np.asarray(tgt.sizes, dtype=np.int64)
        keep = (src_sizes > 1) & (tgt_sizes > 1)  # 1 = eos only = empty line
        if max_source_len:
            keep &= src_sizes <= max_source_len
        if max_target_len:
            keep &= tgt_sizes <= max_target_len
        if max_len_ratio:
            real_src, real_tgt = np.maximum(src_sizes - 1, 1), np.maximum(tgt_sizes - 1, 1)
            keep &= np.maximum(real_src, real_tgt) <= max_len_ratio * np.minimum(real_src, real_tgt)
        self.indices = np.flatnonzero(keep)
        self.src_sizes, self.tgt_sizes = src_sizes[self.indices], tgt_sizes[self.indices]
        self.num_skipped = len(src) - len(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def head(self, n: int | None) -> PairDataset:
        """The same dataset restricted to its first `n` pairs (e.g. a quick validation decoding)."""
        sub = object.__new__(PairDataset)
        sub.__dict__.update(self.__dict__, indices=self.indices[:n], src_sizes=self.src_sizes[:n],
                            tgt_sizes=self.tgt_sizes[:n])
        return sub

    def collate(self, positions: np.ndarray) -> Batch:
        """Padded tensors for the pairs at `positions` (fairseq conventions, padding on the right)."""
        ids = self.indices[positions]
        return collate([self.src[i] for i in ids], [self.tgt[i] for i in ids], ids)

    def epoch_positions(self, rng: np.random.Generator) -> np.ndarray:
        """The positions an epoch goes through: each pair once."""
        return np.arange(len(self))


def collate(srcs: list[np.ndarray], tgts: list[np.ndarray], ids: np.ndarray,
            bos: np.ndarray | None = None) -> Batch:
    """One batch of source/target id arrays (each ending with eos). The decoder's first input is eos,
    or `bos[k]` for pair k (a target-language code, fairseq's --decoder-langtok)."""
    n, s, t = len(ids), max(len(x) for x in srcs), max(len(x) for x in tgts)
    src = np.full((n, s), PAD, dtype=np.int64)
    target = np.full((n, t), PAD, dtype=np.int64)
    prev = np.full((n, t), PAD, dtype=np.int64)
    for k, (x, y) in enumerate(zip(srcs, tgts, strict=True)):
        src[k, :len(x)] = x
        target[k, :len(y)] = y
        prev[k, 0] = EOS if bos is None else bos[k]
        prev[k, 1:len(y)] = y[:-1]
    ntokens = int(sum(len(y) for y in tgts))
    return Batch(torch.from_numpy(src), torch.from_numpy(prev), torch.from_numpy(target), ntokens, ids)


class MultiPairDataset:
    """Several translation directions as one dataset (a multilingual model's training data).

    Positions index the concatenation of the directions. With `lang_code` "source", the target
    language's code token starts each source sentence (Pasero's `lang_code`); with "decoder", it is
    the decoder's first input instead of eos (fairseq's --decoder-langtok). Each epoch draws
    direction d's pairs in proportion to size_d ** (1 / temperature) (all pairs once when 1).
    With `batch_by` "direction", each batch holds pairs of one direction only; "mixed" batches only
    look at lengths.
    """

    def __init__(self, parts: dict[str, PairDataset], lang_ids: dict[str, int], lang_code: str = "source",
                 temperature: float = 1.0, batch_by: str = "mixed"):
        self.parts, self.pairs = list(parts.values()), list(parts)
        self.lang_code, self.temperature, self.batch_by = lang_code, temperature, batch_by
        self.targets = np.array([lang_ids[pair.split("-")[1]] for pair in self.pairs], dtype=np.int64)
        sizes = [len(part) for part in self.parts]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        extra = int(lang_code == "source")
        self.src_sizes = np.concatenate([part.src_sizes for part in self.parts]) + extra
        self.tgt_sizes = np.concatenate([part.tgt_sizes for part in self.parts])
        self.name = ", ".join(part.name for part in self.parts)
        self.num_skipped = sum(part.num_skipped for part in self.parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def direction(self, positions: np.ndarray) -> np.ndarray:
        """Index (in `pairs`) of the direction of each position."""
        return np.searchsorted(self.offsets, positions, side="right") - 1

    def collate(self, positions: np.ndarray) -> Batch:
        directions = self.direction(positions)
        srcs, tgts = [], []
        for position, d in zip(positions.tolist(), directions.tolist(), strict=True):
            part = self.parts[d]
            i = part.indices[position - self.offsets[d]]
            src = part.src[i]
            srcs.append(np.concatenate([[self.targets[d]], src]) if self.lang_code == "source" else src)
            tgts.append(part.tgt[i])
        bos = self.targets[directions] if self.lang_code == "decoder" else None
        return collate(srcs, tgts, np.asarray(positions), bos)

    def epoch_positions(self, rng: np.random.Generator) -> np.ndarray:
        """Each direction's share of the epoch, by temperature: pairs of small directions are drawn
        more than once, those of large ones not all (the epoch keeps the total number of pairs)."""
        if self.temperature == 1.0:
            return np.arange(len(self))
        sizes = np.diff(self.offsets)
        shares = temperature_shares(sizes, len(self), self.temperature)
        return np.concatenate([np.repeat(np.arange(start, start + n), times_drawn(rng, int(n), int(k)))
                               for start, n, k in zip(self.offsets[:-1], sizes, shares, strict=True)])

    def head(self, n: int | None) -> MultiPairDataset:
        """The first `n` pairs of each direction (a quick validation decoding)."""
        return MultiPairDataset({pair: part.head(n) for pair, part in zip(self.pairs, self.parts, strict=True)},
                                dict(zip([p.split("-")[1] for p in self.pairs], self.targets.tolist(), strict=True)),
                                self.lang_code, self.temperature, self.batch_by)


def open_pair(data_dir: str | os.PathLike, split: str, src: str, tgt: str, **filters: Any) -> PairDataset:
    """The binarized split of a language pair; a missing file is a one-line DataError naming it."""
    prefixes = [split_prefix(data_dir, split, src, tgt, lang) for lang in (src, tgt)]
    for prefix in prefixes:
        if not dataset_exists(prefix):
            raise DataError(f"{prefix}.{{bin,idx}}: binarized data not found (check data_dir, the language "
                            f"codes and the split name, or run pasero-binarize)")
    dataset = PairDataset(IndexedDataset(prefixes[0]), IndexedDataset(prefixes[1]), name=str(prefixes[0]), **filters)
    if len(dataset) == 0:
        raise DataError(f"{prefixes[0]}: no usable sentence pairs (all empty or filtered by length)")
    return dataset


def make_batches(order: np.ndarray, src_sizes: np.ndarray, tgt_sizes: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Cut `order` (positions, sorted by length) into consecutive batches whose padded size
    (sentences x longest side) stays within max_tokens. A longer sentence gets a batch of its own."""
    lengths = np.maximum(src_sizes[order], tgt_sizes[order]).tolist()
    bounds, start, longest = [], 0, 0
    for i, length in enumerate(lengths):
        longest = max(longest, length)
        if (i - start + 1) * longest > max_tokens and i > start:
            bounds.append(i)
            start, longest = i, length
    return np.split(order, bounds) if lengths else []


def length_order(dataset: PairDataset | MultiPairDataset, rng: np.random.Generator | None = None,
                 positions: np.ndarray | None = None) -> np.ndarray:
    """`positions` (default: all) sorted by source then target length; with `rng`, equal lengths
    come in random order."""
    positions = np.arange(len(dataset)) if positions is None else positions
    perm = positions[rng.permutation(len(positions))] if rng is not None else positions
    return perm[np.lexsort((dataset.tgt_sizes[perm], dataset.src_sizes[perm]))]


def fixed_batches(dataset: PairDataset, max_tokens: int) -> list[np.ndarray]:
    """Validation batches: sorted by length, never shuffled."""
    return make_batches(length_order(dataset), dataset.src_sizes, dataset.tgt_sizes, max_tokens)


class BatchIterator:
    """Endless, resumable stream of training updates, each made of `batches_per_step` batches.

    An update consumes `batches_per_step` (= virtual_dp_size) consecutive batches of the epoch's
    shuffled list; with several processes, each takes its slice of those (see `shard`), so the
    updates are the same whatever the number of processes. The batches left at the end of an epoch
    that cannot fill a whole update are dropped (they differ from epoch to epoch).
    """

    def __init__(self, dataset: PairDataset, max_tokens: int, seed: int, batches_per_step: int = 1):
        self.dataset, self.max_tokens, self.seed = dataset, max_tokens, seed
        self.batches_per_step = batches_per_step
        self.epoch, self.offset = 1, 0  # epoch of the next update; batches already consumed in it
        self._cache: tuple[int, list[np.ndarray]] | None = None
        if len(self.epoch_batches(1)) < batches_per_step:
            raise ConfigError(f"{dataset.name}: only {len(self.epoch_batches(1))} batches of {max_tokens} tokens, "
                              f"fewer than virtual_dp_size={batches_per_step}; lower batch_size or virtual_dp_size")

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = length_order(self.dataset, rng, self.dataset.epoch_positions(rng))
            batches = self._make_batches(order)
            self._cache = epoch, [batches[i] for i in rng.permutation(len(batches))]
        return self._cache[1]

    def _make_batches(self, order: np.ndarray) -> list[np.ndarray]:
        data = self.dataset
        if getattr(data, "batch_by", "mixed") == "mixed":
            return make_batches(order, data.src_sizes, data.tgt_sizes, self.max_tokens)
        directions = data.direction(order)
        return [batch for d in range(len(data.pairs))
                for batch in make_batches(order[directions == d], data.src_sizes, data.tgt_sizes, self.max_tokens)]

    def steps_per_epoch(self) -> int:
        return len(self.epoch_batches(self.epoch)) // self.batches_per_step

    def next_step(self) -> list[np.ndarray]:
        """The batches (positions in the dataset) of the next update; moves to the next epoch
        as soon as the current one cannot fill another update, so `epoch` says when one ends."""
        batches = self.epoch_batches(self.epoch)
        step = batches[self.offset:self.offset + self.batches_per_step]
        self.offset += self.batches_per_step
        if self.offset + self.batches_per_step > len(batches):
            self.epoch, self.offset = self.epoch + 1, 0
        return step

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "num_pairs": len(self.dataset),
                "batches_per_step": self.batches_per_step, "max_tokens": self.max_tokens}

    def load_state_dict(self, state: dict[str, int]) -> None:
        same = all(state.get(k) == v for k, v in self.state_dict().items() if k not in ("epoch", "offset"))
        self.epoch = int(state["epoch"])
        if same:
            self.offset = int(state["offset"])
        else:  # other data or batching: the saved position means nothing; restart the epoch
            logger.warning("training data or batching changed since the checkpoint: restarting epoch %d "
                           "from its beginning", self.epoch)
            self.offset = 0


def shard(batches: list[np.ndarray], rank: int, world_size: int) -> list[np.ndarray]:
    """This process's consecutive share of an update's batches."""
    per_rank = len(batches) // world_size
    return batches[rank * per_rank:(rank + 1) * per_rank]
