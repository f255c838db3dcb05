"""Batching, collation, the resumable iterator, the loss and the learning-rate schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import VOCAB, make_corpus, write_split

from pasero.batching import BatchIterator, fixed_batches, open_pair, shard
from pasero.criterion import LabelSmoothedCrossEntropy, perplexity
from pasero.dictionary import Dictionary
from pasero.errors import DataError
from pasero.optim import InverseSqrtSchedule, build_optimizer


@pytest.fixture
def corpus(tmp_path):
    make_corpus(tmp_path, n_train=300, n_valid=10)
    return tmp_path / "bin"


def test_filters_skip_empty_long_and_unbalanced_pairs(tmp_path):
    d = Dictionary.from_symbols(VOCAB)
    pairs = [("w1 w2", "w3"), ("", "w1"), ("w1", ""), ("w1 " * 20, "w2 " * 20), ("w1", "w2 " * 12), ("w5", "w6")]
    write_split(tmp_path, "train", pairs, d)
    data = open_pair(tmp_path, "train", "de", "en", max_source_len=15, max_target_len=15, max_len_ratio=3)
    assert data.indices.tolist() == [0, 5] and data.num_skipped == 4
    assert len(open_pair(tmp_path, "train", "de", "en")) == 4  # only empty lines without filters
    with pytest.raises(DataError, match=r"train.de-fr.de.\{bin,idx\}: binarized data not found"):
        open_pair(tmp_path, "train", "de", "fr")


def test_collate_follows_fairseq_conventions(tmp_path):
    d = Dictionary.from_symbols(VOCAB)
    write_split(tmp_path, "train", [("w0 w1 w2", "w3 w4"), ("w5", "w6 w7 w8 w9")], d)
    batch = open_pair(tmp_path, "train", "de", "en").collate(np.array([0, 1]))
    e = lambda s: d.encode(s).tolist()  # noqa: E731
    assert batch.src_tokens.tolist() == [e("w0 w1 w2"), e("w5") + [1, 1]]
    assert batch.target.tolist() == [e("w3 w4") + [1, 1], e("w6 w7 w8 w9")]
    assert batch.prev_output_tokens.tolist() == [[2] + e("w3 w4")[:-1] + [1, 1], [2] + e("w6 w7 w8 w9")[:-1]]
    assert batch.src_tokens.dtype == torch.int64 and batch.ntokens == 8 and batch.nsentences == 2


def test_batches_respect_max_tokens_and_cover_the_epoch(corpus):
    data = open_pair(corpus, "train", "de", "en")
    it = BatchIterator(data, max_tokens=100, seed=3)
    batches = it.epoch_batches(1)
    longest = np.maximum(data.src_sizes, data.tgt_sizes)
    assert all(len(b) * longest[b].max() <= 100 for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(data)))
    # grouped by length: little padding
    padded = sum(len(b) * longest[b].max() for b in batches)
    assert padded < 1.15 * longest.sum()
    same = BatchIterator(data, max_tokens=100, seed=3).epoch_batches(1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, same, strict=True))
    other_epoch = it.epoch_batches(2)
    assert [b.tolist() for b in other_epoch] != [b.tolist() for b in batches]


def test_iterator_resumes_at_the_same_batch_and_crosses_epochs(corpus):
    data = open_pair(corpus, "train", "de", "en")
    it = BatchIterator(data, max_tokens=120, seed=1, batches_per_step=2)
    steps = it.steps_per_epoch()
    for _ in range(steps - 1):
        it.next_step()
    state = it.state_dict()
    resumed = BatchIterator(data, max_tokens=120, seed=1, batches_per_step=2)
    resumed.load_state_dict(state)
    for _ in range(3):
        a, b = it.next_step(), resumed.next_step()
        assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert it.epoch == resumed.epoch == 2 and it.offset == 4
    assert [x.tolist() for x in shard(a, 1, 2)] == [a[1].tolist()]


def test_validation_batches_are_sorted_and_fixed(corpus):
    data = open_pair(corpus, "valid", "de", "en")
    batches = fixed_batches(data, 60)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(data)))
    assert [b.tolist() for b in batches] == [b.tolist() for b in fixed_batches(data, 60)]


def test_label_smoothed_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    target = torch.randint(4, 11, (2, 5))
    target[1, 3:] = 1  # padding
    mask = target.ne(1)
    loss, nll, ntokens = LabelSmoothedCrossEntropy(0.0)(logits, target)
    expected = F.cross_entropy(logits[mask], target[mask], reduction="sum")
    assert ntokens == 8 and torch.allclose(loss, expected) and torch.allclose(nll, expected)
    smoothed, nll2, _ = LabelSmoothedCrossEntropy(0.1)(logits, target)
    lprobs = logits.log_softmax(-1)[mask]
    eps_i = 0.1 / 10
    by_hand = ((1 - 0.1 - eps_i) * -lprobs.gather(1, target[mask][:, None]).sum() - eps_i * lprobs.sum())
    assert torch.allclose(smoothed, by_hand) and torch.allclose(nll2, expected)
    assert perplexity(float(nll), ntokens) == pytest.approx(math.exp(float(nll) / ntokens))


def test_inverse_sqrt_schedule_and_optimizer_state():
    model = torch.nn.Linear(3, 3)
    opt = build_optimizer(model.parameters(), "adamw", lr=1e-3, weight_decay=0.01)
    assert opt.defaults["betas"] == (0.9, 0.98) and type(opt).__name__ == "AdamW"
    sched = InverseSqrtSchedule(opt, lr=1e-3, warmup=100, warmup_init_lr=1e-7)
    assert sched.lr_at(0) == pytest.approx(1e-7)
    assert sched.lr_at(50) == pytest.approx((1e-7 + 1e-3) / 2, rel=1e-3)
    assert sched.lr_at(100) == pytest.approx(1e-3) and sched.lr_at(400) == pytest.approx(5e-4)
    sched.step(400)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    again = InverseSqrtSchedule(opt, lr=1e-3, warmup=100)
    again.load_state_dict(sched.state_dict())
    assert again.num_updates == 400
