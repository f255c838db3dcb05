"""pasero-import-fairseq: checkpoints with the key names, shapes and pickled extras of fairseq's
TransformerModel, built here, give the numbers of fairseq's forward pass recomputed from the same
weights (an independent implementation of fairseq's conventions: left-padded sources, positions
from padding_idx + 1, q scaled before the dot product)."""

from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pasero import search
from pasero.checkpoints import load_checkpoint
from pasero.cli.decode import decode_main
from pasero.cli.import_fairseq import import_main
from pasero.dictionary import Dictionary
from pasero.errors import CheckpointError, ConfigError
from pasero.fairseq_import import import_fairseq
from pasero.generator import TextGenerator
from pasero.search_options import SearchOptions

PAD, EOS = 1, 2
RAN: list[str] = []  # what the pickled `_Trap` would append to if loading ran its code


def _trap(*args):
    RAN.append("code named by the checkpoint ran")


class _Trap:
    """An object of a class of the training state (as fairseq's meters): loading must not run it."""

    def __reduce__(self):
        return _trap, ("x",)


# A fairseq checkpoint, built here ----------------------------------------------------------------

def _linear(state, name, out_dim, in_dim, g, bias=True):
    state[f"{name}.weight"] = torch.randn(out_dim, in_dim, generator=g) * in_dim ** -0.5
    if bias:
        state[f"{name}.bias"] = torch.randn(out_dim, generator=g) * 0.1


def _norm(state, name, dim, g):
    state[f"{name}.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
    state[f"{name}.bias"] = 0.1 * torch.randn(dim, generator=g)


def _attention(state, name, dim, g, in_proj):
    if in_proj:  # fairseq < 0.9
        _linear(state, f"{name}.in_proj", 3 * dim, dim, g)
        state[f"{name}.in_proj_weight"] = state.pop(f"{name}.in_proj.weight")
        state[f"{name}.in_proj_bias"] = state.pop(f"{name}.in_proj.bias")
    else:
        for proj in ("k_proj", "v_proj", "q_proj"):
            _linear(state, f"{name}.{proj}", dim, dim, g)
    _linear(state, f"{name}.out_proj", dim, dim, g)


def fairseq_state(args, src_vocab, tgt_vocab, seed=0, in_proj=False):
    """The state dict of fairseq's TransformerModel for `args`, with random weights."""
    g = torch.Generator().manual_seed(seed)
    d, ffn = args.encoder_embed_dim, args.encoder_ffn_embed_dim
    state = OrderedDict()
    state["encoder.version"] = torch.tensor([3.0])
    state["encoder.embed_tokens.weight"] = torch.randn(src_vocab, d, generator=g) * d ** -0.5
    state["encoder.embed_positions._float_tensor"] = torch.tensor([1.0])
    for side, layers in (("encoder", args.encoder_layers), ("decoder", args.decoder_layers)):
        if side == "decoder":
            state["decoder.embed_tokens.weight"] = (state["encoder.embed_tokens.weight"] if args.share_all_embeddings
                                                    else torch.randn(tgt_vocab, d, generator=g) * d ** -0.5)
            state["decoder.embed_positions._float_tensor"] = torch.tensor([1.0])
        for i in range(layers):
            p = f"{side}.layers.{i}"
            _attention(state, f"{p}.self_attn", d, g, in_proj)
            _norm(state, f"{p}.self_attn_layer_norm", d, g)
            if side == "decoder":
                _attention(state, f"{p}.encoder_attn", d, g, in_proj)
                _norm(state, f"{p}.encoder_attn_layer_norm", d, g)
            if side == "encoder":  # fairseq 0.12's BetterTransformer copies (zeros in a training checkpoint)
                for name, shape in (("in_proj", (3 * d, d)), ("out_proj", (d, d)), ("fc1", (ffn, d)),
                                    ("fc2", (d, ffn))):
                    state[f"{p}.{name}_weight"], state[f"{p}.{name}_bias"] = torch.zeros(shape), torch.zeros(shape[0])
            _linear(state, f"{p}.fc1", ffn, d, g)
            _linear(state, f"{p}.fc2", d, ffn, g)
            _norm(state, f"{p}.final_layer_norm", d, g)
        if args.encoder_normalize_before:
            _norm(state, f"{side}.layer_norm", d, g)
    tied = args.share_all_embeddings or args.share_decoder_input_output_embed
    state["decoder.output_projection.weight"] = (state["decoder.embed_tokens.weight"] if tied else
                                                 torch.randn(tgt_vocab, d, generator=g) * d ** -0.5)
    state["decoder.version"] = torch.tensor([3.0])
    return state


def fairseq_args(**changes):
    """transformer_iwslt_de_en's options (fairseq/models/transformer/transformer_legacy.py), made small."""
    options = dict(arch="transformer_iwslt_de_en", encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_layers=2,
                   encoder_attention_heads=4, decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_layers=2,
                   decoder_attention_heads=4, encoder_normalize_before=False, decoder_normalize_before=False,
                   share_all_embeddings=False, share_decoder_input_output_embed=False, activation_fn="relu",
                   dropout=0.3, attention_dropout=0.0, activation_dropout=0.0, no_scale_embedding=False,
                   encoder_learned_pos=False, decoder_learned_pos=False, layernorm_embedding=False,
                   adaptive_softmax_cutoff=None, max_source_positions=1024, max_target_positions=1024)
    options.update(changes)
    return argparse.Namespace(**options)


def write_dict(path: Path, words: int) -> None:
    """fairseq-preprocess's dict: `word count`, padded with madeupwordNNNN to a multiple of 8."""
    lines = [f"w{i} {100 - i}" for i in range(words)]
    lines += [f"madeupword{i:04d} 0" for i in range(-(4 + words) % 8)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_fairseq(tmp: Path, args, src_words=20, tgt_words=28, legacy=False, in_proj=False):
    """checkpoint_best.pt and data-bin/dict.{de,en}.txt as fairseq 0.12 (or < 0.10 with `legacy`) writes them."""
    data = tmp / "data-bin"
    data.mkdir(parents=True, exist_ok=True)
    write_dict(data / "dict.de.txt", src_words)
    write_dict(data / "dict.en.txt", tgt_words)
    sizes = [len(Dictionary.load(data / f"dict.{lang}.txt")) for lang in ("de", "en")]
    state = fairseq_state(args, *sizes, in_proj=in_proj)
    task = {"_name": "translation", "data": str(data), "source_lang": "de", "target_lang": "en",
            "left_pad_source": True}
    ckpt = {"args": None, "model": state, "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropy",
                                                                 "num_updates": 100}],
            "extra_state": {"epoch": 3, "metrics": {"train": _Trap()}, "previous_best": 4.2},
            "last_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(3)}}}}
    if legacy:
        ckpt["args"] = argparse.Namespace(**vars(args), source_lang="de", target_lang="en")
    else:
        ckpt["cfg"] = {"_name": None, "common": {"seed": 1}, "model": args, "task": task}
    path = tmp / "checkpoint_best.pt"
    torch.save(ckpt, path)
    return path, data, state


# fairseq's forward pass, recomputed --------------------------------------------------------------

def sinusoidal(num, dim, padding_idx=PAD):
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000) / (half - 1)))
    table = torch.arange(num, dtype=torch.float)[:, None] * freqs[None]
    table = torch.cat([table.sin(), table.cos()], dim=1)
    table[padding_idx] = 0
    return table


def embed(state, side, tokens, args):
    mask = tokens.ne(PAD).long()
    positions = torch.cumsum(mask, dim=1) * mask + PAD  # fairseq's utils.make_positions
    scale = 1.0 if args.no_scale_embedding else math.sqrt(args.encoder_embed_dim)
    table = sinusoidal(int(positions.max()) + 1, args.encoder_embed_dim)
    return scale * state[f"{side}.embed_tokens.weight"][tokens] + table[positions]


def attention(state, name, query, key, heads, key_padding=None, causal=False):
    def proj(x, which):
        if f"{name}.in_proj_weight" in state:
            w, b = state[f"{name}.in_proj_weight"].chunk(3), state[f"{name}.in_proj_bias"].chunk(3)
            i = "qkv".index(which)
            return F.linear(x, w[i], b[i])
        return F.linear(x, state[f"{name}.{which}_proj.weight"], state[f"{name}.{which}_proj.bias"])

    b, t, d = query.shape
    hd = d // heads
    q = proj(query, "q") * hd ** -0.5
    k, v = proj(key, "k"), proj(key, "v")
    split = lambda x: x.view(b, x.size(1), heads, hd).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2)  # (B, heads, T, S)
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, t, d)
    return F.linear(out, state[f"{name}.out_proj.weight"], state[f"{name}.out_proj.bias"])


def layer_norm(state, name, x):
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"])


def sublayer(state, norm, x, fn, pre):
    y = fn(layer_norm(state, norm, x) if pre else x)
    return x + y if pre else layer_norm(state, norm, x + y)


def ffn(state, p, args):
    act = F.gelu if args.activation_fn == "gelu" else F.relu
    return lambda h: F.linear(act(F.linear(h, state[f"{p}.fc1.weight"], state[f"{p}.fc1.bias"])),
                              state[f"{p}.fc2.weight"], state[f"{p}.fc2.bias"])


def fairseq_forward(state, args, src_left_padded, prev_output_tokens):
    """fairseq's TransformerModel.forward in eval mode: logits (B, T, V)."""
    pre, heads = args.encoder_normalize_before, args.encoder_attention_heads
    pad = src_left_padded.eq(PAD)
    x = embed(state, "encoder", src_left_padded, args)
    for i in range(args.encoder_layers):
        p = f"encoder.layers.{i}"
        x = sublayer(state, f"{p}.self_attn_layer_norm", x,
                     lambda h, p=p: attention(state, f"{p}.self_attn", h, h, heads, pad), pre)
        x = sublayer(state, f"{p}.final_layer_norm", x, ffn(state, p, args), pre)
    enc = layer_norm(state, "encoder.layer_norm", x) if pre else x
    y = embed(state, "decoder", prev_output_tokens, args)
    for i in range(args.decoder_layers):
        p = f"decoder.layers.{i}"
        y = sublayer(state, f"{p}.self_attn_layer_norm", y,
                     lambda h, p=p: attention(state, f"{p}.self_attn", h, h, heads, causal=True), pre)
        y = sublayer(state, f"{p}.encoder_attn_layer_norm", y,
                     lambda h, p=p: attention(state, f"{p}.encoder_attn", h, enc, heads, pad), pre)
        y = sublayer(state, f"{p}.final_layer_norm", y, ffn(state, p, args), pre)
    if pre:
        y = layer_norm(state, "decoder.layer_norm", y)
    return F.linear(y, state["decoder.output_projection.weight"])


def left_pad(seqs):
    width = max(len(s) for s in seqs)
    return torch.tensor([[PAD] * (width - len(s)) + s for s in seqs])


def right_pad(seqs):
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (width - len(s)) for s in seqs])


def fairseq_greedy(state, args, source, max_len):
    """fairseq-generate --beam 1 of one sentence, by recomputing the whole prefix at each step."""
    prev = [EOS]
    for _ in range(max_len):
        logits = fairseq_forward(state, args, left_pad([source]), torch.tensor([prev]))[0, -1]
        logits[PAD] = float("-inf")
        prev.append(int(logits.argmax()))
        if prev[-1] == EOS:
            break
    else:
        prev.append(EOS)
    return prev[1:]


SOURCES = [[5, 9, 7, 2], [12, 4, 4, 8, 19, 6, 11, 2], [17, 2]]
TARGETS = [[6, 20, 2], [4, 5, 8, 9, 10, 2], [21, 7, 11, 2]]

VARIANTS = {
    "iwslt-post-ln-separate-dicts": dict(),
    "pre-ln-gelu-shared-decoder-io": dict(encoder_normalize_before=True, decoder_normalize_before=True,
                                          activation_fn="gelu", share_decoder_input_output_embed=True),
    "shared-all-joint-dict-unscaled": dict(share_all_embeddings=True, share_decoder_input_output_embed=True,
                                           no_scale_embedding=True),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_model_computes_fairseq_s_forward(tmp_path, variant):
    args = fairseq_args(**VARIANTS[variant])
    joint = args.share_all_embeddings
    path, data, state = make_fairseq(tmp_path, args, tgt_words=20 if joint else 28)
    if joint:
        (data / "dict.en.txt").write_bytes((data / "dict.de.txt").read_bytes())
    RAN.clear()
    ckpt = import_fairseq(path, data, tmp_path / "model.pt")
    assert RAN == []  # the pickled training state was read as data only
    assert ("source_dictionary" in ckpt) is not joint
    generator = TextGenerator.build(tmp_path / "model.pt", dtype="float32")
    assert (generator.source_lang, generator.target_lang) == ("de", "en")
    assert generator.options.beam_size == 5 and generator.options.max_len_b == 200  # fairseq-generate's defaults

    expected = fairseq_forward(state, args, left_pad(SOURCES), right_pad([[EOS] + t[:-1] for t in TARGETS]))
    with torch.no_grad():
        got = generator.model(right_pad(SOURCES), right_pad([[EOS] + t[:-1] for t in TARGETS]))
    for i, target in enumerate(TARGETS):
        torch.testing.assert_close(got[i, :len(target)], expected[i, :len(target)], atol=1e-4, rtol=1e-4)


def test_greedy_and_beam_search_on_an_imported_model(tmp_path):
    """Search with the model's incremental decoder finds fairseq's greedy hypotheses, and the command
    line decodes pieces as fairseq-generate without --bpe does."""
    args = fairseq_args(encoder_normalize_before=True, decoder_normalize_before=True)
    path, data, state = make_fairseq(tmp_path, args, legacy=True, in_proj=True)
    assert import_main([str(path), "--dict-dir", str(data), "-o", str(tmp_path / "model.pt")]) == 0
    generator = TextGenerator.build(tmp_path / "model.pt", dtype="float32")
    src_dict = Dictionary.load(data / "dict.de.txt")
    lines = [" ".join(src_dict[i] for i in s[:-1]) for s in SOURCES]
    greedy = SearchOptions(beam_size=1, max_len_a=0, max_len_b=6)
    hyps = search.generate(generator.model, [generator.encode([line])[0] for line in lines], greedy)
    for source, hyp in zip(SOURCES, hyps, strict=True):
        assert hyp[0].tokens.tolist() == fairseq_greedy(state, args, source, max_len=6)

    (tmp_path / "in.de").write_text("\n".join(lines) + "\n")
    assert decode_main([str(tmp_path / "model.pt"), "-i", str(tmp_path / "in.de"), "-o", str(tmp_path / "out.en"),
                        "--max-len-b", "6", "--dtype", "float32"]) == 0
    beam = generator.decode(lines, max_len_a=0, max_len_b=6)
    assert (tmp_path / "out.en").read_text().splitlines() == [h[0]["detok"] for h in beam]


def test_sentencepiece_model_makes_it_translate_raw_text(tmp_path):
    import sentencepiece as spm

    corpus = tmp_path / "corpus.txt"
    words = ["Haus", "Baum", "grün", "klein", "der", "die", "Fluss", "unter", "Brücke", "läuft"]
    corpus.write_text("\n".join(" ".join(words[(i * 7 + j) % 10] for j in range(i % 6 + 1)) for i in range(300)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "spm"), vocab_size=40,
                                   model_type="bpe", bos_id=-1, eos_id=-1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    data = tmp_path / "data-bin"
    data.mkdir()
    text = "\n".join(f"{p} 1" for p in pieces) + "\n"
    (data / "dict.de.txt").write_text(text)
    (data / "dict.en.txt").write_text(text)
    args = fairseq_args(share_all_embeddings=True, share_decoder_input_output_embed=True)
    size = len(Dictionary.load(data / "dict.de.txt"))
    torch.save({"args": argparse.Namespace(**vars(args), source_lang="de", target_lang="en"),
                "model": fairseq_state(args, size, size)}, tmp_path / "fairseq.pt")

    import_fairseq(tmp_path / "fairseq.pt", data, tmp_path / "model.pt", spm=tmp_path / "spm.model")
    generator = TextGenerator.build(tmp_path / "model.pt", dtype="float32")
    line = "der kleine Baum unter der Brücke"
    dictionary = Dictionary.load(data / "dict.de.txt")
    assert generator.encode([line])[0].tolist() == [dictionary.index(p) for p in sp.encode(line, out_type=str)] + [EOS]
    out = generator.decode([line], max_len_a=0, max_len_b=5)[0][0]
    assert out["detok"] == sp.decode(out["tokens"])  # fairseq's sentencepiece detokenization


def test_ctranslate2_export_of_separate_dictionaries(tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    from pasero import export, export_ct2

    path, data, _ = make_fairseq(tmp_path, fairseq_args())
    import_fairseq(path, data, tmp_path / "model.pt")
    export.export(tmp_path / "model.pt", "ctranslate2", tmp_path / "ct2")  # checks its log-probabilities
    generator = TextGenerator.build(tmp_path / "model.pt", dtype="float32")
    src_dict = Dictionary.load(data / "dict.de.txt")
    sources = [[src_dict[i] for i in s[:-1]] for s in SOURCES]
    options = SearchOptions(beam_size=1, max_len_a=0, max_len_b=6)
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), intra_threads=1)
    got = export_ct2.ctranslate2_translate(translator, sources, options, generator.model.cfg.max_positions)
    expected = generator.decode([" ".join(s) for s in sources], beam_size=1, max_len_a=0, max_len_b=6)
    assert got == [h[0]["tokens"] for h in expected]
    with pytest.raises(ConfigError, match="separate source and target dictionaries.*--format ctranslate2"):
        export.export(tmp_path / "model.pt", "hf", tmp_path / "hf")


def test_errors_name_the_file_and_the_fix(tmp_path, capsys):
    args = fairseq_args()
    path, data, state = make_fairseq(tmp_path, args)
    out = tmp_path / "model.pt"

    write_dict(data / "dict.en.txt", 40)  # another model's dictionary
    with pytest.raises(ConfigError, match=r"dict\.en\.txt has 48 symbols .* embeddings have 32 rows"):
        import_fairseq(path, data, out)
    write_dict(data / "dict.en.txt", 28)

    with pytest.raises(ConfigError, match="no dict.{src}.txt/dict.{tgt}.txt for the languages xx-en"):
        import_fairseq(path, data, out, source_lang="xx")

    learned = fairseq_args(encoder_learned_pos=True)
    torch.save({"args": learned, "model": state}, tmp_path / "learned.pt")
    with pytest.raises(CheckpointError, match="encoder_learned_pos=True is not supported"):
        import_fairseq(tmp_path / "learned.pt", data, out, source_lang="de", target_lang="en")

    extra = OrderedDict(state, **{"encoder.layernorm_embedding.weight": torch.ones(32)})
    torch.save({"args": args, "model": extra}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="no place for: encoder.layernorm_embedding.weight"):
        import_fairseq(tmp_path / "extra.pt", data, out, source_lang="de", target_lang="en")

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert import_main([str(tmp_path / "junk.pt"), "--dict-dir", str(data), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "error: " in err and "junk.pt: not a readable PyTorch checkpoint" in err and "\n" not in err
    assert not out.exists()  # nothing under the final name after a failure


def test_fine_tuning_an_imported_model(tmp_path, capsys):
    """A joint-dictionary fairseq model continues training here (continue_from); one with separate
    dictionaries is refused with the reason (pasero trains with one joint dictionary)."""
    from train_helpers import make_corpus, write_config

    from pasero.cli.train import train_main

    cfg = make_corpus(tmp_path / "data")
    fairseq_data = tmp_path / "fairseq-data"
    fairseq_data.mkdir()
    for lang in ("de", "en"):  # fairseq-preprocess --joined-dictionary writes the same dict twice
        (fairseq_data / f"dict.{lang}.txt").write_bytes((tmp_path / "data" / "dict.txt").read_bytes())
    args = fairseq_args(share_all_embeddings=True, share_decoder_input_output_embed=True)
    size = len(Dictionary.load(tmp_path / "data" / "dict.txt"))
    torch.save({"args": argparse.Namespace(**vars(args), source_lang="de", target_lang="en"),
                "model": fairseq_state(args, size, size)}, tmp_path / "fairseq.pt")
    import_fairseq(tmp_path / "fairseq.pt", fairseq_data, tmp_path / "model.pt")
    model = dict(encoder_layers=2, decoder_layers=2, heads=4, shared_embeddings=True, position_offset=2,
                 max_steps=2, valid_interval=2)
    config = write_config(tmp_path / "train.yaml", {**cfg, **model})
    assert train_main(["-c", str(config), "--continue-from", str(tmp_path / "model.pt")]) == 0
    tuned = load_checkpoint(Path(cfg["model_dir"]) / "checkpoint_last.pt")
    assert tuned["step"] == 2 and tuned["model_config"]["position_offset"] == 2

    path, data, _ = make_fairseq(tmp_path / "separate", fairseq_args())
    import_fairseq(path, data, tmp_path / "separate.pt")
    ckpt = load_checkpoint(tmp_path / "separate.pt")
    assert len(ckpt["source_dictionary"]) == 24 and len(ckpt["dictionary"]) == 32
    capsys.readouterr()
    assert train_main(["-c", str(config), "--model-dir", str(tmp_path / "other"), "--continue-from",
                       str(tmp_path / "separate.pt")]) == 2
    assert "separate source and target dictionaries" in capsys.readouterr().err
