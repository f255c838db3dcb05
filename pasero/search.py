"""Batched search over the decoder's key/value cache: beam search, greedy decoding and sampling.

Every sentence and every beam of a batch moves forward in one tensor batch: one decoder step,
one top-k over beam x vocabulary, one gather to reorder the beams' histories and one call of
`model.reorder...` to reorder the cache. Python only loops over time steps. Sentences leave the batch as soon as
they are finished, so a long sentence does not make the short ones pay for its steps.

Conventions are fairseq's, so that results can be compared with `fairseq-generate`:
- the decoder's first input is eos; hypotheses end with eos, which counts in their length;
- a sentence of `src_len` tokens (eos included) gets at most `max_len_a * src_len + max_len_b`
  tokens before eos (then eos is forced), and at least `min_len`;
- a finished hypothesis is ranked by `score / length ** len_penalty`; a sentence is done when it
  has `beam_size` finished hypotheses (only eos candidates among the top `beam_size` finish).
The maximum length is computed per sentence (not per batch) so that a sentence's translation
does not depend on which other sentences share its batch.

Source tokens are right-padded with the pad index (1): positions start at 0 for every sentence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from pasero.dictionary import Dictionary
from pasero.errors import ConfigError
from pasero.options import check_values
from pasero.search_options import SearchOptions

if TYPE_CHECKING:
    from pasero.model import Transformer

PAD, EOS = Dictionary.pad_idx, Dictionary.eos_idx
NEG_INF = float("-inf")


@dataclass
class Hypothesis:
    tokens: Tensor  # (T,) token ids, ending with eos
    score: float  # sum of the tokens' log-probabilities (eos included)
    normalized_score: float  # score / T ** len_penalty: what the search ranks by
    positional_scores: Tensor  # (T,) log-probability of each token
    attention: Tensor | None = None  # (T, src_len) cross-attention of the last decoder layer


def collate_source(sentences: Sequence[Tensor | Sequence[int]], pad: int = PAD) -> Tensor:
    """Right-pad token id sequences (each ending with eos) into one (B, S) batch."""
    seqs = [torch.as_tensor(s, dtype=torch.long) for s in sentences]
    batch = torch.full((len(seqs), max((len(s) for s in seqs), default=0)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        batch[i, :len(s)] = s
    return batch


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off during search (validation runs in the middle of training), restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def max_lengths(model: Transformer, src_tokens: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """Per-sentence maximum number of target tokens before eos (within the model's positions)."""
    src_lens = src_tokens.ne(model.padding_idx).sum(1)
    max_lens = (max_len_a * src_lens.double() + max_len_b).long()
    return max_lens.clamp(min=0, max=model.cfg.max_positions - 1)


def constrain(lprobs: Tensor, step: int, min_len: int, force_eos: Tensor | None) -> Tensor:
    """No padding; no eos before `min_len` tokens; only eos in rows that reached their maximum."""
    lprobs[:, PAD] = NEG_INF
    eos_lprobs = lprobs[:, EOS].clone() if force_eos is not None else None
    if step < min_len:
        lprobs[:, EOS] = NEG_INF
    if force_eos is not None:  # None: no row is at its maximum length
        lprobs.masked_fill_(force_eos[:, None], NEG_INF)
        lprobs[:, EOS] = torch.where(force_eos, eos_lprobs, lprobs[:, EOS])
    return lprobs


def _check(src_tokens: Tensor, options: SearchOptions | None) -> SearchOptions:
    """The options (the defaults when None), checked, for a (B, S) batch."""
    if src_tokens.dim() != 2:
        raise ValueError(f"src_tokens must be (batch, length), got shape {tuple(src_tokens.shape)}")
    options = options or SearchOptions()
    check_values(options)
    return options


def beam_search(model: Transformer, src_tokens: Tensor, options: SearchOptions | None = None,
                need_attention: bool = False, bos: Tensor | None = None) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each source sentence (right-padded (B, S) token ids), best first."""
    options = _check(src_tokens, options)
    if options.nbest > options.beam_size:
        raise ConfigError(f"nbest ({options.nbest}) must not exceed beam_size ({options.beam_size})")
    bsz, k = src_tokens.size(0), options.beam_size
    min_len, len_penalty = options.min_len, options.len_penalty
    if bsz == 0:
        return []
    device = src_tokens.device
    with eval_mode(model):
        max_lens = max_lengths(model, src_tokens, options.max_len_a, options.max_len_b)
        steps = int(max_lens.max()) + 1
        encoder_out = model.encode(src_tokens)
        cache = model.init_cache(encoder_out, steps)
        encoder_out, cache = model.expand_beams(encoder_out, cache, k)

        # State of the active sentences (b of them, b * k rows); `sent` maps them to the input order.
        sent = torch.arange(bsz, device=device)
        scores = torch.zeros(bsz, k, device=device)
        scores[:, 1:] = NEG_INF  # all beams start identical: expand only the first one
        prev = _first_input(bos, bsz, device).repeat_interleave(k)
        tokens = torch.full((bsz * k, steps), PAD, dtype=torch.long, device=device)
        pos_scores = torch.zeros(bsz * k, steps, device=device)
        src_len = src_tokens.size(1)
        attn = torch.zeros(bsz * k, steps, src_len, device=device) if need_attention else None
        # Finished hypotheses, per input sentence.
        fin = _Finished(bsz, k, steps, src_len if need_attention else 0, device)

        shortest = int(max_lens.min())  # from this step on, eos is forced in some sentence
        work = _Workspace()
        for step in range(steps):
            logits, step_attn = model.decode_step(prev, encoder_out, cache, need_attention=need_attention)
            b, vocab = scores.size(0), logits.size(1)
            floats, lprobs = work.views(b * k, vocab, logits.device)  # (b * k, vocab) float32 each
            lprobs = torch.log_softmax(logits if logits.dtype == torch.float32 else floats.copy_(logits), dim=-1,
                                       out=lprobs)
            force = (max_lens[sent] <= step).repeat_interleave(k) if step >= shortest else None
            lprobs = constrain(lprobs, step, min_len, force)
            if attn is not None:
                attn[:, step] = step_attn.float()

            cand = torch.add(scores.unsqueeze(2), lprobs.view(b, k, vocab), out=floats.view(b, k, vocab))
            cand = cand.view(b, k * vocab)
            cand_scores, cand_idx = cand.topk(min(2 * k, k * vocab), dim=1)
            cand_rows = cand_idx.div(vocab, rounding_mode="floor") + torch.arange(b, device=device)[:, None] * k
            cand_tokens = cand_idx.remainder(vocab)
            cand_eos = cand_tokens.eq(EOS) & cand_scores.isfinite()

            # Eos among the best k candidates finishes a hypothesis.
            fin_mask = cand_eos[:, :k]
            done = (fin.count[sent] + fin_mask.sum(1)).ge(k) | max_lens[sent].le(step)
            any_finished, any_done, all_done = torch.stack([fin_mask.any(), done.any(), done.all()]).tolist()
            if any_finished:
                fin.add(sent, fin_mask, cand_rows[:, :k], cand_scores[:, :k], step, len_penalty,
                        tokens, pos_scores, lprobs[:, EOS], attn)
            if all_done:
                break

            # The k best candidates that do not end with eos carry on.
            order = cand_eos.long() * cand.size(1) + torch.arange(cand_eos.size(1), device=device)
            keep = order.topk(k, dim=1, largest=False).indices
            rows = cand_rows.gather(1, keep)
            new_tokens = cand_tokens.gather(1, keep)
            scores = cand_scores.gather(1, keep)
            new_pos = lprobs[rows.view(-1), new_tokens.view(-1)]
            if any_done:  # finished sentences leave the batch
                rows, new_tokens, scores, new_pos = rows[~done], new_tokens[~done], scores[~done], \
                    new_pos.view(b, k)[~done]
                sent = sent[~done]
                shortest = int(max_lens[sent].min())
                encoder_out, cache = model.reorder(encoder_out, cache, rows.view(-1))
            else:
                model.reorder_self_attention(cache, rows.view(-1))
            rows = rows.view(-1)
            tokens, pos_scores = tokens.index_select(0, rows), pos_scores.index_select(0, rows)
            tokens[:, step], pos_scores[:, step] = new_tokens.view(-1), new_pos.view(-1)
            if attn is not None:
                attn = attn.index_select(0, rows)
            prev = new_tokens.view(-1)
        return fin.results(src_tokens.ne(model.padding_idx).sum(1), options.nbest)


class _Workspace:
    """Two float32 buffers reused by every step of a beam search for its (rows, vocab) tensors (logits
    in float32, log-probabilities, candidate scores). Tens of MB each with a real vocabulary: as fresh
    tensors they cost page faults at every step, which took longer than the arithmetic on them (float
    copy, log_softmax, sum and top-k of 900 rows x 10k: 85 ms fresh, 28 ms in these buffers; 2-5% of a
    transformer_small step on CPU)."""

    def __init__(self) -> None:
        self.buffers: tuple[Tensor, Tensor] | None = None

    def views(self, rows: int, vocab: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Two (rows, vocab) float32 views; contents undefined. Rows only shrink during a search."""
        if self.buffers is None or self.buffers[0].numel() < rows * vocab:
            self.buffers = tuple(torch.empty(rows * vocab, dtype=torch.float32, device=device) for _ in range(2))
        return tuple(buffer[:rows * vocab].view(rows, vocab) for buffer in self.buffers)


class _Finished:
    """Finished hypotheses of every input sentence in fixed-size tensors (no per-beam Python objects)."""

    def __init__(self, bsz: int, k: int, steps: int, src_len: int, device: torch.device):
        self.k = k
        self.count = torch.zeros(bsz, dtype=torch.long, device=device)
        self.tokens = torch.full((bsz, k, steps), PAD, dtype=torch.long, device=device)
        self.pos_scores = torch.zeros(bsz, k, steps, device=device)
        self.scores = torch.full((bsz, k), NEG_INF, device=device)
        self.normalized = torch.full((bsz, k), NEG_INF, device=device)
        self.lengths = torch.zeros(bsz, k, dtype=torch.long, device=device)
        self.attn = torch.zeros(bsz, k, steps, src_len, device=device) if src_len else None

    def add(self, sent: Tensor, mask: Tensor, rows: Tensor, scores: Tensor, step: int, len_penalty: float,
            tokens: Tensor, pos_scores: Tensor, eos_lprobs: Tensor, attn: Tensor | None) -> None:
        """Store the candidates in `mask` (active sentence x candidate) that end with eos at `step`."""
        slot = self.count[sent][:, None] + mask.long().cumsum(1) - 1
        mask = mask & slot.lt(self.k)  # at most k finished hypotheses per sentence
        b_idx, c_idx = mask.nonzero(as_tuple=True)
        sent_idx, slot_idx, row = sent[b_idx], slot[b_idx, c_idx], rows[b_idx, c_idx]
        hyp_tokens = tokens[row]
        hyp_tokens[:, step] = EOS
        hyp_pos = pos_scores[row]
        hyp_pos[:, step] = eos_lprobs[row]
        self.tokens[sent_idx, slot_idx] = hyp_tokens
        self.pos_scores[sent_idx, slot_idx] = hyp_pos
        self.scores[sent_idx, slot_idx] = scores[b_idx, c_idx]
        self.normalized[sent_idx, slot_idx] = scores[b_idx, c_idx] / (step + 1) ** len_penalty
        self.lengths[sent_idx, slot_idx] = step + 1
        if self.attn is not None:
            self.attn[sent_idx, slot_idx] = attn[row]
        self.count.index_add_(0, sent_idx, torch.ones_like(sent_idx))

    def results(self, src_lens: Tensor, nbest: int) -> list[list[Hypothesis]]:
        order = self.normalized.argsort(dim=1, descending=True, stable=True)[:, :nbest]
        pick = lambda t: t.gather(1, order.view(order.shape + (1,) * (t.dim() - 2)).expand(  # noqa: E731
            order.shape + t.shape[2:])).cpu()
        tokens, pos, scores, norm, lengths = (pick(t) for t in (self.tokens, self.pos_scores, self.scores,
                                                                 self.normalized, self.lengths))
        attn = pick(self.attn) if self.attn is not None else None
        src_lens = src_lens.tolist()
        out = []
        for i, count in enumerate(self.count.clamp(max=nbest).tolist()):
            out.append([Hypothesis(tokens[i, j, :n].clone(), float(scores[i, j]), float(norm[i, j]),
                                   pos[i, j, :n].clone(),
                                   attn[i, j, :n, :src_lens[i]].clone() if attn is not None else None)
                        for j, n in enumerate(lengths[i, :count].tolist())])
        return out


def greedy_search(model: Transformer, src_tokens: Tensor, options: SearchOptions | None = None,
                  need_attention: bool = False, bos: Tensor | None = None) -> list[list[Hypothesis]]:
    """The most probable next token at every step: beam search with one beam, without its bookkeeping
    (beam_size, nbest and the sampling options are not used)."""
    return _sequential(model, src_tokens, 1, _argmax, 1.0, options or SearchOptions(), need_attention, bos)


def sample(model: Transformer, src_tokens: Tensor, options: SearchOptions | None = None,
           need_attention: bool = False, bos: Tensor | None = None) -> list[list[Hypothesis]]:
    """`options.nbest` independent samples per sentence, best normalized score first.

    Tokens are drawn from softmax(logits / temperature), restricted to the `top_k` most probable
    tokens (0: all) and to the smallest set whose probability reaches `top_p` (nucleus sampling).
    Scores are log-probabilities under softmax(logits / temperature). A `seed` makes it repeatable.
    """
    options = _check(src_tokens, options)
    top_k, top_p = options.top_k, options.top_p
    generator = torch.Generator(device=src_tokens.device)
    if options.seed is None:
        generator.seed()
    else:
        generator.manual_seed(options.seed)

    def choose(lprobs: Tensor) -> Tensor:
        if top_k:
            kth = lprobs.topk(min(top_k, lprobs.size(1)), dim=1).values[:, -1:]
            lprobs = lprobs.masked_fill(lprobs < kth, NEG_INF)
        if top_p < 1:
            sorted_lprobs, sorted_idx = lprobs.sort(dim=1, descending=True)
            probs = sorted_lprobs.exp()
            outside = (probs.cumsum(1) - probs) >= top_p  # the mass before this token already reaches top_p
            lprobs = lprobs.scatter(1, sorted_idx, sorted_lprobs.masked_fill(outside, NEG_INF))
        return torch.multinomial(lprobs.exp(), 1, generator=generator).squeeze(1)

    return _sequential(model, src_tokens, options.nbest, choose, options.temperature, options, need_attention, bos)


def _first_input(bos: Tensor | None, bsz: int, device: torch.device) -> Tensor:
    """(B,) the decoder's first input: eos (fairseq's convention) unless given."""
    if bos is None:
        return torch.full((bsz,), EOS, dtype=torch.long, device=device)
    return torch.as_tensor(bos, dtype=torch.long, device=device).expand(bsz).clone()


def _argmax(lprobs: Tensor) -> Tensor:
    return lprobs.argmax(dim=1)


def _sequential(model: Transformer, src_tokens: Tensor, copies: int, choose: Callable[[Tensor], Tensor],
                temperature: float, options: SearchOptions, need_attention: bool,
                bos: Tensor | None = None) -> list[list[Hypothesis]]:
    """Extend `copies` hypotheses per sentence one token at a time, each on its own (greedy, sampling)."""
    options = _check(src_tokens, options)
    min_len, len_penalty = options.min_len, options.len_penalty
    bsz, src_len, device = src_tokens.size(0), src_tokens.size(1), src_tokens.device
    if bsz == 0:
        return []
    n = bsz * copies
    with eval_mode(model):
        max_lens = max_lengths(model, src_tokens, options.max_len_a, options.max_len_b).repeat_interleave(copies)
        steps = int(max_lens.max()) + 1
        encoder_out = model.encode(src_tokens)
        cache = model.init_cache(encoder_out, steps)
        if copies > 1:
            encoder_out, cache = model.reorder(encoder_out, cache,
                                               torch.arange(bsz, device=device).repeat_interleave(copies))
        active = torch.arange(n, device=device)  # output row of each row of the batch
        prev = _first_input(bos, bsz, device).repeat_interleave(copies)
        tokens = torch.full((n, steps), PAD, dtype=torch.long, device=device)
        pos_scores = torch.zeros(n, steps, device=device)
        lengths = torch.full((n,), steps, dtype=torch.long, device=device)
        attn = torch.zeros(n, steps, src_len, device=device) if need_attention else None

        shortest = int(max_lens.min())  # from this step on, eos is forced in some row
        for step in range(steps):
            logits, step_attn = model.decode_step(prev, encoder_out, cache, need_attention=need_attention)
            logits = logits.float() / temperature if temperature != 1.0 else logits.float()
            force = max_lens[active].le(step) if step >= shortest else None
            lprobs = constrain(torch.log_softmax(logits, dim=-1), step, min_len, force)
            next_tokens = choose(lprobs)
            tokens[active, step] = next_tokens
            pos_scores[active, step] = lprobs.gather(1, next_tokens[:, None]).squeeze(1)
            if attn is not None:
                attn[active, step] = step_attn.float()
            finished = next_tokens.eq(EOS)
            if finished.any():
                lengths[active[finished]] = step + 1
                if finished.all():
                    break
                keep = (~finished).nonzero().squeeze(1)
                encoder_out, cache = model.reorder(encoder_out, cache, keep)
                active, next_tokens = active[keep], next_tokens[keep]
                shortest = int(max_lens[active].min())
            prev = next_tokens

        src_lens = src_tokens.ne(model.padding_idx).sum(1).repeat_interleave(copies).tolist()
        tokens, pos_scores, lengths = tokens.cpu(), pos_scores.cpu(), lengths.tolist()
        attn = attn.cpu() if attn is not None else None
        hyps = []
        for i, length in enumerate(lengths):
            score = float(pos_scores[i, :length].sum())
            hyps.append(Hypothesis(tokens[i, :length].clone(), score, score / length ** len_penalty,
                                   pos_scores[i, :length].clone(),
                                   attn[i, :length, :src_lens[i]].clone() if attn is not None else None))
        return [sorted(hyps[i:i + copies], key=lambda h: -h.normalized_score) for i in range(0, n, copies)]


def generate(model: Transformer, src_tokens: Tensor | Sequence[Sequence[int]],
             options: SearchOptions | None = None, need_attention: bool = False,
             bos: Tensor | None = None) -> list[list[Hypothesis]]:
    """One entry point for every search: beam search, greedy when beam_size is 1, or `nbest` samples.

    `src_tokens`: right-padded (B, S) ids on the model's device, or a list of id sequences.
    `bos`: (B,) the decoder's first input of each sentence (default: eos; a target-language code
    for models trained with lang_code "decoder"); it is not part of the hypotheses.
    Returns, per sentence in input order, its hypotheses best first.
    """
    if not isinstance(src_tokens, Tensor):
        src_tokens = collate_source(src_tokens, model.padding_idx).to(next(model.parameters()).device)
    options = options or SearchOptions()
    if options.sampling:
        return sample(model, src_tokens, options, need_attention, bos)
    if options.beam_size == 1 and options.nbest == 1:
        return greedy_search(model, src_tokens, options, need_attention, bos)
    return beam_search(model, src_tokens, options, need_attention, bos)
