import pytest
import torch

from pasero import model as model_module
from pasero.errors import ConfigError
from pasero.model import Transformer
from pasero.model_config import build_config


@pytest.fixture(params=[False, True], ids=["post-ln", "pre-ln"])
def model(request):
    torch.manual_seed(0)
    cfg = build_config("transformer_tiny", normalize_before=request.param, embed_dim=32, ffn_dim=64)
    return Transformer(cfg, 40, 50).eval()


def batch():
    src = torch.randint(4, 40, (3, 7))
    src[0, 5:] = 1  # padding
    tgt = torch.randint(4, 50, (3, 6))
    tgt[:, 0] = 2
    return src, tgt


@torch.no_grad()
def test_step_wise_decoding_matches_full_decoding(model):
    src, tgt = batch()
    full = model(src, tgt)
    enc = model.encode(src)
    cache = model.init_cache(enc, max_len=8)
    steps = torch.stack([model.decode_step(tgt[:, t], enc, cache)[0] for t in range(tgt.size(1))], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_reordered_cache_continues_the_selected_rows(model):
    src, tgt = batch()
    full = model(src, tgt)
    enc = model.encode(src)
    cache = model.init_cache(enc, max_len=8)
    for t in range(3):
        model.decode_step(tgt[:, t], enc, cache)
    order = torch.tensor([2, 0])
    enc, cache = model.reorder(enc, cache, order)
    logits, attention = model.decode_step(tgt[order, 3], enc, cache, need_attention=True)
    torch.testing.assert_close(logits, full[order, 3], atol=1e-5, rtol=1e-5)
    assert attention.shape == (2, 7)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2))


@torch.no_grad()
def test_padding_does_not_change_the_output(model):
    src, tgt = batch()
    short = model(src[:1, :5], tgt[:1])
    padded = model(src[:1], tgt[:1])  # same sentence, with two padding positions
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)


def test_named_architectures_and_overrides():
    small = build_config("transformer_small")
    assert (small.encoder_layers, small.embed_dim, small.ffn_dim, small.heads) == (6, 512, 1024, 4)
    assert build_config("transformer_base", dropout=0.3).dropout == 0.3
    with pytest.raises(ConfigError, match="did you mean dropout"):
        build_config("transformer_tiny", dropuot=0.3)
    with pytest.raises(ConfigError, match="transformer_small"):
        build_config("transformer_huge")


def test_shared_and_tied_embeddings():
    cfg = build_config("transformer_tiny", shared_embeddings=True, tied_output=True)
    model = Transformer(cfg, 64, 64)
    assert model.src_embed is model.tgt_embed
    untied = Transformer(build_config("transformer_tiny", tied_output=False), 64, 64)
    assert untied.num_parameters() > model.num_parameters()


@pytest.mark.parametrize("causal", [False, True], ids=["padding-mask", "causal"])
def test_cpu_attention_equals_scaled_dot_product_attention(causal):
    """The CPU bf16 path (matmul, softmax, matmul) computes what SDPA computes, gradients included:
    exactly in float32, and within bf16's precision through the module in bf16."""
    from pasero.model import Attention

    torch.manual_seed(0)
    attention = Attention(32, 4, dropout=0.0)
    x = torch.randn(3, 6, 32, requires_grad=True)
    mask = None if causal else torch.ones(3, 1, 1, 6, dtype=torch.bool).index_fill(3, torch.tensor([4, 5]), False)

    def sdpa(module, x):
        kv = module.project_kv(x)
        q = module.q_proj(x).view(3, 6, 4, 8).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(q, kv[:, 0], kv[:, 1], attn_mask=mask, is_causal=causal)
        return module.out_proj(out.transpose(1, 2).reshape(3, 6, 32))

    def explicit(module, x):
        kv = module.project_kv(x)
        q = module.q_proj(x).view(3, 6, 4, 8).transpose(1, 2)
        out, _ = module._explicit(q, kv[:, 0], kv[:, 1], mask, causal)
        return module.out_proj(out.transpose(1, 2).reshape(3, 6, 32))

    expected = sdpa(attention, x)
    expected_grad, = torch.autograd.grad(expected.square().sum(), x)
    ours = explicit(attention, x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.autograd.grad(ours.square().sum(), x)[0], expected_grad, atol=1e-4, rtol=1e-4)

    half, x16 = attention.to(torch.bfloat16), x.detach().bfloat16().requires_grad_()
    kv = half.project_kv(x16)
    ours, _ = half(x16, kv[:, 0], kv[:, 1], mask, causal=causal)  # the module's own CPU bf16 path
    torch.testing.assert_close(ours.float(), expected, atol=0.05, rtol=0.05)
    grad, = torch.autograd.grad(ours.float().square().sum(), x16)
    torch.testing.assert_close(grad.float(), expected_grad, atol=0.1, rtol=0.1)


@torch.no_grad()
@pytest.mark.parametrize("layout", ["cpu", "cuda"])
def test_cache_follows_reorders_growing_and_shrinking_batches(model, layout, monkeypatch):
    """Rows that move at every step (beam search), are copied (beam expansion), leave the batch, or
    stay put (greedy): the cache, whose two buffers swap at each move, continues every row exactly
    as decoding its prefix from scratch does; with CPU's layout (room for one more position, filled
    by a copy at each step) and with CUDA's (room for all positions)."""
    if layout == "cuda":
        monkeypatch.setattr(model_module, "_room", lambda kv, filled, max_len: max_len)
    src, _ = batch()
    gen = torch.Generator().manual_seed(0)
    enc = model.encode(src)
    cache = model.init_cache(enc, max_len=8)
    rows, prefix = torch.arange(3), torch.full((3, 1), 2)  # the source sentence of each row, its target prefix
    moves = {0: torch.arange(3).repeat_interleave(2), 3: torch.tensor([5, 0, 2, 1]), 5: torch.tensor([3, 1])}
    for t in range(7):
        if t in moves:  # rows copied (t=0: before any step, as beam search does) or leaving
            enc, cache = model.reorder(enc, cache, moves[t])
            rows, prefix = rows[moves[t]], prefix[moves[t]]
        elif t % 2:  # beams moving among (and copied within) their sentence's rows; on even steps nothing moves
            same = (rows[:, None] == rows[None]).float()  # (rows, rows) 1 where both rows share their source
            order = torch.multinomial(same, 1, generator=gen).squeeze(1)
            model.reorder_self_attention(cache, order)
            prefix = prefix[order]
        logits, _ = model.decode_step(prefix[:, -1], enc, cache)
        torch.testing.assert_close(logits, model(src[rows], prefix)[:, -1], atol=1e-5, rtol=1e-5)
        prefix = torch.cat([prefix, torch.randint(4, 50, (len(rows), 1), generator=gen)], dim=1)
    model.decode_step(prefix[:, -1], enc, cache)  # the last of max_len positions
    with pytest.raises(ValueError, match="cache is full"):
        model.decode_step(prefix[:, -1], enc, cache)
