"""SentencePiece tokenizer: lossless round trip, inline casing, saving, checkpoint state, CLI."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from text_data import train, write_corpus

from pasero.cli.data import build_tokenizer_main, detokenize_main, tokenize_main
from pasero.errors import ConfigError, DataError
from pasero.tokenizer import Tokenizer

BIN = Path(sys.executable).parent
PROPERTY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text where casing is hard: mixed-case words, letters whose case does not round-trip
# (İ ı ß ẞ ǅ Kelvin sign, final sigma), case markers and SentencePiece's space in the input.
TRICKY = ["Hello", "HELLO", "hello", "iPhone", "McDonald", "ABCs", "O'Neil", "A", "I", "a", "Straße",
          "STRASSE", "ẞ", "İstanbul", "ı", "ǅ", "ǆ", "Ǆ", "\u212a", "ΟΔΟΣ", "Σοφία", "ς", "Ж", "ж",
          "<T>", "<U>", "<lang:en>", "<LANG:EN>", "\u2581", " ", "  ", "\t", "-", "'", "日本", "x", "X", "Q"]
tricky_text = st.lists(st.sampled_from(TRICKY), max_size=12).map("".join)
any_text = st.text(max_size=40)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokenizers")
    return {
        "plain": train(tmp, "plain"),
        "cased": train(tmp, "cased", inline_case=True, lang_codes=["en", "de"]),
        "nfkc": train(tmp, "nfkc", inline_case=True, nfkc=True),
    }


@PROPERTY
@given(text=st.one_of(any_text, tricky_text))
def test_detokenize_inverts_tokenize_on_normalized_text(tokenizers, text):
    for tokenizer in tokenizers.values():
        pieces = tokenizer.tokenize(text)
        assert tokenizer.detokenize(pieces) == tokenizer.normalize(text)
        # normalized text comes back unchanged
        normalized = tokenizer.normalize(text)
        assert tokenizer.normalize(normalized) == normalized
        assert tokenizer.detokenize(tokenizer.tokenize(normalized)) == normalized


@PROPERTY
@given(text=st.one_of(any_text, tricky_text))
def test_inline_casing_keeps_only_lowercase_pieces_of_known_letters(tokenizers, text):
    tokenizer = tokenizers["cased"]
    vocabulary = set(tokenizer.pieces)
    for piece in tokenizer.tokenize(text).split():
        # an upper-case letter survives only if its lower case is not a piece (then spelled in bytes)
        assert piece in vocabulary
        if tokenizer.pieces.index(piece) in tokenizer.byte_ids or piece in tokenizer.user_symbols:
            continue
        for char in piece:
            assert not (char.lower() != char and len(char.lower()) == 1 and char.lower().upper() == char
                        and char.lower() in vocabulary), (text, piece)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(any_text, tricky_text), max_size=8))
def test_a_batch_is_tokenized_like_its_lines_one_by_one(tokenizers, lines):
    for tokenizer in tokenizers.values():
        assert tokenizer.encode_batch(lines) == [tokenizer.encode_batch([line])[0] for line in lines]


def test_normalization_collapses_whitespace_and_markers(tokenizers):
    cased, plain = tokenizers["cased"], tokenizers["plain"]
    assert plain.normalize("  a \t b\u00a0\u3000c \n") == "a b c"
    assert plain.normalize("a\u2581b") == "a b"
    assert plain.normalize("x<T>y") == "x<T>y"  # only inline casing reserves the markers
    assert cased.normalize("x<T>y <U>") == "x y"
    assert tokenizers["nfkc"].normalize("ﬁ ① Ａ") == "fi 1 A"
    assert cased.normalize("ﬁ") == "ﬁ"


def test_inline_case_markers_follow_pieces(tokenizers):
    tokenizer = tokenizers["cased"]
    lower = tokenizer.tokenize("singing").split()
    assert tokenizer.tokenize("Singing").split() == [lower[0], "<T>", *lower[1:]]
    assert tokenizer.tokenize("SINGING").split() == [x for p in lower for x in (p, "<U>")]
    pieces = tokenizer.tokenize("The CAT sat").split()
    assert pieces[:2] == ["▁the", "<T>"]
    assert pieces.count("<U>") >= 1 and pieces.index("<U>") > pieces.index("<T>")
    assert tokenizer.tokenize("A I") == "▁a <T> ▁i <T>"  # a single capital is Title case
    assert tokenizer.detokenize("▁the <T> ▁cat <U>") == "The CAT"
    # model output with stray or doubled markers still detokenizes
    assert tokenizer.detokenize("<U> ▁the <T> <U> ▁cat") == "The cat"


def test_mixed_case_words_round_trip_without_mixed_pieces(tokenizers):
    tokenizer = tokenizers["cased"]
    for text in ["iPhone", "McDonald's", "ABCs", "HTTPServer", "O'Neil", "TEDx talks"]:
        pieces = tokenizer.tokenize(text)
        assert tokenizer.detokenize(pieces) == text
        assert not any(c.isupper() for p in pieces.split() if p not in ("<T>", "<U>") for c in p)


def test_language_codes_are_single_pieces(tokenizers):
    tokenizer = tokenizers["cased"]
    assert tokenizer.tokenize("<lang:de> Hallo").split()[:2] == ["▁", "<lang:de>"]
    assert tokenizer.user_symbols == ["<T>", "<U>", "<lang:en>", "<lang:de>"]
    assert "<lang:en>" not in tokenizers["plain"].pieces


def test_saved_tokenizer_reloads_identically(tokenizers, tmp_path):
    tokenizer = tokenizers["cased"]
    tokenizer.save(tmp_path / "tok")
    assert sorted(os.listdir(tmp_path / "tok")) == ["settings.yaml", "spm.model", "spm.vocab"]
    settings = yaml.safe_load((tmp_path / "tok" / "settings.yaml").read_text())
    assert settings["inline_case"] is True and settings["lang_codes"] == ["<lang:en>", "<lang:de>"]
    vocab = (tmp_path / "tok" / "spm.vocab").read_text(encoding="utf-8").splitlines()
    assert [line.split("\t")[0] for line in vocab] == tokenizer.pieces
    again = Tokenizer.load(tmp_path / "tok")
    text = "Der HUND läuft über die Straße, iPhone 3.5"
    assert again.tokenize(text) == tokenizer.tokenize(text)


def test_checkpoint_state_loads_with_weights_only(tokenizers):
    tokenizer = tokenizers["cased"]
    buffer = io.BytesIO()
    torch.save({"tokenizer": tokenizer.to_state()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["tokenizer"]
    assert state["model"].dtype == torch.uint8
    restored = Tokenizer.from_state(state)
    text = "Σοφία sat on THE mat"
    assert restored.tokenize(text) == tokenizer.tokenize(text)
    assert restored.settings == tokenizer.settings


def test_training_on_a_sample_is_deterministic(tmp_path):
    corpus = write_corpus(tmp_path / "big.txt", lines=3000, seed=1)
    a = Tokenizer.train([corpus], tmp_path / "a", 400, sample_size=1000, seed=3, threads=1)
    b = Tokenizer.train([corpus], tmp_path / "b", 400, sample_size=1000, seed=3, threads=1)
    assert (tmp_path / "a" / "spm.model").read_bytes() == (tmp_path / "b" / "spm.model").read_bytes()
    assert len(a) == len(b) == 400


def test_training_errors_are_clear(tmp_path):
    corpus = write_corpus(tmp_path / "small.txt", lines=50)
    with pytest.raises(ConfigError, match=r"--vocab-size 100000 is too large.*use --vocab-size \d+ or less"):
        Tokenizer.train([corpus], tmp_path / "tok", 100000, threads=1)
    assert not (tmp_path / "tok").exists()
    with pytest.raises(DataError, match="missing.txt: no such file"):
        Tokenizer.train([tmp_path / "missing.txt"], tmp_path / "tok", 300)
    (tmp_path / "bad.txt").write_bytes(b"good line\nbad \xff line\n")
    with pytest.raises(DataError, match=r"bad.txt:2: invalid UTF-8"):
        Tokenizer.train([tmp_path / "bad.txt"], tmp_path / "tok", 300)
    with pytest.raises(DataError, match="not a tokenizer"):
        Tokenizer.load(tmp_path)


def test_cli_builds_tokenizer_and_dictionary(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "train.txt", lines=800)
    code = build_tokenizer_main(["-i", str(corpus), "-o", str(tmp_path / "tok"), "--vocab-size", "400",
                                 "--inline-case", "--lang-codes", "en", "--dict-out", str(tmp_path / "dict.txt"),
                                 "--workers", "1", "--threads", "1"])
    assert code == 0
    entries = (tmp_path / "dict.txt").read_text(encoding="utf-8").splitlines()
    assert (len(entries) + 4) % 8 == 0
    assert {"<T>", "<U>", "<lang:en>"} <= {line.split(" ")[0] for line in entries}
    assert build_tokenizer_main(["-i", str(tmp_path / "nope"), "-o", str(tmp_path / "t2"), "--vocab-size", "9"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: " + str(tmp_path / "nope") + ": no such file")


def test_cli_streams_line_by_line(tokenizers, tmp_path):
    """A pipe gets each answer before the next line is sent (usable interactively)."""
    tokenizers["cased"].save(tmp_path / "tok")
    tok = subprocess.Popen([BIN / "pasero-tokenize", tmp_path / "tok"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, encoding="utf-8")
    detok = subprocess.Popen([BIN / "pasero-detokenize", tmp_path / "tok"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        for line in ["Hello WORLD", "iPhone über Σοφία", ""]:
            tok.stdin.write(line + "\n")
            tok.stdin.flush()
            pieces = tok.stdout.readline().rstrip("\n")
            detok.stdin.write(pieces + "\n")
            detok.stdin.flush()
            assert detok.stdout.readline().rstrip("\n") == line
    finally:
        for process in (tok, detok):
            process.stdin.close()
            assert process.wait(timeout=30) == 0


def test_cli_files_and_errors(tokenizers, tmp_path, capsys):
    tokenizers["plain"].save(tmp_path / "tok")
    (tmp_path / "in.txt").write_text("a cat\nthe DOG\n", encoding="utf-8")
    assert tokenize_main([str(tmp_path / "tok"), "-i", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out")]) == 0
    assert detokenize_main([str(tmp_path / "tok"), "-i", str(tmp_path / "out"), "-o", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back").read_text(encoding="utf-8") == "a cat\nthe DOG\n"
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xc3(\n")
    assert tokenize_main([str(tmp_path / "tok"), "-i", str(tmp_path / "bad.txt"), "-o", str(tmp_path / "o2")]) == 2
    assert "bad.txt:2: invalid UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    assert tokenize_main([str(tmp_path / "nowhere")]) == 2
    assert "not a tokenizer" in capsys.readouterr().err


def test_temperature_gives_small_languages_a_larger_share_of_the_sample(tmp_path):
    """Pasero's multilingual sampling: input i gets a share of the sample proportional to
    n_i ** (1 / T); T = 1 is the uniform sample over all lines (as before)."""
    from pasero.tokenizer import _sample_lines

    big, small = tmp_path / "train.de", tmp_path / "train.ko"
    big.write_text("".join(f"groß {i}\n" for i in range(900)))
    small.write_text("".join(f"작은 {i}\n" for i in range(100)))

    def shares(temperature: float, size: int = 500) -> tuple[int, int]:
        lines = list(_sample_lines([big, small], size, seed=3, temperature=temperature))
        return sum(line.startswith("groß") for line in lines), sum(line.startswith("작은") for line in lines)

    de, ko = shares(1.0)
    assert de + ko == 500 and 30 <= ko <= 80  # about 10%
    de, ko = shares(5.0)  # 900 ** 0.2 = 3.90 vs 100 ** 0.2 = 2.51
    assert (de, ko) == (304, 196)
    de, ko = shares(1000.0, size=1000)  # nearly uniform over languages: the 100 lines drawn ~5 times each
    assert de + ko == 1000 and abs(de - ko) <= 2
    lines = list(_sample_lines([big, small], 1000, seed=3, temperature=1000.0))
    assert {line for line in lines if line.startswith("작은")} == {f"작은 {i}\n" for i in range(100)}
    assert lines == list(_sample_lines([big, small], 1000, seed=3, temperature=1000.0))  # seeded
    # inputs of one language (its side of two directions) count as one
    other = tmp_path / "more.de"
    other.write_text("".join(f"mehr {i}\n" for i in range(900)))
    lines = list(_sample_lines([big, small, other], 500, seed=3, temperature=5.0))
    german = sum(not line.startswith("작은") for line in lines)
    assert german == round(500 * 1800 ** 0.2 / (1800 ** 0.2 + 100 ** 0.2))


def test_a_language_side_shared_by_several_directions_counts_each_sentence_once(tmp_path):
    """The English of de-en and fr-en holds the same talks: a sentence already in an earlier
    English input is not sampled again (a file's own repeats are kept, as bilingual inputs keep them)."""
    from pasero.tokenizer import _sample_lines

    de_en, fr_en, german = tmp_path / "de-en.en", tmp_path / "fr-en.en", tmp_path / "train.de"
    de_en.write_text("".join(f"talk {i}\n" for i in range(60)) + "Applause\nApplause\n")
    fr_en.write_text("".join(f"talk {i}\n" for i in range(30, 90)) + "Applause\n")
    german.write_text("".join(f"Vortrag {i}\nDanke\n" for i in range(40)))
    lines = list(_sample_lines([de_en, fr_en, german], 0, seed=1))
    english = [line for line in lines if not line.startswith(("Vortrag", "Danke"))]
    assert sorted(english) == sorted([f"talk {i}\n" for i in range(90)] + ["Applause\n"] * 2)
    assert lines.count("Danke\n") == 40
    sample = list(_sample_lines([de_en, fr_en, german], 400, seed=1, temperature=1000.0))
    assert sum(not line.startswith(("Vortrag", "Danke")) for line in sample) == 200  # 92 English lines, drawn again
