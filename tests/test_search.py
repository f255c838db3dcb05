"""Beam search, greedy decoding and sampling over the decoder cache."""

from dataclasses import dataclass

import pytest
import torch
from decoding_models import reverse_batch, tiny_config, train_reverse_model

from pasero import search
from pasero.model import Transformer
from pasero.search import EOS
from pasero.search_options import SearchOptions

VOCAB = 24


@pytest.fixture(scope="module")
def model():
    return train_reverse_model(VOCAB)


@pytest.fixture(scope="module")
def src():
    return reverse_batch(torch.Generator().manual_seed(1), VOCAB, 12)[0]


@dataclass
class PrefixState:
    src: torch.Tensor
    prefix: torch.Tensor
    step: int = 0


class NoCacheModel(torch.nn.Module):
    """The model behind the search interface, but recomputing the whole prefix with `forward` at
    every step: the reference that the cached decoder must reproduce."""

    def __init__(self, model):
        super().__init__()
        self.model, self.cfg, self.padding_idx = model, model.cfg, model.padding_idx

    def encode(self, src_tokens):
        return src_tokens

    def init_cache(self, src_tokens, max_len):
        return PrefixState(src_tokens, src_tokens.new_zeros(src_tokens.size(0), 0))

    def decode_step(self, tokens, src_tokens, state, need_attention=False):
        state.prefix = torch.cat([state.prefix, tokens[:, None]], dim=1)
        state.step += 1
        return self.model(src_tokens, state.prefix)[:, -1], None

    def reorder(self, src_tokens, state, order):
        return src_tokens[order], PrefixState(src_tokens[order], state.prefix[order], state.step)

    def expand_beams(self, src_tokens, state, beams):  # the reference: a copy of the source per beam
        return self.reorder(src_tokens, state, torch.arange(src_tokens.size(0)).repeat_interleave(beams))

    def reorder_self_attention(self, state, order):
        state.prefix = state.prefix[order]


def assert_same_hypotheses(a, b, atol=1e-4):
    assert len(a) == len(b)
    for hyps_a, hyps_b in zip(a, b, strict=True):
        assert [h.tokens.tolist() for h in hyps_a] == [h.tokens.tolist() for h in hyps_b]
        for x, y in zip(hyps_a, hyps_b, strict=True):
            assert x.score == pytest.approx(y.score, abs=atol)
            assert x.normalized_score == pytest.approx(y.normalized_score, abs=atol)
            torch.testing.assert_close(x.positional_scores, y.positional_scores, atol=atol, rtol=0)


def teacher_forced_lprobs(model, src_row, tokens, bos=EOS):
    """Log-probability of each token of a hypothesis, scored by `forward` in one pass."""
    src_row = src_row[src_row.ne(model.padding_idx)][None]
    prev = torch.cat([torch.tensor([bos]), tokens[:-1]])[None]
    with torch.no_grad():
        lprobs = torch.log_softmax(model(src_row, prev).float(), dim=-1)[0]
    return lprobs.gather(1, tokens[:, None]).squeeze(1)


@pytest.fixture(scope="module")
def random_model():
    """Untrained, with a sharp output layer: unlike the trained model, its predictions depend a lot
    on the whole target prefix, so a cache that mixes up the beams' histories shows."""
    torch.manual_seed(0)
    model = Transformer(tiny_config(tied_output=False), VOCAB, VOCAB).eval()
    with torch.no_grad():
        model.output_proj.weight.mul_(4)
    return model


@pytest.mark.parametrize("beam_size,len_penalty", [(5, 1.0), (3, 0.5), (1, 1.0)])
@pytest.mark.parametrize("trained", [True, False])
def test_cached_decoding_equals_recomputing_the_prefix(model, random_model, src, beam_size, len_penalty, trained):
    model = model if trained else random_model
    options = dict(beam_size=beam_size, nbest=beam_size, len_penalty=len_penalty, max_len_a=1.0, max_len_b=3)
    cached = search.beam_search(model, src, SearchOptions(**options))
    assert_same_hypotheses(cached, search.beam_search(NoCacheModel(model), src, SearchOptions(**options)))
    # One sentence alone: no sentence leaves the batch, beams move among themselves at every step.
    for i in range(3):
        options["max_len_b"] = 10
        assert_same_hypotheses(search.beam_search(model, src[i:i + 1], SearchOptions(**options)),
                               search.beam_search(NoCacheModel(model), src[i:i + 1], SearchOptions(**options)))
    if beam_size == 1:
        assert_same_hypotheses(search.greedy_search(model, src, SearchOptions(len_penalty=len_penalty)),
                               search.greedy_search(NoCacheModel(model), src, SearchOptions(len_penalty=len_penalty)))


@pytest.mark.parametrize("trained", [True, False])
def test_scores_are_the_models_log_probabilities(model, random_model, src, trained):
    """Every hypothesis rescored by `forward` in one pass: an independent check of the cache and of
    the beams' bookkeeping (which the step-wise reference above shares)."""
    model = model if trained else random_model
    beam = search.beam_search(model, src, SearchOptions(beam_size=4, nbest=4, len_penalty=1.3))
    greedy = search.greedy_search(model, src, SearchOptions(len_penalty=1.3))
    for i, hyps in enumerate(beam):
        for h in hyps + greedy[i]:
            torch.testing.assert_close(h.positional_scores, teacher_forced_lprobs(model, src[i], h.tokens),
                                       atol=1e-4, rtol=0)
            assert h.score == pytest.approx(float(h.positional_scores.sum()), abs=1e-4)
            assert h.normalized_score == pytest.approx(h.score / len(h.tokens) ** 1.3, abs=1e-5)


def test_beam_one_equals_greedy(model, src):
    assert_same_hypotheses(search.beam_search(model, src, SearchOptions(beam_size=1)), search.greedy_search(model, src))
    assert_same_hypotheses(search.generate(model, src, SearchOptions(beam_size=1)), search.greedy_search(model, src))


@pytest.mark.parametrize("beam_size", [1, 5])
def test_result_does_not_depend_on_the_batch(model, src, beam_size):
    batch = search.beam_search(model, src, SearchOptions(beam_size=beam_size, nbest=beam_size))
    alone = [search.beam_search(model, src[i:i + 1], SearchOptions(beam_size=beam_size, nbest=beam_size))[0]
             for i in range(len(src))]
    assert_same_hypotheses(batch, alone)
    # Another composition: reversed order, next to a long sentence (more padding, longer limit).
    long = torch.arange(4, 4 + src.size(1) + 6)[None] % VOCAB + 4
    mixed = search.collate_source([s[s.ne(1)] for s in src.flip(0)] + [torch.cat([long[0], torch.tensor([EOS])])])
    reordered = search.beam_search(model, mixed, SearchOptions(beam_size=beam_size, nbest=beam_size))[:-1][::-1]
    assert_same_hypotheses(batch, reordered)


@pytest.mark.parametrize("beam_size", [1, 5])
def test_sentences_of_very_different_lengths_in_one_batch(model, random_model, beam_size):
    """Sentences leave the batch one length after another, so the cache shrinks many times while the
    longest ones go on: every sentence gets what it gets alone, and what recomputing prefixes gives."""
    gen = torch.Generator().manual_seed(2)
    lengths = [1, 30, 2, 17, 5, 25, 9, 3]
    src = search.collate_source([torch.cat([torch.randint(4, VOCAB, (n,), generator=gen), torch.tensor([EOS])])
                                 for n in lengths])
    options = SearchOptions(beam_size=beam_size, nbest=beam_size, max_len_a=1.0, max_len_b=2)
    for m in (model, random_model):
        batch = search.generate(m, src, options)
        assert_same_hypotheses(batch, [search.generate(m, src[i:i + 1], options)[0] for i in range(len(src))])
        assert_same_hypotheses(batch, search.generate(NoCacheModel(m), src, options))


def test_nbest_sorted_distinct_and_complete(model, src):
    for hyps in search.beam_search(model, src, SearchOptions(beam_size=6, nbest=4, len_penalty=0.7)):
        assert len(hyps) == 4
        normalized = [h.normalized_score for h in hyps]
        assert normalized == sorted(normalized, reverse=True)
        assert len({tuple(h.tokens.tolist()) for h in hyps}) == 4
        assert all(h.tokens[-1] == EOS and EOS not in h.tokens[:-1].tolist() for h in hyps)


def test_min_and_max_length(model, src):
    src_lens = src.ne(1).sum(1).tolist()
    for hyps in search.beam_search(model, src, SearchOptions(beam_size=4, nbest=4, min_len=9, max_len_b=30)):
        assert all(len(h.tokens) - 1 >= 9 for h in hyps)
    for max_len_a, max_len_b in [(0.0, 2), (0.5, 1)]:
        for sampling, beam in [(False, 4), (False, 1), (True, 1)]:
            options = SearchOptions(beam_size=beam, sampling=sampling, seed=0, max_len_a=max_len_a,
                                    max_len_b=max_len_b)
            results = search.generate(model, src, options)
            for i, hyps in enumerate(results):
                limit = int(max_len_a * src_lens[i] + max_len_b)
                assert all(len(h.tokens) - 1 <= limit and h.tokens[-1] == EOS for h in hyps)
    # A minimum length above the maximum: the maximum wins (eos is forced there).
    for hyps in search.beam_search(model, src, SearchOptions(beam_size=2, min_len=50, max_len_a=0, max_len_b=4)):
        assert len(hyps[0].tokens) == 5


def test_length_penalty_favours_longer_hypotheses(model, src):
    def total_length(len_penalty):
        results = search.beam_search(model, src, SearchOptions(beam_size=5, len_penalty=len_penalty))
        return sum(len(hyps[0].tokens) for hyps in results)
    assert total_length(0.0) < total_length(1.0) <= total_length(3.0)


def test_sampling(model, src):
    first = search.sample(model, src, SearchOptions(nbest=3, seed=3))
    assert [[h.tokens.tolist() for h in s] for s in first] == \
        [[h.tokens.tolist() for h in s] for s in search.sample(model, src, SearchOptions(nbest=3, seed=3))]
    assert [[h.tokens.tolist() for h in s] for s in first] != \
        [[h.tokens.tolist() for h in s] for s in search.sample(model, src, SearchOptions(nbest=3, seed=4))]
    greedy = search.greedy_search(model, src)
    assert_same_hypotheses(search.sample(model, src, SearchOptions(top_k=1, seed=0)), greedy)
    assert_same_hypotheses(search.sample(model, src, SearchOptions(top_p=1e-6, seed=0)), greedy)
    # With top_k=2 every sampled token is one of the two most probable ones.
    for i, samples in enumerate(search.sample(model, src, SearchOptions(nbest=2, top_k=2, temperature=3.0, seed=0))):
        for h in samples:
            prev = torch.cat([torch.tensor([EOS]), h.tokens[:-1]])[None]
            s = src[i][src[i].ne(1)][None]
            with torch.no_grad():
                ranks = (model(s, prev)[0] > model(s, prev)[0].gather(1, h.tokens[:, None])).sum(1)
            assert ranks.max() <= 1


def test_attention(model, src):
    with_attn = search.beam_search(model, src, SearchOptions(beam_size=3, nbest=2), need_attention=True)
    assert_same_hypotheses(with_attn, search.beam_search(model, src, SearchOptions(beam_size=3, nbest=2)))
    src_lens = src.ne(1).sum(1).tolist()
    for i, hyps in enumerate(with_attn):
        for h in hyps:
            assert h.attention.shape == (len(h.tokens), src_lens[i])
            torch.testing.assert_close(h.attention.sum(1), torch.ones(len(h.tokens)))
    greedy = search.greedy_search(model, src, need_attention=True)
    assert greedy[0][0].attention.shape == (len(greedy[0][0].tokens), src_lens[0])


def test_search_turns_dropout_off_and_restores_the_mode(src):
    torch.manual_seed(0)
    model = Transformer(tiny_config(dropout=0.5), VOCAB, VOCAB).train()
    a = search.generate(model, src, SearchOptions(beam_size=3))
    assert model.training
    assert_same_hypotheses(a, search.generate(model, src, SearchOptions(beam_size=3)))
    assert search.generate(model, src[:0]) == []
    assert search.generate(model, [[5, 6, EOS], [7, EOS]], SearchOptions(beam_size=2))[1][0].tokens[-1] == EOS


@pytest.mark.parametrize("options", [SearchOptions(beam_size=3, nbest=2), SearchOptions(beam_size=1),
                                     SearchOptions(sampling=True, nbest=2, seed=0)])
def test_a_first_decoder_input_other_than_eos_is_what_the_scores_are_conditioned_on(random_model, src, options):
    """A target-language code as the decoder's first input (fairseq's --decoder-langtok): every
    search conditions on it, and it is not part of the hypotheses."""
    code = 7
    for i, hyps in enumerate(search.generate(random_model, src, options, bos=torch.tensor(code))):
        for h in hyps:
            torch.testing.assert_close(h.positional_scores, teacher_forced_lprobs(random_model, src[i], h.tokens, code),
                                       atol=1e-4, rtol=0)
