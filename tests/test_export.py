"""pasero-export: the CTranslate2 and transformers (Marian) exports translate as pasero does.

A small trained model is exported with the command; the runtimes load the folders offline and
their greedy and beam outputs are compared with pasero's on the same inputs. Variants cover what
the copy model does not have: pre-LN, shared and untied embeddings, gelu, language codes.
"""

import dataclasses
import io
import socket
import sys

import pytest
import torch
from decoding_models import copy_checkpoint_state, train_reverse_model, word_corpus

from pasero import export, export_ct2, export_hf, search
from pasero.cli.export import export_main
from pasero.generator import TextGenerator
from pasero.search_options import SearchOptions
from pasero.tokenizer import Tokenizer

ctranslate2 = pytest.importorskip("ctranslate2")
transformers = pytest.importorskip("transformers")

LINES = word_corpus(40, seed=21) + ["the cat  sat on the green mat and a dog runs quickly under the bridge",
                                    "héllo wörld", "Hello, world!", ""]


@pytest.fixture(scope="module", autouse=True)
def offline():
    """Exporting and loading the exports never opens a network connection (HF_HUB_OFFLINE unneeded)."""

    def refuse(*args, **kwargs):
        raise OSError("network access in an offline test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


def checkpoint(**changes):
    """The copy model's checkpoint dict, with entries replaced."""
    ckpt = torch.load(io.BytesIO(copy_checkpoint_state()), weights_only=True)
    ckpt.update(changes)
    return ckpt


def save(ckpt, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def run(capsys, *argv):
    code = export_main([str(a) for a in argv])
    return code, capsys.readouterr().err


def exported(capsys, model, fmt, out):
    code, err = run(capsys, model, "--format", fmt, "-o", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save(checkpoint(), tmp_path_factory.mktemp("copy") / "model.pt")


@pytest.fixture(scope="module")
def generator(model):
    return TextGenerator.build(model, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def ct2_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "ct2"
    assert export_main([str(model), "--format", "ctranslate2", "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def hf_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "hf"
    assert export_main([str(model), "--format", "hf", "-o", str(out)]) == 0
    return out


def pasero_outputs(generator, lines, **options):
    return [nbest[0] for nbest in generator.decode(lines, **options)]


def within_limit(generator, line, hyp, options):
    """Whether pasero's hypothesis ended before the maximum length (CTranslate2 cannot force eos there)."""
    src_len = len(generator.encode([line])[0])
    return len(hyp["tokens"]) < export.max_length(options, src_len, generator.model.cfg.max_positions)


def hf_translate(hf_dir, lines, options, generator, prefix=""):
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(hf_dir)
    batch = tokenizer([prefix + line for line in lines], return_tensors="pt", padding=True)
    for ids, mask, line in zip(batch.input_ids, batch.attention_mask, lines, strict=True):
        assert ids[mask.bool()].tolist() == generator.encode([line])[0].tolist()
    kwargs = export_hf.transformers_generate_kwargs(options, batch.attention_mask, generator.model.cfg.max_positions)
    with torch.no_grad():
        out = model.generate(**batch, **kwargs)
    return tokenizer.batch_decode(out, skip_special_tokens=True)


# -- CTranslate2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("beam", [1, 4])
def test_ctranslate2_gives_pasero_s_tokens(generator, ct2_dir, beam):
    translator = ctranslate2.Translator(str(ct2_dir), intra_threads=1)
    tokenizer = Tokenizer.load(ct2_dir)  # the model's tokenizer travels with the export
    sources = [tokenizer.tokenize(line).split() for line in LINES]
    assert sources == [generator.tokenize(line).split() for line in LINES]
    options = dataclasses.replace(generator.options, beam_size=beam)
    got = export_ct2.ctranslate2_translate(translator, sources, options, generator.model.cfg.max_positions)
    expected = pasero_outputs(generator, LINES, beam_size=beam)
    assert LINES[-1] == "" and got.pop() == []  # CTranslate2 does not translate an empty input
    expected.pop()
    if beam == 1:  # greedy: identical even where the length limit cuts a translation
        assert got == [hyp["tokens"] for hyp in expected]
    kept = [i for i, (line, hyp) in enumerate(zip(LINES, expected, strict=False))
            if within_limit(generator, line, hyp, options)]
    assert len(kept) > 30 and [got[i] for i in kept] == [expected[i]["tokens"] for i in kept]


def test_ctranslate2_pre_ln_shared_untied_gelu_unscaled(tmp_path, capsys):
    """What the copy model does not have, on a tiny model trained to reverse its input."""
    model = train_reverse_model(normalize_before=True, shared_embeddings=True, tied_output=False,
                                activation="gelu", scale_embedding=False)
    symbols = ["<s>", "<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, 24)]
    path = save({"model": model.state_dict(), "model_config": dataclasses.asdict(model.cfg),
                 "dictionary": symbols}, tmp_path / "reverse" / "model.pt")
    out = exported(capsys, path, "ctranslate2", tmp_path / "ct2")
    translator = ctranslate2.Translator(str(out), intra_threads=1)
    gen = torch.Generator().manual_seed(3)
    sources = [torch.randint(4, 24, (int(n),), generator=gen).tolist() for n in torch.randint(1, 9, (30,))]
    for beam in (1, 4):
        options = SearchOptions(beam_size=beam)
        hyps = search.generate(model, [s + [2] for s in sources], options)
        expected = [[symbols[i] for i in h[0].tokens.tolist()[:-1]] for h in hyps]
        got = export_ct2.ctranslate2_translate(translator, [[symbols[i] for i in s] for s in sources], options,
                                           model.cfg.max_positions)
        assert got == expected
    code, err = run(capsys, path, "--format", "hf", "-o", tmp_path / "hf")
    assert code == 2 and err.count("\n") == 1 and "pre-LN" in err and "--format ctranslate2" in err
    assert not (tmp_path / "hf").exists()


# -- transformers --------------------------------------------------------------------------------


@pytest.mark.parametrize("beam", [1, 4])
def test_transformers_generate_gives_pasero_s_translations(generator, hf_dir, beam):
    options = dataclasses.replace(generator.options, beam_size=beam)
    expected = [hyp["detok"] for hyp in pasero_outputs(generator, LINES, beam_size=beam)]
    assert hf_translate(hf_dir, LINES, options, generator) == expected


def test_transformers_keeps_pasero_s_length_limit(generator, hf_dir):
    """pasero's limit is per sentence and ends with a forced eos: so does PaseroConstraints."""
    options = dataclasses.replace(generator.options, beam_size=4, max_len_a=0.5, max_len_b=1, min_len=2)
    expected = [hyp["detok"] for hyp in pasero_outputs(generator, LINES, **dataclasses.asdict(options))]
    assert hf_translate(hf_dir, LINES, options, generator) == expected


def test_pipeline_translates_with_the_model_s_defaults(generator, hf_dir):
    if "translation" not in transformers.pipelines.SUPPORTED_TASKS:
        pytest.skip(f"transformers {transformers.__version__} has no translation pipeline")
    translate = transformers.pipeline("translation", model=str(hf_dir), device="cpu")
    got = [out["translation_text"] for out in translate(LINES[:-1])]
    expected = pasero_outputs(generator, LINES[:-1])  # the model's decoding defaults: beam 3
    kept = [i for i, (line, hyp) in enumerate(zip(LINES, expected, strict=False))
            if within_limit(generator, line, hyp, generator.options)]
    assert len(kept) > 30 and [got[i] for i in kept] == [expected[i]["detok"] for i in kept]


@pytest.mark.parametrize("scale_embedding", [True, False])
def test_shared_untied_gelu_export_to_both(tmp_path, capsys, scale_embedding):
    """The copy model's weights read as another architecture: a different model, still the same
    translations in pasero, CTranslate2 and transformers."""
    ckpt = checkpoint()
    state = dict(ckpt["model"])
    state["src_embed.weight"] = state["tgt_embed.weight"]
    state["output_proj.weight"] = state["tgt_embed.weight"].clone()
    ckpt.update(model=state, model_config={**ckpt["model_config"], "shared_embeddings": True, "tied_output": False,
                                           "activation": "gelu", "scale_embedding": scale_embedding})
    path = save(ckpt, tmp_path / "variant" / "model.pt")
    generator = TextGenerator.build(path, device="cpu", dtype="float32")
    hf_dir = exported(capsys, path, "hf", tmp_path / "hf")
    ct2_dir = exported(capsys, path, "ctranslate2", tmp_path / "ct2")
    translator = ctranslate2.Translator(str(ct2_dir), intra_threads=1)
    lines = LINES[:20]
    for beam in (1, 3):
        options = dataclasses.replace(generator.options, beam_size=beam)
        expected = pasero_outputs(generator, lines, beam_size=beam)
        assert hf_translate(hf_dir, lines, options, generator) == [hyp["detok"] for hyp in expected]
    got = export_ct2.ctranslate2_translate(translator, [generator.tokenize(line).split() for line in lines],
                                       dataclasses.replace(generator.options, beam_size=1),
                                       generator.model.cfg.max_positions)
    assert got == [hyp["tokens"] for hyp in pasero_outputs(generator, lines, beam_size=1)]


def with_language_code(lang_code):
    """The copy model as a multilingual one: a <lang:en> token (a new embedding row) tells the target."""
    ckpt = checkpoint()
    state = dict(ckpt["model"])
    for name in ("src_embed.weight", "tgt_embed.weight"):
        state[name] = torch.cat([state[name], state[name][-1:] * 0.5])
    inference = {**ckpt["inference"], "lang_code": lang_code, "target_lang": "en", "lang_pairs": ["de-en"]}
    return checkpoint(model=state, dictionary=ckpt["dictionary"] + ["<lang:en>"], inference=inference)


def test_language_codes(tmp_path, capsys):
    """lang_code source: Marian's `>>en<<` prefix; lang_code decoder: CTranslate2's target prefix."""
    lines = LINES[:15]
    path = save(with_language_code("source"), tmp_path / "source" / "model.pt")
    generator = TextGenerator.build(path, device="cpu", dtype="float32")
    hf_dir = exported(capsys, path, "hf", tmp_path / "hf")
    options = dataclasses.replace(generator.options, beam_size=3)
    expected = [hyp["detok"] for hyp in pasero_outputs(generator, lines, beam_size=3)]
    assert hf_translate(hf_dir, lines, options, generator, prefix=">>en<< ") == expected

    path = save(with_language_code("decoder"), tmp_path / "decoder" / "model.pt")
    generator = TextGenerator.build(path, device="cpu", dtype="float32")
    ct2_dir = exported(capsys, path, "ctranslate2", tmp_path / "ct2")
    translator = ctranslate2.Translator(str(ct2_dir), intra_threads=1)
    got = export_ct2.ctranslate2_translate(translator, [generator.tokenize(line).split() for line in lines],
                                       dataclasses.replace(generator.options, beam_size=1),
                                       generator.model.cfg.max_positions, target_prefix="<lang:en>")
    assert got == [hyp["tokens"] for hyp in pasero_outputs(generator, lines, beam_size=1)]
    code, err = run(capsys, path, "--format", "hf", "-o", tmp_path / "hf-decoder")
    assert code == 2 and err.count("\n") == 1 and "lang_code: decoder" in err


# -- the command ---------------------------------------------------------------------------------


def test_errors_are_one_line(model, tmp_path, capsys, monkeypatch):
    code, err = run(capsys, tmp_path / "missing.pt", "--format", "hf", "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "missing.pt" in err

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("keep me")
    code, err = run(capsys, model, "--format", "ctranslate2", "-o", tmp_path / "taken")
    assert code == 2 and err.count("\n") == 1 and "--force" in err
    assert (tmp_path / "taken" / "file").read_text() == "keep me"

    no_tokenizer = save(checkpoint(tokenizer=None), tmp_path / "plain" / "model.pt")
    code, err = run(capsys, no_tokenizer, "--format", "hf", "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "tokenizer" in err

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(word_corpus(300, seed=3)) + "\n")
    cased = Tokenizer.train([corpus], tmp_path / "cased", vocab_size=300, inline_case=True, threads=1)
    inline_case = save(checkpoint(tokenizer=cased.to_state()), tmp_path / "cased" / "model.pt")
    code, err = run(capsys, inline_case, "--format", "hf", "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "inline casing" in err

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    code, err = run(capsys, model, "--format", "hf", "-o", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1 and "pip install -e '.[export]'" in err
    assert not (tmp_path / "out").exists()


def test_force_replaces_an_export_and_the_folder_is_complete(model, ct2_dir, hf_dir, tmp_path, capsys):
    assert {"model.bin", "config.json", "shared_vocabulary.json", "spm.model", "settings.yaml",
            "README.md"} <= {p.name for p in ct2_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm",
            "vocab.json", "tokenizer_config.json", "README.md"} <= {p.name for p in hf_dir.iterdir()}
    out = tmp_path / "again"
    (out / "old").mkdir(parents=True)
    code, err = run(capsys, model, "--format", "ctranslate2", "-o", out, "--force")
    assert code == 0, err
    assert {p.name for p in out.iterdir()} == {p.name for p in ct2_dir.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
