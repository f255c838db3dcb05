"""What a training run reports as it goes: the rows of train.jsonl (the source of truth for the
report and the tests) and their TensorBoard copy, and the rate and ETA of its log lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pasero.tensorboard_log import TensorBoardLog


def clock_time(seconds: float) -> str:
    """H:MM:SS, hours unbounded (a 5-day run reads 120:00:00)."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def eta(rate: float | None, steps_left: int, budget_left: float | None) -> str:
    """Time left until max_steps at `rate` updates/s, or until the time budget if that is sooner."""
    left = None if not rate else steps_left / rate
    if budget_left is not None:
        left = max(0.0, budget_left) if left is None else min(left, max(0.0, budget_left))
    return "?" if left is None else clock_time(left)


class RunLog:
    """train.jsonl and TensorBoard rows of one run, and its update rate between log lines (on the
    wall clock: validation and saving included, so that the ETA holds)."""

    def __init__(self, model_dir: Path, tensorboard: bool):
        self.path = model_dir / "train.jsonl"
        self.tensorboard = TensorBoardLog(model_dir / "tensorboard") if tensorboard else None
        self._last: tuple[float, int] | None = None  # (clock, step) of the last log line

    def start(self, now: float, step: int) -> None:
        self._last = (now, step)

    def rate(self, now: float, step: int) -> float | None:
        """Updates per second since the last call (or `start`)."""
        last, self._last = self._last, (now, step)
        if last is None or now <= last[0] or step <= last[1]:
            return None
        return (step - last[1]) / (now - last[0])

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.write(row)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
