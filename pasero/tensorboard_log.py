"""TensorBoard scalars of a training run: every row of train.jsonl (which stays the source of
truth for the report and the tests), as `train/loss`, `valid/bleu`, `valid_de-en/chrf`...

`tensorboard --logdir results/` then shows every experiment's curves side by side.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

NOT_SCALARS = ("type", "step", "epoch", "best_step")


class TensorBoardLog:
    """A SummaryWriter opened on the first row. `purge_step` drops what a killed run had written
    from that step on, so that the steps redone after resuming are not drawn twice."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._writer: Any = None

    def write(self, row: dict[str, Any]) -> None:
        step = row["step"]
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder), purge_step=step)
        for name, value in _scalars(row["type"], row):
            self._writer.add_scalar(name, value, step)
        for pair, metrics in (row.get("directions") or {}).items():
            for name, value in _scalars(f"{row['type']}_{pair}", metrics):
                self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _scalars(prefix: str, row: dict[str, Any]) -> list[tuple[str, float]]:
    return [(f"{prefix}/{key}", float(value)) for key, value in row.items()
            if key not in NOT_SCALARS and isinstance(value, int | float) and not isinstance(value, bool)]
