"""What a training run has done so far, as dataclasses that go into and come out of checkpoints.

`TrainState.state_dict()` is what a checkpoint stores beside the weights and the optimizer; the
layout of its `metrics` entry is the one checkpoint selection reads (pasero.checkpoints), and
checkpoints written before these classes existed load into them unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pasero.metrics import lower_is_better


@dataclass
class Validations:
    """The early-stopping record: the best value of the best metric and its step, validations
    since the best, every validation's value by step, and the last validation's metrics."""

    best: float | None = None
    best_step: int | None = None
    bad_validations: int = 0
    history: dict[int, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)  # metrics of the latest validation, and its step

    def record(self, step: int, metrics: dict[str, float], metric: str) -> bool:
        """Add a validation; returns whether it is the new best. A NaN or inf value never becomes
        the best, and a finite one always beats it."""
        value = metrics[metric]
        best = self.best
        improved = math.isfinite(value) and (
            best is None or not math.isfinite(best) or (value < best if lower_is_better(metric) else value > best))
        if improved:
            self.best, self.best_step, self.bad_validations = value, step, 0
        else:
            self.bad_validations += 1
        self.history[step] = value
        self.last = {**metrics, "step": step}
        return improved

    def last_step(self) -> int | None:
        return self.last.get("step")

    def state_dict(self) -> dict[str, Any]:
        return {"valid": self.last, "best": self.best, "best_step": self.best_step,
                "bad_validations": self.bad_validations, "history": self.history}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any] | None) -> Validations:
        state = state or {}
        return cls(best=state.get("best"), best_step=state.get("best_step"),
                   bad_validations=int(state.get("bad_validations", 0)),
                   history={int(k): v for k, v in (state.get("history") or {}).items()},
                   last=dict(state.get("valid") or {}))


@dataclass
class TrainState:
    """Counters of a run, summed over its restarts."""

    step: int = 0
    train_seconds: float = 0.0  # time spent in updates
    wall_seconds_before: float = 0.0  # time budget (max_time) spent by the runs this one resumes
    nonfinite_updates: int = 0  # consecutive updates skipped for NaN/inf gradients
    validations: Validations = field(default_factory=Validations)

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint (older ones have no wall time: their update time is the
        closest figure)."""
        meta = ckpt.get("meta") or {}
        self.step = int(ckpt["step"])
        self.train_seconds = float(meta.get("train_seconds", 0.0))
        self.wall_seconds_before = float(meta.get("wall_seconds", self.train_seconds))
        self.validations = Validations.from_state_dict(ckpt.get("metrics"))


@dataclass
class UpdateStats:
    """Sums over the updates since the last log line."""

    loss: float = 0.0  # summed over target tokens, in nats
    nll: float = 0.0
    ntokens: float = 0.0
    nsentences: float = 0.0
    seconds: float = 0.0
    updates: int = 0
    gnorm: float = 0.0  # summed over updates (finite ones)
    lr: float = 0.0  # of the latest update

    def add(self, loss: float, nll: float, ntokens: float, nsentences: float, seconds: float, gnorm: float,
            lr: float) -> None:
        self.loss += loss
        self.nll += nll
        self.ntokens += ntokens
        self.nsentences += nsentences
        self.seconds += seconds
        self.updates += 1
        self.gnorm += gnorm if math.isfinite(gnorm) else 0.0
        self.lr = lr
