"""Multilingual models: several directions in one model, told the target language by a code token
(Pasero's on the source side, or fairseq's on the decoder side), directions sampled by temperature,
validated per direction, decoded into any target language."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from test_training import interrupt_at, run, weights
from train_helpers import VOCAB, tiny_config, write_config, write_split

from pasero.batching import BatchIterator, MultiPairDataset, open_pair
from pasero.checkpoints import load_checkpoint
from pasero.cli.train import train_main
from pasero.dictionary import Dictionary
from pasero.errors import ConfigError
from pasero.generator import TextGenerator
from pasero.multilingual import expand_directions, zero_shot_directions

LANGS = ("de", "en", "fr")
CODES = [f"<lang:{lang}>" for lang in LANGS]


def make_multilingual(root: Path, sizes: dict[str, int], codes: bool = True) -> dict:
    """Each direction a different learnable mapping of word ids (the target language decides
    the output); returns a training config (tiny model) of those directions."""
    d = Dictionary.from_symbols(VOCAB + (CODES if codes else []))
    root.mkdir(parents=True, exist_ok=True)
    d.save(root / "dict.txt")
    rng = np.random.default_rng(0)
    shift = {"en": 1, "de": 5, "fr": 11}
    for pair, n in sizes.items():
        src, tgt = pair.split("-")

        def sample(tgt: str = tgt) -> tuple[list[str], list[str]]:
            ids = rng.integers(0, len(VOCAB), size=int(rng.integers(3, 10)))
            return [VOCAB[i] for i in ids], [VOCAB[(i + shift[tgt]) % len(VOCAB)] for i in ids[::-1]]

        write_split(root / "bin", "train", [sample() for _ in range(n)], d, src, tgt)
        write_split(root / "bin", "valid", [sample() for _ in range(20)], d, src, tgt)
    return tiny_config(root, lang_pairs=list(sizes), lang_code="source", source_lang=None, target_lang=None,
                       best_metric="chrf")


def test_the_target_language_code_goes_to_the_source_or_the_decoder(tmp_path):
    make_multilingual(tmp_path, {"de-en": 30, "en-fr": 30})
    d = Dictionary.load(tmp_path / "dict.txt")
    parts = {pair: open_pair(tmp_path / "bin", "train", *pair.split("-")) for pair in ("de-en", "en-fr")}
    ids = {lang: d.index(f"<lang:{lang}>") for lang in LANGS}
    source = MultiPairDataset(parts, ids, "source")
    batch = source.collate(np.array([0, 30]))  # the first pair of each direction
    assert batch.src_tokens[:, 0].tolist() == [ids["en"], ids["fr"]]
    assert batch.src_tokens[0, 1:].tolist()[:len(parts["de-en"].src[0])] == parts["de-en"].src[0].tolist()
    assert batch.prev_output_tokens[:, 0].tolist() == [d.eos_idx, d.eos_idx]
    assert source.src_sizes[0] == parts["de-en"].src_sizes[0] + 1
    decoder = MultiPairDataset(parts, ids, "decoder")
    batch = decoder.collate(np.array([0, 30]))
    assert batch.prev_output_tokens[:, 0].tolist() == [ids["en"], ids["fr"]]
    assert batch.src_tokens[0, :len(parts["de-en"].src[0])].tolist() == parts["de-en"].src[0].tolist()
    assert batch.target[0, :len(parts["de-en"].tgt[0])].tolist() == parts["de-en"].tgt[0].tolist()


def test_temperature_upsamples_small_directions_and_is_a_function_of_the_seed(tmp_path):
    make_multilingual(tmp_path, {"de-en": 400, "fr-en": 40})
    d = Dictionary.load(tmp_path / "dict.txt")
    parts = {pair: open_pair(tmp_path / "bin", "train", *pair.split("-")) for pair in ("de-en", "fr-en")}
    ids = {"en": d.index("<lang:en>")}

    def shares(temperature: float) -> list[int]:
        data = MultiPairDataset(parts, ids, "source", temperature)
        positions = data.epoch_positions(np.random.default_rng([1, 1]))
        return np.bincount(data.direction(positions), minlength=2).tolist()

    assert shares(1.0) == [400, 40]
    small, large = sorted(shares(5.0))
    assert (small, large) == (170, 270)  # 440 * 40 ** 0.2 / (40 ** 0.2 + 400 ** 0.2) = 170
    data = MultiPairDataset(parts, ids, "source", 5.0)
    first = BatchIterator(data, 64, seed=1).epoch_batches(1)
    again = BatchIterator(data, 64, seed=1).epoch_batches(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    drawn = np.concatenate(first)
    assert set(drawn[data.direction(drawn) == 1].tolist()) == set(range(400, 440))  # every small pair drawn
    assert any(len(set(data.direction(batch).tolist())) > 1 for batch in first)  # mixed batches
    homogeneous = MultiPairDataset(parts, ids, "source", 5.0, batch_by="direction")
    batches = BatchIterator(homogeneous, 64, seed=1).epoch_batches(1)
    assert all(len(set(homogeneous.direction(batch).tolist())) == 1 for batch in batches)
    assert sorted(np.concatenate(batches).tolist()) == sorted(drawn.tolist())  # the same pairs, batched apart


def test_multilingual_training_validates_each_direction_and_resumes_bit_exact(tmp_path):
    cfg = make_multilingual(tmp_path / "data", {"de-en": 150, "en-de": 150, "en-fr": 60})
    cfg.update(lang_temperature=2.0, max_steps=20, valid_interval=10, keep_last=3)
    straight = write_config(tmp_path / "straight.yaml", {**cfg, "model_dir": str(tmp_path / "straight")})
    killed = write_config(tmp_path / "killed.yaml", {**cfg, "model_dir": str(tmp_path / "killed")})
    assert run(straight).returncode == 0
    rows = [json.loads(line) for line in (tmp_path / "straight" / "train.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r["type"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20]
    directions = valid[-1]["directions"]
    assert set(directions) == {"de-en", "en-de", "en-fr"}
    assert valid[-1]["chrf"] == pytest.approx(sum(m["chrf"] for m in directions.values()) / 3)
    ckpt = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    assert ckpt["inference"]["lang_code"] == "source"
    assert ckpt["inference"]["lang_pairs"] == ["de-en", "en-de", "en-fr"]

    code, _ = interrupt_at(killed, 14, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert run(killed).returncode == 0
    assert weights(tmp_path / "killed") == weights(tmp_path / "straight")


@pytest.mark.parametrize("lang_code", ["source", "decoder"])
def test_one_model_decodes_every_direction_and_flags_zero_shot(tmp_path, lang_code):
    cfg = make_multilingual(tmp_path / "data", {"de-en": 60, "en-fr": 60})
    cfg.update(lang_code=lang_code, max_steps=4, valid_interval=4, model_dir=str(tmp_path / "model"))
    assert train_main(["-c", str(write_config(tmp_path / "train.yaml", cfg))]) == 0
    model = tmp_path / "model"
    with pytest.raises(ConfigError, match="a multilingual model needs the target language .* en, fr"):
        TextGenerator.build(model)
    lines = ["w1 w2 w3", "w4 w5"]
    for src, tgt, zero_shot in (("de", "en", False), ("en", "fr", False), ("de", "fr", True)):
        generator = TextGenerator.build(model, source_lang=src, target_lang=tgt, beam_size=2)
        assert generator.zero_shot is zero_shot
        out = generator.decode(lines)
        code = generator.dictionary.index(f"<lang:{tgt}>")
        # what the model was given: the code on the source side, or as the decoder's first input
        encoded = generator.encode(lines)
        assert bool(encoded[0][0] == code) is (lang_code == "source")
        assert len(out) == 2 and all(nbest[0]["tokens"] is not None for nbest in out)
    with pytest.raises(ConfigError, match="no language code for 'it'"):
        TextGenerator.build(model, source_lang="de", target_lang="it")


def test_a_dictionary_without_the_language_codes_is_a_one_line_error(tmp_path, capsys):
    cfg = make_multilingual(tmp_path, {"de-en": 30, "en-de": 30}, codes=False)
    assert train_main(["-c", str(write_config(tmp_path / "train.yaml", cfg))]) == 2
    err = capsys.readouterr().err
    assert "has no <lang:de>: train the tokenizer with --lang-codes de en" in err and err.count("\n") == 1


def test_language_pairs_are_checked(tmp_path, capsys):
    cfg = make_multilingual(tmp_path, {"de-en": 30})
    for pairs, message in ((["de-de"], "direction 'de-de'"), (["deen"], "direction 'deen'")):
        assert train_main(["-c", str(write_config(tmp_path / "t.yaml", {**cfg, "lang_pairs": pairs}))]) == 2
        assert message in capsys.readouterr().err


def test_the_experiment_table_averages_trained_directions_apart_from_zero_shot(tmp_path, capsys):
    """pasero-score per direction, then pasero-combine-directions: every direction, and the averages
    over the trained ones, X->en, en->X and zero-shot; the summary reads it as one experiment."""
    from pasero.aggregate import markdown_report, summary
    from pasero.cli.aggregate import combine_main
    from pasero.cli.score import score_main

    refs = ["the cat sat on the mat", "a dog barks at night", "birds sing in the morning"]
    outputs = {"de-en": refs, "en-de": [refs[0], "a dog", "birds"],
               "de-fr": ["this is not french at all", "the model answers in english", "as zero-shot models do"]}
    paths = []
    for pair, hyps in outputs.items():
        folder = tmp_path / "top3" / pair
        folder.mkdir(parents=True)
        (folder / "test.hyp").write_text("\n".join(hyps) + "\n")
        (folder / "ref").write_text("\n".join(refs) + "\n")
        zero_shot = str(pair == "de-fr").lower()
        assert score_main(["-H", str(folder / "test.hyp"), "-r", str(folder / "ref"), "-o", str(folder / "bleu.txt"),
                           "--json", str(folder / "scores.json"), "--meta", f"pair={pair}", "--lang", pair[3:],
                           "--meta", f"zero_shot={zero_shot}"]) == 0
        paths.append(str(folder / "scores.json"))
    out = tmp_path / "top3"
    assert combine_main([*paths, "--pivot", "en", "-o", str(out / "bleu.txt"), "--json", str(out / "scores.json"),
                         "--meta", "corpus=TED", "--meta", "pair=top3"]) == 0
    combined = json.loads((out / "scores.json").read_text())
    bleu = {pair: row["bleu"] for pair, row in combined["directions"].items()}
    assert bleu["de-en"] == pytest.approx(100.0) and bleu["en-de"] < 100
    assert combined["directions"]["de-fr"]["zero_shot"]
    averages = combined["averages"]
    assert averages["trained"]["bleu"] == pytest.approx((bleu["de-en"] + bleu["en-de"]) / 2)
    assert averages["x-en"]["bleu"] == pytest.approx(bleu["de-en"]) and averages["en-x"]["directions"] == 1
    assert averages["zero_shot"]["bleu"] == pytest.approx(bleu["de-fr"])
    assert combined["bleu"] == averages["trained"]["bleu"]
    table = (out / "bleu.txt").read_text().splitlines()
    assert table[0].split() == ["direction", "BLEU", "chrF", "off-target", "%"] and table[3].endswith("zero-shot")
    # the off-target rate: English where French was asked for, the failure of zero-shot translation
    off_target = {pair: row["off_target"] for pair, row in combined["directions"].items()}
    assert off_target["de-en"] == 0 and off_target["de-fr"] == 100
    assert averages["zero_shot"]["off_target"] == 100 and table[3].split()[3] == "100.0"
    from pasero.language_id import off_target_rate

    assert off_target_rate(["Das ist kein Englisch, sondern Deutsch."], "de") == 0
    assert off_target_rate(["whatever"], "xx") is None  # a language the identifier does not know: no rate
    assert table[4].startswith("avg trained")
    # the summary: a row per direction (trained first) and per average, the direction files not twice
    table = summary([tmp_path])
    assert list(table["pair"]) == ["top3/avg en-x", "top3/avg trained", "top3/avg x-en", "top3/avg zero_shot",
                                   "top3/de-en", "top3/de-fr", "top3/en-de"]
    rows = {row.pair: row for row in table.itertuples()}
    assert rows["top3/de-fr"].zero_shot and not rows["top3/de-en"].zero_shot
    assert rows["top3/avg trained"].bleu == combined["bleu"] and rows["top3/de-fr"].off_target == 100
    assert set(table["corpus"]) == {"TED"}
    markdown = markdown_report(table)
    assert "| off-target % | zero-shot |" in markdown and "| top3/de-fr |" in markdown


def test_zero_shot_directions_are_left_out_of_a_direction_set_but_not_of_a_list():
    langs = ["de", "en", "it"]
    assert expand_directions(langs, "en-centric") == ["de-en", "it-en", "en-de", "en-it"]
    assert expand_directions(langs, "all", zero_shot=["de-it", "it-de"]) == ["de-en", "en-de", "en-it", "it-en"]
    assert expand_directions(langs, ["de-it"], zero_shot=["de-it"]) == ["de-it"]
    with pytest.raises(ConfigError, match="zero_shot: 'de-it' is a trained direction"):
        zero_shot_directions(["de-it"], langs, ["de-it"])
    with pytest.raises(ConfigError, match="needs the pivot language 'en' among langs"):
        expand_directions(["de", "it"], "en-centric")


def test_a_language_the_identifier_does_not_know_is_told_apart_by_samples_of_the_experiments():
    """The toy's xx is no real language: samples of the experiment's training text identify it, so
    a zero-shot de-xx that answers in English gets its off-target rate."""
    from pasero import toy
    from pasero.language_id import off_target_rate

    train = toy.generate_pairs("xx", "en", seed=1, sizes={"train": 300, "valid": 1, "test": 1})["train"]
    german = [de for de, _ in toy.generate(seed=1, sizes={"train": 300, "valid": 1, "test": 1})["train"]]
    samples = {"xx": [xx for xx, _ in train], "en": [en for _, en in train], "de": german}
    test = toy.generate_pairs("xx", "en", seed=2, sizes={"train": 1, "valid": 1, "test": 50})["test"]
    assert off_target_rate([xx for xx, _ in test], "xx", samples) <= 4
    assert off_target_rate([en for _, en in test], "xx", samples) >= 96
    assert off_target_rate([en for _, en in test], "xx") is None  # no samples: no rate rather than a wrong one
