"""pasero-download on archives built in each corpus's real layout, served from 127.0.0.1."""

import hashlib
import io
import logging
import tarfile

import pytest
from http_server import FileServer

from pasero.cli.download import download_main
from pasero.files import count_lines


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


def targz(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def md5(data):
    return "md5:" + hashlib.md5(data).hexdigest()


def run(*argv):
    return download_main([str(a) for a in argv])


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def assert_aligned(text_dir, src, tgt):
    for split in ("train", "valid", "test"):
        assert count_lines(text_dir / f"{split}.{src}") == count_lines(text_dir / f"{split}.{tgt}") > 0


# --- TED talks (Qi et al., 2018): one TSV per split, header of language codes -----------------

TED_LANGS = ["en", "es", "pt-br", "de", "fr"]


def ted_tsv(split):
    rows = ["\t".join(["talk_name"] + TED_LANGS)]
    for i in range(6):
        cells = {lang: f"{split} {i} {lang} talk &apos;s &quot;text&quot; &amp; more" for lang in TED_LANGS}
        if i == 1:
            cells["en"] = "__NULL__"
        if i == 2:
            cells["de"] = "_ _ NULL _ _"
        if i == 3:
            cells["de"] = f"  {split}  3\u00a0de  "
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
    assert len(de) == 4  # rows 1 (en NULL) and 2 (de NULL) dropped pairwise
    assert de[0] == "train 0 de talk 's \"text\" & more" and en[0] == "train 0 en talk 's \"text\" & more"
    assert de[1] == "train 3 de" and en[1].startswith("train 3 en")
    assert lines(out / "valid.de")[0].startswith("dev 0 de") and lines(out / "test.en")[-1].startswith("test 5 en")
    assert "4 sentence pairs written, 2 dropped" in caplog.text
    # Another pair reuses the verified archive in the shared raw folder; pt-br is written pt_br.
    assert run("--source", "ted_talks", "--pair", "pt_br-fr", "--raw-dir", raw, "-o", tmp_path / "pt",
               "--url", url, "--checksum", checksum) == 0
    assert lines(tmp_path / "pt" / "train.pt_br")[1].startswith("train 1 pt-br")
    assert len(server.requests) == 1


def test_ted_missing_language_lists_available_ones(ted, tmp_path, capsys):
    url, checksum = ted
    code = run("--source", "ted_talks", "--pair", "de-xx", "--raw-dir", tmp_path / "raw",
               "-o", tmp_path / "out", "--url", url, "--checksum", checksum)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "no language 'xx'" in err and "en, es, pt-br, de, fr" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_checksum_mismatch_is_a_one_line_error(ted, tmp_path, capsys):
    url, _ = ted
    code = run("--source", "ted_talks", "--pair", "de-en", "--raw-dir", tmp_path / "raw",
               "-o", tmp_path / "out", "--url", url, "--checksum", "md5:" + "0" * 32)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "md5 mismatch: expected 00000000000000000000000000000000, got" in err and "ted_talks.tar.gz" in err


# --- IWSLT: train.tags files (tag lines are metadata) and XML dev/test sets ------------------

def tags_file(lang, n_talks=2, per_talk=30, blank_at=None):
    out = []
    for t in range(n_talks):
        out += [f"<url>http://www.ted.com/talks/{t}.html</url>", f"<keywords>talks, {lang}</keywords>",
                f"<speaker>Speaker {t}</speaker>", f"<talkid>{t}</talkid>",
                f"<title>title {t} {lang}</title>", f"<description>about {t} {lang}</description>",
                f'<reviewer href="http://x">R</reviewer>', f'<translator href="http://y">T</translator>']
        for i in range(per_talk):
            k = t * per_talk + i
            out.append("" if k == blank_at else f"line {k} {lang}")
    return "\n".join(out) + "\n"


def xml_file(year, name, pair, lang, n):
    segs = [f'<seg id="{i + 1}"> {name} {i} {lang} &amp; co </seg>' for i in range(n)]
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{name}" srclang="{lang}">',
        '<doc docid="1" genre="lectures">', "<url>http://www.ted.com/talks/1.html</url>",
        "<description>TED Talk Subtitles and Transcript</description>", "<talkid>1</talkid>",
        "<title>A title</title>", *segs, "</doc>", "</srcset>", "</mteval>",
    ]) + "\n"


def xml_name(year, name, pair, lang):
    return f"IWSLT{year}.{name}.{pair}.{lang}.xml"


def test_iwslt14_follows_fairseqs_split(server, tmp_path):
    sets = ["TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"]
    files = {f"de-en/train.tags.de-en.{lang}": tags_file(lang, blank_at=7 if lang == "de" else None)
             for lang in ("de", "en")}
    files.update({f"de-en/{xml_name(14, s, 'de-en', lang)}": xml_file(14, s, "de-en", lang, 3)
                  for s in sets for lang in ("de", "en")})
    url = server.add("/fairseq/data/iwslt14/de-en.tgz", targz(files))
    out = tmp_path / "text"
    assert run("--source", "iwslt14", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out, "--url", url) == 0
    assert_aligned(out, "de", "en")
    # 2 talks x (title + description + 30 lines) = 64 pairs, one with an empty side: 63 kept.
    kept = [f"title 0 de", "about 0 de"] + [f"line {k} de" for k in range(30) if k != 7] + \
           ["title 1 de", "about 1 de"] + [f"line {k} de" for k in range(30, 60)]
    assert lines(out / "valid.de") == kept[22::23] and len(lines(out / "valid.de")) == 2
    assert lines(out / "train.de") == [s for i, s in enumerate(kept, 1) if i % 23]
    assert lines(out / "test.en") == [f"{s} {i} en & co" for s in sets for i in range(3)]


def test_iwslt_missing_language_lists_available_ones(server, tmp_path, capsys):
    url = server.add("/de-en.tgz", targz({f"de-en/train.tags.de-en.{lang}": tags_file(lang) for lang in ("de", "en")}))
    assert run("--source", "iwslt14", "--pair", "de-fr", "--raw-dir", tmp_path, "-o", tmp_path / "o", "--url", url) == 2
    err = capsys.readouterr().err.strip()
    assert "no training data for de-fr" in err and "languages: de, en" in err and "\n" not in err


def test_iwslt17_training_and_separate_test_archives(server, tmp_path):
    trnted = {f"de-en/train.tags.de-en.{lang}": tags_file(lang, n_talks=1, per_talk=10) for lang in ("de", "en")}
    trnted.update({f"de-en/{xml_name(17, s, 'de-en', lang)}": xml_file(17, s, "de-en", lang, 2)
                   for s in ("TED.dev2010", "TED.tst2010", "TED.tst2015") for lang in ("de", "en")})
    test_de = {f"de-en/{xml_name(17, s, 'de-en', 'de')}": xml_file(17, s, "de-en", "de", 4)
               for s in ("TED.tst2016", "TED.tst2017")}
    test_en = {f"en-de/{xml_name(17, s, 'en-de', 'en')}": xml_file(17, s, "en-de", "en", 4)
               for s in ("TED.tst2016", "TED.tst2017")}
    urls = [server.add("/archive/2017-01-trnted/texts/de/en/de-en.tgz", targz(trnted)),
            server.add("/archive/2017-01-ted-test/texts/de/en/de-en.tgz", targz(test_de)),
            server.add("/archive/2017-01-ted-test/texts/en/de/en-de.tgz", targz(test_en))]
    url_args = [a for u in urls for a in ("--url", u)]
    raw = tmp_path / "raw"
    for pair in ("de-en", "en-de"):
        src, tgt = pair.split("-")
        out = tmp_path / pair
        assert run("--source", "iwslt17", "--pair", pair, "--raw-dir", raw, "-o", out, *url_args) == 0
        assert_aligned(out, src, tgt)
        assert lines(out / "train.de")[:3] == ["title 0 de", "about 0 de", "line 0 de"]
        assert lines(out / "test.de") == [f"TED.tst2017 {i} de & co" for i in range(4)]
        assert lines(out / "test.en") == [f"TED.tst2017 {i} en & co" for i in range(4)]
        assert lines(out / "valid.en") == [f"{s} {i} en & co" for s in ("TED.dev2010", "TED.tst2010", "TED.tst2015")
                                           for i in range(2)]
    assert len(server.requests) == 3  # the second pair reuses the shared raw folder


# --- local files and the synthetic corpus ---------------------------------------------------

def write_local(tmp_path, n=5, overrides=None):
    for split in ("train", "valid", "test"):
        for lang in ("de", "en"):
            path = tmp_path / f"{split}.{lang}"
            path.write_bytes((overrides or {}).get(path.name, "".join(f"{split} {i} {lang}\n" for i in range(n)).encode()))
    # One --files per split, as the workflow passes them (one --files with three also works).
    return [a for s in ("train", "valid", "test") for a in ("--files", f"{s}={tmp_path}/{s}.{{lang}}")]


def test_local_files(tmp_path):
    files = write_local(tmp_path, overrides={"valid.en": "a\n\n  c  \n__NULL__\ne\n".encode()})
    out = tmp_path / "out"
    assert run("--source", "local", "--pair", "de-en", "-o", out, *files) == 0
    assert lines(out / "valid.de") == ["valid 0 de", "valid 2 de", "valid 4 de"]
    assert lines(out / "valid.en") == ["a", "c", "e"]
    assert lines(out / "train.en") == [f"train {i} en" for i in range(5)]


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
    (["--source", "synthetic", "--pair", "de-en", "--files", "train=x.{lang}"], "only for the local source"),
    (["--source", "synthetic", "--pair", "de-fr"], "languages: de, en"),
    (["--source", "synthetic", "--pair", "de-en", "--sizes", "train=0"], "positive"),
    (["--source", "ted_talks", "--pair", "de-en", "--raw-dir", "r"], "needs --url"),
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
