"""Label-smoothed cross-entropy, the training objective of fairseq's translation models.

Returns *sums* over the target tokens rather than means: with gradient accumulation and several
processes, the gradient is normalized once by the total number of target tokens of the whole
update (as fairseq does), which makes the result independent of how the update was split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LN2 = math.log(2)


class LabelSmoothedCrossEntropy:
    """fairseq's `label_smoothed_cross_entropy`: (1 - eps - eps_i) * nll + eps_i * sum(-log p),
    eps_i = eps / (V - 1), padding positions ignored."""

    def __init__(self, label_smoothing: float = 0.1, padding_idx: int = 1):
        self.eps, self.padding_idx = label_smoothing, padding_idx

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(B, T, V) logits and (B, T) target -> (loss sum, nll sum (detached), number of target tokens)."""
        lprobs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
        mask = target.ne(self.padding_idx)
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0).sum()
        if self.eps > 0:
            eps_i = self.eps / (lprobs.size(-1) - 1)
            smooth = -lprobs.sum(-1).masked_fill(~mask, 0.0).sum()
            loss = (1.0 - self.eps - eps_i) * nll + eps_i * smooth
        else:
            loss = nll
        return loss, nll.detach(), int(mask.sum())


def base2(nats_sum: float, ntokens: float) -> float:
    """Per-token value in bits, as fairseq reports its losses."""
    return nats_sum / max(ntokens, 1) / LN2


def perplexity(nll_sum: float, ntokens: float) -> float:
    """2 ** (nll in bits per token) (= exp of the nats per token); inf rather than an overflow."""
    try:
        return 2 ** base2(nll_sum, ntokens)
    except OverflowError:
        return float("inf")
