"""fairseq-format dictionaries: same ids as fairseq, thresholds, padding, encode/decode."""

import numpy as np
import pytest

from pasero.dictionary import Dictionary
from pasero.errors import DataError

# A dict.txt as fairseq writes it (no specials), with a deliberate duplicate flagged for overwrite.
FAIRSEQ_DICT = "▁the 120\n, 80\n▁cat 7\n▁Katze 7\nmadeupword0000 0\n▁the 3 #fairseq:overwrite\n"


def test_fairseq_dict_loads_with_fairseq_ids(tmp_path):
    (tmp_path / "dict.txt").write_text(FAIRSEQ_DICT, encoding="utf-8")
    d = Dictionary.load(tmp_path / "dict.txt")
    # fairseq: <s>=0 <pad>=1 </s>=2 <unk>=3, then the file's lines in order; an overwritten
    # token keeps its old slot but `index` returns its new id.
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>", "▁the", ",", "▁cat", "▁Katze", "madeupword0000", "▁the"]
    assert (d.bos_idx, d.pad_idx, d.eos_idx, d.unk_idx) == (0, 1, 2, 3)
    assert d.index("▁the") == 9 and d.index(",") == 5 and d.index("nope") == 3
    assert d[4] == "▁the" and d[1000] == "<unk>"
    d.save(tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text(encoding="utf-8") == FAIRSEQ_DICT


def test_specials_listed_in_the_file_are_not_added_twice(tmp_path):
    (tmp_path / "dict.txt").write_text("<s> 1\n<pad> 1\n</s> 1\n<unk> 1\nhello 5\n", encoding="utf-8")
    d = Dictionary.load(tmp_path / "dict.txt")
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>", "hello"]


@pytest.mark.parametrize("content, message", [
    ("a 1\nb 2\na 3\n", r"dict.txt:3: duplicate token 'a'.*#fairseq:overwrite"),
    ("a 1\nb\n", r"dict.txt:2: expected '<token> <count>'"),
    ("a 1\nb two\n", r"dict.txt:2: count 'two' is not an integer"),
    ("a 1\n<unk> 4\n", r"dict.txt:2: duplicate token '<unk>'"),
])
def test_malformed_dictionaries_name_file_and_line(tmp_path, content, message):
    (tmp_path / "dict.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        Dictionary.load(tmp_path / "dict.txt")


def test_missing_and_non_utf8_dictionaries(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Dictionary.load(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes(b"a 1\n\xe9t\xe9 2\n")
    with pytest.raises(DataError, match=r"latin1.txt:2: invalid UTF-8"):
        Dictionary.load(tmp_path / "latin1.txt")


def test_from_counts_sorts_thresholds_and_pads_like_fairseq():
    counts = {"b": 5, "a": 5, "c": 9, "rare": 1, "<lang:en>": 0}
    d = Dictionary.from_counts(counts, min_count=2, keep=["<lang:en>"])
    # most frequent first, ties alphabetical; kept symbols survive the threshold; padded to 8
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>", "c", "a", "b", "<lang:en>"]
    d = Dictionary.from_counts(counts, min_count=0)
    assert len(d) == 16
    assert d.symbols[4:9] == ["c", "a", "b", "rare", "<lang:en>"]
    assert d.symbols[9:] == [f"madeupword{i:04d}" for i in range(7)]
    assert len(Dictionary.from_counts(counts, pad_to_multiple=1)) == 9


def test_save_load_round_trip(tmp_path):
    d = Dictionary.from_counts({"x": 3, "y": 2, "▁z": 1})
    d.save(tmp_path / "dict.txt")
    lines = (tmp_path / "dict.txt").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["x 3", "y 2", "▁z 1"] and "<s>" not in (tmp_path / "dict.txt").read_text()
    assert Dictionary.load(tmp_path / "dict.txt") == d
    assert Dictionary.load(tmp_path / "dict.txt").counts[4:7] == [3, 2, 1]


def test_from_symbols_prepends_specials_unless_present():
    assert Dictionary.from_symbols(["a", "b"]).symbols == ["<s>", "<pad>", "</s>", "<unk>", "a", "b"]
    full = ["<s>", "<pad>", "</s>", "<unk>", "a", "b"]
    assert Dictionary.from_symbols(full).symbols == full
    assert Dictionary.from_symbols(full).index("b") == 5


def test_encode_and_decode():
    d = Dictionary.from_symbols(["▁the", "▁cat", "s"])
    ids = d.encode("▁the ▁cat s ▁dog")
    assert ids.dtype == np.int64 and ids.tolist() == [4, 5, 6, 3, 2]
    assert d.encode(["▁cat"], append_eos=False).tolist() == [5]
    assert d.encode("").tolist() == [2]
    assert d.decode([0, 4, 1, 5, 3, 2, 6]) == "▁the ▁cat <unk>"  # stops at </s>
    assert d.decode([0, 4, 1], skip_special=False) == "<s> ▁the <pad>"
