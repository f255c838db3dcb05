"""TextGenerator: checkpoint -> text translations, with the model's own tokenizer and defaults."""

import pytest
import torch
from decoding_models import save_copy_checkpoint, word_corpus

from pasero import search
from pasero.errors import CheckpointError, ConfigError
from pasero.generator import TextGenerator
from pasero.search_options import SearchOptions

LINES = word_corpus(40, seed=7)  # not the training sentences


def assert_same(a, b):
    """Same hypotheses, scores equal up to float noise (batch shapes change the summation order)."""
    assert [[h["detok"] for h in nbest] for nbest in a] == [[h["detok"] for h in nbest] for nbest in b]
    assert [[h["tokens"] for h in nbest] for nbest in a] == [[h["tokens"] for h in nbest] for nbest in b]
    for x, y in zip(a, b, strict=True):
        assert [h["score"] for h in x] == pytest.approx([h["score"] for h in y], abs=1e-4)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save_copy_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def generator(model_path):
    """float32: these tests compare searches exactly (bf16 rounding depends on the batch shape)."""
    return TextGenerator.build(model_path, device="cpu", dtype="float32")


def test_bf16_decoding_on_cpu(model_path):
    """bfloat16 weights (native on CPUs with AVX512-BF16/AMX, emulated elsewhere); the search scores
    in float32, so n-best lists stay ranked."""
    bf16 = TextGenerator.build(model_path, device="cpu", dtype="bfloat16", beam_size=3, nbest=3)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    out = bf16.decode(LINES[:8])
    assert len(out) == 8 and all(len(nbest) == 3 for nbest in out)
    for nbest in out:
        ranks = [h["normalized_score"] for h in nbest]
        assert all(isinstance(r, float) and r == r for r in ranks) and ranks == sorted(ranks, reverse=True)


def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    from pasero import devices

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native in (True, False):
        monkeypatch.setattr(devices, "cpu_has_bf16", lambda native=native: native)
        assert devices.resolve_dtype("auto", cpu) == (torch.bfloat16 if native else torch.float32)
        assert devices.resolve_dtype("bfloat16", cpu) == torch.bfloat16
        assert devices.resolve_dtype("float16", cpu) == torch.float32  # no fp16 training or decoding on CPU
        assert devices.resolve_dtype("float32", cpu) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert devices.resolve_dtype("auto", cuda) == torch.float16
    with pytest.raises(ConfigError, match="unknown dtype 'half'"):
        devices.resolve_dtype("half", cpu)


def test_translates_text_with_the_embedded_tokenizer(generator):
    out = generator.decode(LINES)
    assert len(out) == len(LINES) and all(len(nbest) == 1 for nbest in out)
    # The model learnt to copy: most sentences come back unchanged, each at its own position.
    assert sum(nbest[0]["detok"] == line for nbest, line in zip(out, LINES, strict=True)) >= 0.7 * len(LINES)
    first = out[0][0]
    assert first["tokens"] == generator.tokenize(first["detok"]).split()
    assert set(first) == {"tokens", "detok", "score", "normalized_score"}
    assert_same(generator.decode(LINES[0], LINES[1]), out[:2])


def test_same_as_searching_the_encoded_sentences_one_by_one(generator):
    """Sorting by length, batching by tokens and restoring the order change nothing."""
    small_batches = generator.decode(LINES, batch_size=12)
    assert_same(small_batches, generator.decode(LINES))
    for line, nbest in zip(LINES[:8], small_batches[:8], strict=True):
        ids = torch.as_tensor(generator.dictionary.encode(generator.tokenizer.tokenize(line)))
        options = SearchOptions(beam_size=3, max_len_a=1.0, max_len_b=5)
        hyp = search.beam_search(generator.model, ids[None], options)[0][0]
        assert nbest[0]["detok"] == generator.tokenizer.detokenize(generator.dictionary.decode(hyp.tokens))
        assert nbest[0]["score"] == pytest.approx(hyp.score, abs=1e-4)


def test_defaults_come_from_the_model_and_can_be_overridden(model_path, generator, tmp_path):
    assert (generator.options.beam_size, generator.options.max_len_b) == (3, 5)
    assert (generator.source_lang, generator.target_lang) == ("de", "en")
    assert TextGenerator.build(model_path, beam_size=7).options.beam_size == 7
    out = generator.decode(LINES[:5], nbest=3, len_penalty=0.5, return_scores=True)
    for nbest in out:
        assert len(nbest) == 3
        assert [h["normalized_score"] for h in nbest] == sorted((h["normalized_score"] for h in nbest), reverse=True)
        for h in nbest:
            assert len(h["positional_scores"]) == len(h["tokens"]) + 1  # eos included
            assert sum(h["positional_scores"]) == pytest.approx(h["score"], abs=1e-4)
            assert h["normalized_score"] == pytest.approx(h["score"] / (len(h["tokens"]) + 1) ** 0.5, abs=1e-4)
    assert generator.options.nbest == 1  # per-call options do not stick
    with pytest.raises(ConfigError, match="beam_size"):
        generator.decode("a", beam=4)
    # An inference.yaml next to the model overrides the checkpoint's defaults.
    copy = save_copy_checkpoint(tmp_path / "run" / "checkpoint_best.pt")
    (copy.parent / "inference.yaml").write_text("beam_size: 2\nmax_len_a: 0\nmax_len_b: 1\n")
    edited = TextGenerator.build(copy.parent)
    assert edited.path == copy and edited.options.beam_size == 2
    assert all(len(nbest[0]["tokens"]) == 1 for nbest in edited.decode(LINES))


def test_attention_sampling_and_long_inputs(generator, caplog):
    out = generator.decode(LINES[:3], return_attention=True)
    for line, nbest in zip(LINES[:3], out, strict=True):
        src_len = len(generator.tokenize(line).split()) + 1
        assert nbest[0]["attention"].shape == (len(nbest[0]["tokens"]) + 1, src_len)
    a = generator.decode(LINES, sampling=True, temperature=2.0, seed=1, batch_size=20)
    assert a == generator.decode(LINES, sampling=True, temperature=2.0, seed=1, batch_size=20)
    assert a != generator.decode(LINES, sampling=True, temperature=2.0, seed=2, batch_size=20)
    long_line = " ".join(["green tree"] * 60)  # longer than the model's 64 positions: truncated
    assert len(generator.encode([long_line])[0]) == generator.model.cfg.max_positions
    (nbest,) = generator.decode(long_line)
    assert len(nbest) == 1 and "truncated to the model's max_positions" in caplog.text


def test_provenance_and_model_lookup(generator, model_path, tmp_path):
    meta = generator.meta
    assert meta["checkpoint"] == str(model_path.resolve()) and meta["steps"] == [150] and meta["train_seconds"] == 12.5
    assert meta["params"] == generator.model.num_parameters()
    assert TextGenerator.build(model_path.parent).path == model_path
    with pytest.raises(CheckpointError, match="no model.pt"):
        TextGenerator.build(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        TextGenerator.build(tmp_path)


def test_model_without_tokenizer_takes_pieces(model_path, tmp_path, generator):
    ckpt = torch.load(model_path, weights_only=True)
    ckpt["tokenizer"] = None
    torch.save(ckpt, tmp_path / "model.pt")
    pretokenized = TextGenerator.build(tmp_path / "model.pt")
    pieces = [generator.tokenize(line) for line in LINES[:10]]
    out = pretokenized.decode(pieces)
    with_tokenizer = generator.decode(LINES[:10])
    assert [nbest[0]["detok"] for nbest in out] == [" ".join(nbest[0]["tokens"]) for nbest in with_tokenizer]
