"""Progress of the long steps (decoding, binarization, tokenizer sampling, downloads).

On a terminal, a tqdm bar on stderr. In a log file (a Snakemake rule's, a SLURM job's), no bar
redraws: a step that asks for it logs a progress line every so often instead, so that a long
decoding under Snakemake still says where it is.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

logger = logging.getLogger("pasero.progress")


class LogProgress:
    """tqdm's `update` / context manager interface, as a log line every `every` seconds."""

    def __init__(self, total: int | None, desc: str | None, unit: str, every: float):
        self.total, self.desc, self.unit, self.every = total, desc or "progress", unit, every
        self.n = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            rate = self.n / max(now - self.start, 1e-9)
            if self.total:
                eta = (self.total - self.n) / rate if rate else 0.0
                logger.info("%s: %d/%d %s (%.0f%%), %.1f %s/s, ETA %d:%02d:%02d", self.desc, self.n, self.total,
                            self.unit, 100 * self.n / self.total, rate, self.unit, eta // 3600, eta % 3600 // 60,
                            eta % 60)
            else:
                logger.info("%s: %d %s, %.1f %s/s", self.desc, self.n, self.unit, rate, self.unit)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(total: int | None, desc: str | None, unit: str, disable: bool = False,
                 log_every: float | None = None, **options: Any) -> Any:
    """A tqdm bar on stderr (rate, ETA) when it is a terminal; otherwise nothing, or with `log_every`
    a progress line every `log_every` seconds."""
    from tqdm import tqdm

    if not disable and not sys.stderr.isatty() and log_every:
        return LogProgress(total, desc, unit, log_every)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable or not sys.stderr.isatty(), dynamic_ncols=True,
                **options)
