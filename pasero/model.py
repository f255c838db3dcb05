"""The encoder-decoder Transformer (Vaswani et al., 2017) in fairseq's flavour.

The model knows tensors and its config, nothing about files, training or search. Two ways in:
`forward` scores whole target prefixes (teacher forcing, training and validation loss), and
`init_cache` + `decode_step` extend hypotheses one token at a time for search, with the
self-attention keys/values of all layers kept in one tensor (one index_select per beam-search
step reorders every layer) and the cross-attention keys/values computed once per source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pasero.errors import ConfigError
from pasero.model_config import TransformerConfig


@dataclass
class EncoderOut:
    out: Tensor  # (B, S, D)
    padding_mask: Tensor  # (B, S) bool, True at padding

    def index_select(self, order: Tensor) -> EncoderOut:
        return EncoderOut(self.out.index_select(0, order), self.padding_mask.index_select(0, order))


@dataclass
class DecoderCache:
    """Per-hypothesis decoder state for step-wise decoding.

    The self-attention keys/values of every layer live in one tensor, a view of a flat buffer. On CPU
    it holds exactly the positions so far plus the one being decoded, so that each (row, head) history
    is one contiguous (positions, head_dim) matrix, which the attention's batched matmuls read in
    place (with a longer, strided buffer they copied keys and values of every layer at every step).
    Making room for the next position is one copy into the second buffer, `spare`, which reorders
    the rows on the way (beam search has to copy its histories every step anyway) and reuses memory
    that is already mapped: copying back in place cost a second copy, and every fresh multi-MB
    tensor costs page faults. On CUDA the view keeps room up to `max_len` (SDPA reads strided views),
    so that greedy decoding copies nothing there.
    """

    self_kv: Tensor  # (layers, 2, B, heads, room, head_dim): positions < step filled, room > step
    cross_kv: Tensor  # (layers, 2, B, heads, S, head_dim)
    cross_mask: Tensor  # (B, 1, 1, S) bool, True where attention is allowed
    max_len: int  # positions at most
    step: int = 0
    buffer: Tensor | None = None  # (numel,) the storage under self_kv
    spare: Tensor | None = None  # (numel,) where the next copy of self_kv goes; contents unused
    cross_spare: Tensor | None = None  # (numel,) where the next selection of cross_kv's rows goes
    beams: int = 1  # hypotheses per sentence (Transformer.expand_beams): cross_kv/cross_mask have a row per sentence


def sinusoidal_table(num_positions: int, dim: int) -> Tensor:
    """fairseq's sinusoidal position table: sin in the first half of the dims, cos in the second."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / max(half - 1, 1)))
    angles = torch.arange(num_positions, dtype=torch.float)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = F.pad(table, (0, 1))
    return table


class Dropout(nn.Module):
    """Inverted dropout with its mask drawn by `uniform_`: on CPU twice as fast as nn.Dropout's
    `bernoulli_` (which alone took ~13% of a transformer_small training step), the same
    distribution, the same determinism under a seed."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.empty(x.shape, device=x.device).uniform_() >= self.p  # (same shape as x) bool
        return x * keep * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Attention(nn.Module):
    """Multi-head attention: matmul-softmax-matmul on CPU in bf16, scaled_dot_product_attention elsewhere.

    On CPU in bf16, with sentence-length sequences, SDPA's fused kernels were slower than the three
    plain operations (forward + backward of transformer_small's attention: 2.7-4x; a decoding step:
    2.5x); in float32 they were about even, and a whole float32 training step was faster with SDPA.
    On GPUs its flash/memory-efficient kernels are the fast path.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.probs_dropout = Dropout(dropout)

    def project_kv(self, x: Tensor) -> Tensor:
        """(B, T, D) -> keys and values stacked as (B, 2, heads, T, head_dim)."""
        b, t, _ = x.shape
        return self.kv_proj(x).view(b, t, 2, self.heads, self.head_dim).permute(0, 2, 3, 1, 4)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        b, t, d = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, heads, T, head_dim)
        weights = None
        if need_weights or (not q.is_cuda and q.dtype != torch.float32):  # SDPA does not return the probabilities
            out, probs = self._explicit(q, k, v, mask, causal)
            weights = probs.mean(1) if need_weights else None
        else:
            dropout = self.dropout if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d)), weights

    def _explicit(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> tuple[Tensor, Tensor]:
        """(B, heads, T, head_dim) attention output and (B, heads, T, S) probabilities; q is scaled
        before the product, as in fairseq, and the softmax is computed in fp32."""
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-1, -2)  # (B, heads, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        if causal:
            t, s = scores.shape[-2:]
            scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
        probs = scores.float().softmax(-1).to(q.dtype)
        return self.probs_dropout(probs) @ v, probs


class FeedForward(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.embed_dim)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[cfg.activation]
        self.dropout = Dropout(cfg.activation_dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class Residual(nn.Module):
    """Layer norm + dropout + residual connection, post-LN (fairseq default) or pre-LN."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.dropout = Dropout(cfg.dropout)
        self.pre = cfg.normalize_before

    def before(self, x: Tensor) -> Tensor:
        return self.norm(x) if self.pre else x

    def after(self, residual: Tensor, y: Tensor) -> Tensor:
        x = residual + self.dropout(y)
        return x if self.pre else self.norm(x)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = Attention(cfg.embed_dim, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg)
        self.attn_res, self.ffn_res = Residual(cfg), Residual(cfg)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.attn_res.before(x)
        kv = self.self_attn.project_kv(h)
        x = self.attn_res.after(x, self.self_attn(h, kv[:, 0], kv[:, 1], mask)[0])
        return self.ffn_res.after(x, self.ffn(self.ffn_res.before(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = Attention(cfg.embed_dim, cfg.heads, cfg.attention_dropout)
        self.cross_attn = Attention(cfg.embed_dim, cfg.heads, cfg.attention_dropout)
        self.ffn = FeedForward(cfg)
        self.self_res, self.cross_res, self.ffn_res = Residual(cfg), Residual(cfg), Residual(cfg)

    def forward(self, x: Tensor, cross_kv: Tensor, cross_mask: Tensor, cache: Tensor | None = None, step: int = 0,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """cache=None: causal attention over x itself (training). Otherwise x is the token at
        position `step`: its keys/values are written into `cache` (2, heads, max_len, head_dim),
        and it attends to positions 0..step."""
        h = self.self_res.before(x)
        kv = self.self_attn.project_kv(h)
        if cache is None:
            y, _ = self.self_attn(h, kv[:, 0], kv[:, 1], causal=True)
        else:
            cache[:, :, :, step:step + 1] = kv
            y, _ = self.self_attn(h, cache[:, 0, :, :step + 1], cache[:, 1, :, :step + 1])
        x = self.self_res.after(x, y)
        y, weights = self._cross_attention(self.cross_res.before(x), cross_kv, cross_mask, need_weights)
        x = self.cross_res.after(x, y)
        return self.ffn_res.after(x, self.ffn(self.ffn_res.before(x))), weights

    def _cross_attention(self, h: Tensor, cross_kv: Tensor, cross_mask: Tensor,
                         need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """(n, T, D) queries over cross_kv's sentences (rows): with fewer sentences than queries (the beams
        of a sentence, consecutive rows), a sentence's beams are one batch of queries over its one
        encoding, so its keys and values are neither copied nor read once per beam."""
        n, t, d = h.shape
        sentences = cross_kv.size(0)
        y, weights = self.cross_attn(h.reshape(sentences, n // sentences * t, d), cross_kv[:, 0], cross_kv[:, 1],
                                     cross_mask, need_weights=need_weights)  # (sentences, beams * T, D)
        return y.reshape(n, t, d), (weights.reshape(n, t, -1) if weights is not None else None)


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, src_vocab_size: int, tgt_vocab_size: int, padding_idx: int = 1):
        super().__init__()
        if cfg.shared_embeddings and src_vocab_size != tgt_vocab_size:
            raise ConfigError("shared_embeddings needs one joint dictionary (source and target sizes differ)")
        self.cfg, self.padding_idx = cfg, padding_idx
        self.src_embed = self._embedding(src_vocab_size)
        self.tgt_embed = self.src_embed if cfg.shared_embeddings else self._embedding(tgt_vocab_size)
        self.embed_scale = math.sqrt(cfg.embed_dim) if cfg.scale_embedding else 1.0
        table = sinusoidal_table(cfg.position_offset + cfg.max_positions, cfg.embed_dim)[cfg.position_offset:]
        self.register_buffer("positions", table, persistent=False)  # (max_positions, D)
        self.dropout = Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.encoder_norm = nn.LayerNorm(cfg.embed_dim) if cfg.normalize_before else nn.Identity()
        self.decoder_norm = nn.LayerNorm(cfg.embed_dim) if cfg.normalize_before else nn.Identity()
        self.output_proj = None if cfg.tied_output else nn.Linear(cfg.embed_dim, tgt_vocab_size, bias=False)
        self._init_weights()

    def _embedding(self, size: int) -> nn.Embedding:
        return nn.Embedding(size, self.cfg.embed_dim, padding_idx=self.padding_idx)

    def _init_weights(self) -> None:
        """fairseq's initialization: Xavier-uniform projections, N(0, d^-1/2) embeddings."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=self.cfg.embed_dim ** -0.5)
                nn.init.zeros_(module.weight[self.padding_idx])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, start: int = 0) -> Tensor:
        length = tokens.size(1)
        if start + length > self.cfg.max_positions:
            raise ValueError(f"sequence of {start + length} tokens exceeds max_positions={self.cfg.max_positions}")
        x = embedding(tokens) * self.embed_scale + self.positions[start:start + length].to(embedding.weight.dtype)
        return self.dropout(x)

    def encode(self, src_tokens: Tensor) -> EncoderOut:
        padding_mask = src_tokens.eq(self.padding_idx)
        attn_mask = ~padding_mask[:, None, None, :]
        x = self._embed(self.src_embed, src_tokens)
        for layer in self.encoder_layers:
            x = layer(x, attn_mask)
        return EncoderOut(self.encoder_norm(x), padding_mask)

    def _cross_kv(self, encoder_out: EncoderOut) -> Tensor:
        """(layers, 2, B, heads, S, head_dim): every layer's projection of the encoder output, each
        layer's keys (and values) one contiguous (B * heads, S, head_dim) batch of matrices."""
        return torch.stack([layer.cross_attn.project_kv(encoder_out.out).transpose(0, 1)  # (2, B, heads, S, head_dim)
                            for layer in self.decoder_layers])

    def _output(self, x: Tensor) -> Tensor:
        x = self.decoder_norm(x)
        return self.output_proj(x) if self.output_proj is not None else F.linear(x, self.tgt_embed.weight)

    def decode(self, prev_output_tokens: Tensor, encoder_out: EncoderOut) -> Tensor:
        """Logits (B, T, V) for every target position at once (teacher forcing)."""
        cross_mask = ~encoder_out.padding_mask[:, None, None, :]
        x = self._embed(self.tgt_embed, prev_output_tokens)
        for layer in self.decoder_layers:
            cross_kv = layer.cross_attn.project_kv(encoder_out.out)
            x, _ = layer(x, cross_kv, cross_mask)
        return self._output(x)

    def forward(self, src_tokens: Tensor, prev_output_tokens: Tensor) -> Tensor:
        return self.decode(prev_output_tokens, self.encode(src_tokens))

    def init_cache(self, encoder_out: EncoderOut, max_len: int) -> DecoderCache:
        """An empty cache for decoding at most `max_len` target tokens (eos included)."""
        cross_kv = self._cross_kv(encoder_out)
        layers, _, b, heads, _, head_dim = cross_kv.shape
        buffer = cross_kv.new_empty(layers * 2 * b * heads * max_len * head_dim)
        room = _room(cross_kv, 0, max_len)
        self_kv = buffer[:layers * 2 * b * heads * room * head_dim].view(layers, 2, b, heads, room, head_dim)
        return DecoderCache(self_kv, cross_kv, ~encoder_out.padding_mask[:, None, None, :], max_len, buffer=buffer)

    def decode_step(self, tokens: Tensor, encoder_out: EncoderOut, cache: DecoderCache,
                    need_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Logits (B, V) of the next token given the last one, and the last layer's cross-attention
        (B, S) when asked. Reads and extends `cache` (position `cache.step`)."""
        step = cache.step
        if step >= cache.max_len:
            raise ValueError(f"decoder cache is full ({step} steps); pass a larger max_len to init_cache")
        if cache.self_kv.size(4) <= step:  # no reorder since the last step (greedy): make room
            _move_rows(cache, None)
        x = self._embed(self.tgt_embed, tokens[:, None], start=step)
        weights = None
        for i, layer in enumerate(self.decoder_layers):
            last = need_attention and i == len(self.decoder_layers) - 1
            # per layer (B, 2, heads, positions, head_dim) views, the layout the layer expects
            x, weights = layer(x, cache.cross_kv[i].transpose(0, 1), cache.cross_mask,
                               cache.self_kv[i].transpose(0, 1), step, need_weights=last)
        cache.step = step + 1
        logits = self._output(x)[:, 0]
        return logits, (weights[:, 0] if weights is not None else None)

    @staticmethod
    def expand_beams(encoder_out: EncoderOut, cache: DecoderCache, beams: int) -> tuple[EncoderOut, DecoderCache]:
        """`beams` hypotheses per sentence of a fresh cache (rows sentence by sentence), which share
        their sentence's encoder output and cross-attention keys/values instead of copies of them."""
        if cache.beams != 1 or cache.step:
            raise ValueError("expand_beams needs a fresh cache (init_cache)")
        sentences = cache.cross_mask.size(0)
        cache.beams = beams
        _move_rows(cache, torch.arange(sentences, device=cache.cross_mask.device).repeat_interleave(beams))
        return encoder_out, cache

    @staticmethod
    def reorder(encoder_out: EncoderOut, cache: DecoderCache, new_order: Tensor) -> tuple[EncoderOut, DecoderCache]:
        """Select/reorder hypotheses (rows) of the encoder output and the cache, e.g. when
        sentences finish and leave the batch. The cache given is consumed (its buffers are reused).
        After expand_beams, `new_order` keeps each sentence's hypotheses together, `beams` rows each."""
        sentences = new_order if cache.beams == 1 else new_order[::cache.beams].div(cache.beams, rounding_mode="floor")
        cross_kv, cross_spare = _select_rows(cache.cross_kv, sentences, cache.cross_spare)
        cache = DecoderCache(cache.self_kv, cross_kv, cache.cross_mask.index_select(0, sentences), cache.max_len,
                             cache.step, cache.buffer, cache.spare, cross_spare, cache.beams)
        _move_rows(cache, new_order)
        return encoder_out.index_select(sentences), cache

    @staticmethod
    def reorder_self_attention(cache: DecoderCache, new_order: Tensor) -> None:
        """In-place reorder of the self-attention history only (the filled part), for beam
        search moves among the beams of one sentence, which share their source encoding."""
        _move_rows(cache, new_order)


def _move_rows(cache: DecoderCache, order: Tensor | None) -> None:
    """Copy the filled positions of the self-attention cache's rows in `order` (all rows when None)
    into the spare buffer, with room for the next position, and swap the buffers. The spare is
    (re)allocated, for max_len positions, only when it has too few rows."""
    layers, _, b, heads, _, head_dim = cache.self_kv.shape
    n, filled = b if order is None else order.size(0), cache.step
    room = _room(cache.self_kv, filled, cache.max_len)
    numel = layers * 2 * n * heads * room * head_dim
    if cache.spare is None or cache.spare.numel() < numel:
        cache.spare = cache.self_kv.new_empty(layers * 2 * n * heads * cache.max_len * head_dim)
    moved = cache.spare[:numel].view(layers, 2, n, heads, room, head_dim)
    kv = cache.self_kv[:, :, :, :, :filled]  # (layers, 2, b, heads, filled, head_dim)
    out = moved[:, :, :, :, :filled]  # (layers, 2, n, heads, filled, head_dim)
    if order is None:
        out.copy_(kv)
    else:
        torch.index_select(kv, 2, order, out=out)
    cache.self_kv, cache.buffer, cache.spare = moved, cache.spare, cache.buffer


def _select_rows(kv: Tensor, order: Tensor, spare: Tensor | None) -> tuple[Tensor, Tensor]:
    """(kv's rows (dim 2) in `order`, written into `spare` when it is large enough; the next spare,
    kv's storage). Sentences leaving the batch only shrink it: a copy into memory already mapped."""
    shape = kv.shape[:2] + order.shape + kv.shape[3:]  # (layers, 2, n, heads, S, head_dim)
    if spare is None or spare.numel() < shape.numel():
        spare = kv.new_empty(shape.numel())
    out = spare[:shape.numel()].view(shape)
    torch.index_select(kv, 2, order, out=out)
    return out, kv.view(-1)


def _room(kv: Tensor, filled: int, max_len: int) -> int:
    """Positions that the self-attention cache's view holds after `filled` ones: on CPU just one more
    (see DecoderCache), on CUDA all `max_len`."""
    return max_len if kv.is_cuda else filled + 1
