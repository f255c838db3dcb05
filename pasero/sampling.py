"""Temperature sampling across languages or directions (Pasero's `lang_temperature`, fairseq's
temperature-based sampling): a part of size n gets a share of the draws proportional to
n ** (1 / T); T = 1 keeps the natural proportions, a large T tends to uniform."""

from __future__ import annotations

import numpy as np


def temperature_shares(sizes: np.ndarray | list[int], total: int, temperature: float) -> np.ndarray:
    """How many of `total` draws go to each part."""
    sizes = np.asarray(sizes, dtype=np.int64)
    weights = np.where(sizes > 0, sizes.astype(np.float64) ** (1.0 / temperature), 0.0)
    return np.round(total * weights / weights.sum()).astype(np.int64)


def times_drawn(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """How many times each of `n` items is drawn for `k` draws: every item k // n times, and a
    random k % n of them once more (no item twice more than another)."""
    times = np.full(n, k // n if n else 0, dtype=np.int64)
    if n:
        times[rng.choice(n, k % n, replace=False)] += 1
    return times
