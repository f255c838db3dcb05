"""Parallel binarization and dictionary building: same result whatever the workers, clear errors."""

import logging
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_data import train, write_corpus

from pasero.binarize import binarize, build_dictionary, line_ranges, read_range
from pasero.cli.data import binarize_main, build_dict_main
from pasero.dictionary import Dictionary
from pasero.errors import DataError
from pasero.indexed_dataset import IndexedDataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binarize")
    tokenizer = train(tmp, "tok", inline_case=True, lang_codes=["en"])
    tokenizer.save(tmp / "tok")
    corpus = write_corpus(tmp / "train.txt", lines=3000, seed=5)
    dictionary = build_dictionary([corpus], tokenizer)
    dictionary.save(tmp / "dict.txt")
    return tmp, tokenizer, corpus, dictionary


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=8), max_size=12),
       final_newline=st.booleans(), n=st.integers(1, 6))
def test_byte_ranges_cover_every_line_once(tmp_path_factory, lines, final_newline, n):
    path = tmp_path_factory.getbasetemp() / "ranges.txt"
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    path.write_bytes(text.encode("utf-8"))
    ranges = line_ranges(path, n)
    assert len(ranges) <= n
    read = [line.removesuffix("\n") for a, b in ranges for batch in read_range(path, a, b) for line in batch]
    expected = text.split("\n")
    if expected[-1] == "":  # after a final newline, or an empty file
        expected.pop()
    assert read == expected


def test_parallel_binarization_equals_sequential_and_per_line_encoding(setup, tmp_path):
    tmp, tokenizer, corpus, dictionary = setup
    one = binarize(corpus, tmp_path / "one", dictionary, tokenizer, workers=1)
    three = binarize(corpus, tmp_path / "three", dictionary, tokenizer, workers=3)
    for ext in ("bin", "idx"):
        assert (tmp_path / f"one.{ext}").read_bytes() == (tmp_path / f"three.{ext}").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["one.bin", "one.idx", "three.bin", "three.idx"]
    lines = corpus.read_text(encoding="utf-8").splitlines()
    ds = IndexedDataset(tmp_path / "three")
    assert len(ds) == len(lines) == one.sentences == three.sentences
    assert ds.dtype == np.uint16
    for i in range(0, len(lines), 97):
        expected = dictionary.encode(tokenizer.tokenize(lines[i]))
        assert ds[i].tolist() == expected.tolist() and expected[-1] == 2  # </s> appended
        assert tokenizer.detokenize(dictionary.decode(ds[i])) == tokenizer.normalize(lines[i])
    assert three.tokens == ds.num_tokens and three.unknown == 0


def test_leftovers_of_a_killed_binarization_are_removed_by_the_next_one(setup, tmp_path):
    """kill -9 leaves the workers' parts and the temporary .bin/.idx; the rerun of that output
    removes them, and leaves alone those of another output being written beside it."""
    tmp, tokenizer, corpus, dictionary = setup
    own = [tmp_path / ".train.de.binarize.x1y2z3ab", tmp_path / ".train.de.bin.abcd1234.tmp",
           tmp_path / ".train.de.idx.abcd1234.tmp"]
    other = [tmp_path / ".train.en.binarize.x1y2z3ab", tmp_path / ".train.en.bin.abcd1234.tmp"]
    for path in own[:1] + other[:1]:
        path.mkdir()
        (path / "part0.bin").write_bytes(b"\0" * 1000)
    for path in own[1:] + other[1:]:
        path.write_bytes(b"\0" * 1000)
    binarize(corpus, tmp_path / "train.de", dictionary, tokenizer, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["train.de.bin", "train.de.idx"] + [p.name for p in other])


def test_pretokenized_text_and_unknown_rate(setup, tmp_path, caplog):
    tmp, tokenizer, corpus, dictionary = setup
    (tmp_path / "tok.txt").write_text("▁the ▁cat\n\n▁the ▁zzz_unknown\n", encoding="utf-8")
    stats = binarize(tmp_path / "tok.txt", tmp_path / "out", dictionary)
    ds = IndexedDataset(tmp_path / "out")
    assert [x.tolist() for x in ds] == [dictionary.encode(line).tolist() for line in
                                        ["▁the ▁cat", "", "▁the ▁zzz_unknown"]]
    assert ds[1].tolist() == [2] and ds[2][1] == dictionary.unk_idx
    assert (stats.sentences, stats.tokens, stats.unknown) == (3, 7, 1)
    caplog.set_level(logging.INFO)
    assert binarize_main(["--dict", str(tmp / "dict.txt"), "-i", str(tmp_path / "tok.txt"),
                          "-o", str(tmp_path / "cli"), "--workers", "1"]) == 0
    assert "1 replaced by <unk> (14.286%)" in caplog.text


def test_bad_input_is_a_one_line_error_and_leaves_no_output(setup, tmp_path, capsys):
    tmp, tokenizer, corpus, dictionary = setup
    lines = [f"line {i}".encode() for i in range(400)]
    lines[300] = b"caf\xe9 latin-1"
    (tmp_path / "bad.txt").write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"bad.txt:301: invalid UTF-8"):
        binarize(tmp_path / "bad.txt", tmp_path / "out" / "bad", dictionary, tokenizer, workers=2)
    assert os.listdir(tmp_path / "out") == []
    with pytest.raises(DataError, match="missing.txt: no such file"):
        binarize(tmp_path / "missing.txt", tmp_path / "x", dictionary)
    other = Dictionary.from_counts({"▁some": 3, "▁words": 2})
    with pytest.raises(DataError, match="does not match"):
        binarize(corpus, tmp_path / "x", other, tokenizer)
    other.save(tmp_path / "other.txt")
    code = binarize_main(["--dict", str(tmp_path / "other.txt"), "--tokenizer", str(tmp / "tok"),
                          "-i", str(corpus), "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "other.txt does not match" in err[0]
    assert not any(name.startswith("x") for name in os.listdir(tmp_path))


def test_dictionary_from_tokenizer_keeps_every_piece_and_symbol(setup, tmp_path):
    tmp, tokenizer, corpus, dictionary = setup
    normal = [p for i, p in enumerate(tokenizer.pieces) if i not in tokenizer.special_ids]
    assert set(normal) <= set(dictionary.symbols) and len(dictionary) % 8 == 0
    assert dictionary.index("<lang:en>") != dictionary.unk_idx  # never in the text, still kept
    assert dictionary.counts[4] >= dictionary.counts[5] >= dictionary.counts[-1]
    # a higher threshold drops rare pieces but keeps the markers and language codes
    code = build_dict_main(["-i", str(corpus), "--tokenizer", str(tmp / "tok"), "-o", str(tmp_path / "d.txt"),
                            "--min-count", "50", "--workers", "2"])
    small = Dictionary.load(tmp_path / "d.txt")
    assert code == 0 and len(small) < len(dictionary) and len(small) % 8 == 0
    assert {"<T>", "<U>", "<lang:en>"} <= set(small.symbols)
    assert all(c >= 50 for s, c in zip(small.symbols, small.counts, strict=True) if s.startswith("▁"))


def test_dictionary_of_pretokenized_text(tmp_path):
    (tmp_path / "a.txt").write_text("b a b\nc b\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("a\n", encoding="utf-8")
    assert build_dict_main(["-i", str(tmp_path / "a.txt"), str(tmp_path / "b.txt"), "-o", str(tmp_path / "dict.txt"),
                            "--workers", "1"]) == 0
    assert (tmp_path / "dict.txt").read_text().splitlines()[:3] == ["b 3", "a 2", "c 1"]
    assert len((tmp_path / "dict.txt").read_text().splitlines()) == 4  # 4 specials + 4 = 8
