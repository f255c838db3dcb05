"""Optimizer and learning-rate schedule (fairseq's `adam` + `inverse_sqrt`).

The schedule is a pure function of the update number, so resuming needs only the step count; it
still has a state_dict so that checkpoints are uniform and a future schedule can keep state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from pasero.errors import ConfigError


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str = "adam", lr: float = 5e-4,
                    betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-8, weight_decay: float = 0.0,
                    ) -> torch.optim.Optimizer:
    """Adam (weight decay added to the gradient, torch's Adam) or AdamW (decoupled weight decay).

    The fused implementation (one kernel for all parameters, on CPU and CUDA) is used when
    the parameters allow it.
    """
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if name not in classes:
        raise ConfigError(f"unknown optimizer '{name}'; choose one of: {', '.join(classes)}")
    params = list(params)
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return classes[name](params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused)


class InverseSqrtSchedule:
    """Linear warm-up from `warmup_init_lr` to `lr` over `warmup` updates, then lr * sqrt(warmup / step).

    `lr_at(n)` is the rate of the update made after n completed updates (fairseq's convention:
    the first update uses warmup_init_lr). kind="constant" keeps `lr` throughout.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, warmup: int = 4000,
                 warmup_init_lr: float = 1e-7, kind: str = "inverse_sqrt"):
        if kind not in ("inverse_sqrt", "constant"):
            raise ConfigError(f"unknown lr_scheduler '{kind}'; choose inverse_sqrt or constant")
        self.optimizer, self.lr, self.kind = optimizer, lr, kind
        self.warmup, self.warmup_init_lr = warmup, warmup_init_lr
        self.num_updates = 0

    def lr_at(self, num_updates: int) -> float:
        if self.kind == "constant":
            return self.lr
        if num_updates < self.warmup:
            return self.warmup_init_lr + num_updates * (self.lr - self.warmup_init_lr) / self.warmup
        return self.lr * math.sqrt(max(self.warmup, 1) / max(num_updates, 1))

    def step(self, num_updates: int) -> float:
        """Set the learning rate of the next update, given the number of completed updates."""
        self.num_updates = num_updates
        lr = self.lr_at(num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict[str, float | int | str]:
        return {"num_updates": self.num_updates, "lr": self.lr, "warmup": self.warmup,
                "warmup_init_lr": self.warmup_init_lr, "kind": self.kind}

    def load_state_dict(self, state: dict) -> None:
        # The configured lr/warmup win (a resumed run may change them); only the position is restored.
        self.num_updates = int(state.get("num_updates", 0))
