"""pasero-download on archives built in each corpus's real layout, served from 127.0.0.1.

TED talks, local files and the synthetic corpus here; the IWSLT archives in test_iwslt.py.
"""

import logging

import pytest
from corpus_archives import assert_aligned, lines, md5, run, targz
from http_server import FileServer

from pasero.files import read_lines


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


# --- TED talks (Qi et al., 2018): one TSV per split, header of language codes -----------------

TED_LANGS = ["en", "es", "pt-br", "de", "fr"]
# Row -> cells replaced: missing translations as the real files write them, and a real sentence
# with the word NULL in it (kept).
TED_SPECIAL = {
    1: {"en": "__NULL__"},
    2: {"de": "_ _ NULL _ _"},
    3: {"de": "  {split}  3\u00a0de  "},
    4: {"de": "_ _ NULL _ _ _ _ NULL _ _"},
    5: {"pt-br": "Quando eu tinha 11 anos , _ _ NULL _ _"},
    6: {"en": "_ _ NULL _ _ minns jag att jag vaknade"},
    7: {"de": "{split} 7 de : der Zeiger ist NULL", "en": "{split} 7 en : the pointer is NULL"},
}


def ted_tsv(split, n_rows=9):
    rows = ["\t".join(["talk_name"] + TED_LANGS)]
    for i in range(n_rows):
        cells = {lang: f"{split} {i} {lang} talk &apos;s &quot;text&quot; &amp; more" for lang in TED_LANGS}
        cells.update({lang: text.format(split=split) for lang, text in TED_SPECIAL.get(i, {}).items()})
        rows.append("\t".join([f"talk_{i}"] + [cells[lang] for lang in TED_LANGS]))
    return "\n".join(rows) + "\n"


@pytest.fixture
def ted(server):
    data = targz({f"all_talks_{s}.tsv": ted_tsv(s) for s in ("train", "dev", "test")})
    return server.add("/data/ted_talks.tar.gz", data), md5(data)


def test_ted_talks(ted, server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    url, checksum = ted
    raw, out = tmp_path / "raw", tmp_path / "de-en" / "text"
    assert run("--source", "ted_talks", "--pair", "de-en", "--raw-dir", raw, "-o", out,
               "--url", url, "--checksum", checksum) == 0
    assert_aligned(out, "de", "en")
    de, en = lines(out / "train.de"), lines(out / "train.en")
    assert [d.split()[1] for d in de] == ["0", "3", "5", "7", "8"]  # rows 1, 2, 4, 6: a placeholder
    assert de[0] == "train 0 de talk 's \"text\" & more" and en[0] == "train 0 en talk 's \"text\" & more"
    assert de[1] == "train 3 de" and en[1].startswith("train 3 en")
    assert de[3] == "train 7 de : der Zeiger ist NULL" and en[3] == "train 7 en : the pointer is NULL"
    assert lines(out / "valid.de")[0].startswith("dev 0 de") and lines(out / "test.en")[-1].startswith("test 8 en")
    assert "all_talks_train.tsv: 4 rows dropped (NULL placeholder" in caplog.text
    assert "train: 5 sentence pairs written, 0 dropped" in caplog.text
    # Another pair reuses the verified archive in the shared raw folder; pt-br is written pt_br.
    assert run("--source", "ted_talks", "--pair", "pt_br-fr", "--raw-dir", raw, "-o", tmp_path / "pt",
               "--url", url, "--checksum", checksum) == 0
    pt = lines(tmp_path / "pt" / "train.pt_br")
    assert pt[1].startswith("train 1 pt-br") and not any(s.startswith("train 5 ") for s in pt)
    assert len(server.requests) == 1


def test_ted_missing_language_lists_available_ones(ted, tmp_path, capsys):
    url, checksum = ted
    code = run("--source", "ted_talks", "--pair", "de-xx", "--raw-dir", tmp_path / "raw",
               "-o", tmp_path / "out", "--url", url, "--checksum", checksum)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "no language 'xx'" in err and "en, es, pt-br, de, fr" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_ted_has_no_named_test_sets(ted, tmp_path, capsys):
    url, checksum = ted
    code = run("--source", "ted_talks", "--pair", "de-en", "--raw-dir", tmp_path / "raw",
               "-o", tmp_path / "out", "--url", url, "--checksum", checksum, "--test-set", "tst2010")
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "--test-set tst2010: the ted_talks corpus has no such test set for de-en; it has none beside test" in err
    assert not (tmp_path / "out").exists()


def test_checksum_mismatch_is_a_one_line_error(ted, tmp_path, capsys):
    url, _ = ted
    code = run("--source", "ted_talks", "--pair", "de-en", "--raw-dir", tmp_path / "raw",
               "-o", tmp_path / "out", "--url", url, "--checksum", "md5:" + "0" * 32)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "md5 mismatch: expected 00000000000000000000000000000000, got" in err and "ted_talks.tar.gz" in err


# --- local files and the synthetic corpus ---------------------------------------------------

def write_local(tmp_path, n=5, overrides=None, splits=("train", "valid", "test")):
    for split in splits:
        for lang in ("de", "en"):
            path = tmp_path / f"{split}.{lang}"
            default = "".join(f"{split} {i} {lang}\n" for i in range(n)).encode()
            path.write_bytes((overrides or {}).get(path.name, default))
    # One --files per split, as the workflow passes them (one --files with three also works).
    return [a for s in splits for a in ("--files", f"{s}={tmp_path}/{s}.{{lang}}")]


def test_local_files(tmp_path):
    files = write_local(tmp_path, overrides={"valid.en": b"a\n\n  c  \n__NULL__\ne\n"})
    out = tmp_path / "out"
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files) == 0
    assert lines(out / "valid.de") == ["valid 0 de", "valid 2 de", "valid 4 de"]
    assert lines(out / "valid.en") == ["a", "c", "e"]
    assert lines(out / "train.en") == [f"train {i} en" for i in range(5)]


def test_byte_order_mark_is_not_glued_to_the_first_word(tmp_path):
    files = write_local(tmp_path, n=3, overrides={"train.de": "\ufeffHallo Welt\nzwei\n\ufeffdrei\n".encode(),
                                                  "train.en": "\ufeffhello world\ntwo\nthree\n".encode()})
    out = tmp_path / "out"
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files) == 0
    assert lines(out / "train.de")[0] == "Hallo Welt" and lines(out / "train.en")[0] == "hello world"
    assert lines(out / "train.de")[2] == "\ufeffdrei"  # only a file's first character is a BOM
    assert next(read_lines(tmp_path / "train.en")) == "hello world"


def test_local_further_test_sets(tmp_path, capsys):
    files = write_local(tmp_path, splits=("train", "valid", "test", "news2019"), n=4)
    out = tmp_path / "out"
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files, "--test-set", "news2019") == 0
    assert sorted(p.name for p in out.iterdir()) == ["news2019.de", "news2019.en"]
    assert lines(out / "news2019.en") == [f"news2019 {i} en" for i in range(4)]
    # The main download ignores the further sets; an unknown name lists the ones there are.
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files) == 0
    assert sorted(p.name for p in out.iterdir())[:2] == ["news2019.de", "news2019.en"]
    assert lines(out / "test.de") == [f"test {i} de" for i in range(4)]
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files, "--test-set", "news2020") == 2
    err = capsys.readouterr().err.strip()
    assert "no such test set for de-en; it has: news2019" in err and "\n" not in err


@pytest.mark.parametrize("name,content,message", [
    ("test.en", b"one\ntwo\n", "test.de has 5 lines but"),
    ("train.de", b"ok\nok\nbad \xff byte\nok\nok\n", "train.de:3: invalid UTF-8"),
])
def test_local_file_errors_leave_no_output(tmp_path, capsys, name, content, message):
    files = write_local(tmp_path, overrides={name: content})
    out = tmp_path / "out"
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize("argv,message", [
    (["--source", "local", "--pair", "de-en", "--files", "train=x.txt", "valid=x.{lang}", "test=y.{lang}"], "{lang}"),
    (["--source", "local", "--pair", "de-en", "--files", "train=x.{lang}"], "missing: valid, test"),
    (["--source", "local", "--pair", "de-en", "--files", "train=x.{lang}", "valid=x.{lang}", "test=x.{lang}",
      "dev-2=x.{lang}"], "bad: dev-2"),
    (["--source", "synthetic", "--pair", "de-en", "--files", "train=x.{lang}"], "only for the local source"),
    (["--source", "synthetic", "--pair", "de-fr"], "its languages are de, en, xx"),
    (["--source", "synthetic", "--pair", "de-en", "--sizes", "train=0"], "positive"),
    (["--source", "synthetic", "--pair", "de-en", "--test-set", "tst2010"],
     "the synthetic corpus has no such test set for de-en; it has none beside test"),
    (["--source", "ted_talks", "--pair", "de-en", "--raw-dir", "r"], "needs --url"),
    (["--source", "ted_talks", "--pair", "de-en", "--raw-dir", "r", "--test-set", "x"], "needs --url"),
    (["--source", "iwslt14", "--pair", "de-en", "--raw-dir", "r", "--url", "http://x/a.tgz", "--url",
      "http://x/b.tgz", "--checksum", "md5:" + "0" * 32], "one checksum per URL"),
    (["--source", "local", "--pair", "deen"], "SRC-TGT"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    assert run(*argv, "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_synthetic_corpus_both_directions(tmp_path):
    sizes = ["--sizes", "train=300", "valid=20", "test=30"]
    assert run("--source", "synthetic", "--pair", "de-en", "-o", tmp_path / "de-en", "--seed", 4, *sizes) == 0
    assert run("--source", "synthetic", "--pair", "en-de", "-o", tmp_path / "en-de", "--seed", 4, *sizes) == 0
    for split, n in (("train", 300), ("valid", 20), ("test", 30)):
        assert len(lines(tmp_path / "de-en" / f"{split}.de")) == n
        for lang in ("de", "en"):
            assert lines(tmp_path / "de-en" / f"{split}.{lang}") == lines(tmp_path / "en-de" / f"{split}.{lang}")
