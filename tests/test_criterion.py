"""The training loss is fairseq's label-smoothed cross-entropy, and its hand-written gradient is the
gradient of that formula."""

import pytest
import torch
import torch.nn.functional as F

from pasero.criterion import LabelSmoothedCrossEntropy


def fairseq_formula(logits, target, eps, pad=1):
    """fairseq's label_smoothed_nll_loss, through autograd: (1 - eps - eps_i) nll + eps_i sum(-log p)."""
    lprobs = F.log_softmax(logits.float(), dim=-1)
    keep = target.ne(pad)
    nll = -lprobs.gather(-1, target[..., None]).squeeze(-1)[keep].sum()
    eps_i = eps / (lprobs.size(-1) - 1)
    return (1 - eps - eps_i) * nll + eps_i * -lprobs.sum(-1)[keep].sum(), nll


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradient_are_fairseq_s(eps, dtype):
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 50).to(dtype).requires_grad_()
    target = torch.randint(0, 50, (3, 7))
    target[0, 4:] = 1  # padding
    loss, nll, ntokens = LabelSmoothedCrossEntropy(eps)(logits, target)
    expected_loss, expected_nll = fairseq_formula(logits, target, eps)
    assert ntokens == 18
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(nll, expected_nll.detach())
    grad, = torch.autograd.grad(2.5 * loss, logits)
    expected_grad, = torch.autograd.grad(2.5 * expected_loss, logits)
    assert grad.dtype == dtype and not grad[0, 4:].any()  # no gradient through padding
    torch.testing.assert_close(grad.float(), expected_grad.float(), atol=1e-6, rtol=1e-3)
