"""IWSLT archives: fairseq's IWSLT'14 preparation, IWSLT'17, talk-by-talk alignment, named test sets.

The expected texts are built here by construction (token counts chosen around clean-corpus-n's
limits, words that the Moses tokenizer leaves whole), not by calling pasero's own functions.
"""

import logging

import pytest
from corpus_archives import (
    assert_aligned,
    lines,
    run,
    tags_file,
    talk_header,
    targz,
    xml_file,
    xml_name,
)
from http_server import FileServer

from pasero.corpora import CorpusOptions, named_test_sets
from pasero.corpora.moses import clean_corpus_n, tokenize, tokenize_pairs
from pasero.download import direction_urls
from pasero.errors import ConfigError

IWSLT14_SETS = ["TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012"]
IWSLT14_NAMES = ["dev2010", "tedx_dev2012", "tst2010", "tst2011", "tst2012"]


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


def words(n, tag):
    return " ".join(f"{tag}W{i}" for i in range(n))


def clean_corpus_cases():
    """(de, en, kept) around clean-corpus-n's rules (ratio 1.5, 1-175 tokens)."""
    return [
        (words(176, "De"), words(176, "En"), False),   # more than 175 tokens
        (words(175, "De"), words(175, "En"), True),
        (words(3, "De"), words(2, "En"), True),        # ratio 1.5 exactly
        (words(2, "De"), words(3, "En"), True),
        (words(151, "De"), words(100, "En"), False),   # ratio 1.51
        (words(100, "De"), words(151, "En"), False),
        (words(150, "De"), words(100, "En"), True),
        ("", words(5, "En"), False),                   # an empty side
        ("   ", words(1, "En"), False),
    ]


def iwslt14_talks():
    """Per talk: (talk id, [(de, en, expected pair or None)]) of the text lines."""
    talks = []
    for t in range(3):
        rows = [(f"Satz {t} {k} {words(k % 5 + 1, 'De')}", f"Sentence {t} {k} {words(k % 5 + 2, 'En')}",
                 (f"satz {t} {k} {words(k % 5 + 1, 'de')}".lower(),
                  f"sentence {t} {k} {words(k % 5 + 2, 'en')}".lower()))
                for k in range(40)]
        if t == 1:
            rows[3:3] = [(de, en, (de.lower(), en.lower()) if kept else None) for de, en, kept in clean_corpus_cases()]
            rows += [("Hallo, Welt!", "Hello, world!", ("hallo , welt !", "hello , world !")),
                     ("Ein | Strich", "A | bar", ("ein &#124; strich", "a &#124; bar"))]  # `|` is escaped first
        talks.append((str(100 + t), rows))
    return talks


def iwslt14_tags(lang, talks):
    out = []
    for talkid, rows in talks:
        out += [line.replace("<talkid>t</talkid>", f"<talkid>{talkid}</talkid>") for line in talk_header("t", lang, 14)]
        out += [de if lang == "de" else en for de, en, _ in rows]
    return "\n".join(out) + "\n"


def iwslt14_expected(talks):
    """Every pair fairseq keeps, in order: the talk's speaker, title and description lines, then its text."""
    pairs = []
    for _, rows in talks:
        pairs.append(("&lt; speaker &gt; speaker t &lt; / speaker &gt;",) * 2)
        pairs += [("title t de", "title t en"), ("about t de", "about t en")]
        pairs += [expected for _, _, expected in rows if expected is not None]
    return pairs


def iwslt14_archive(talks=None, xml=None):
    talks = talks or iwslt14_talks()
    files = {f"de-en/train.tags.de-en.{lang}": iwslt14_tags(lang, talks) for lang in ("de", "en")}
    text = "It\u2019s {name} {i} {lang} &amp; co"
    files.update({f"de-en/{xml_name(14, s, 'de-en', lang)}": xml_file(s, lang, 3, text)
                  for s in IWSLT14_SETS for lang in ("de", "en")})
    files.update(xml or {})
    return targz(files)


def test_iwslt14_is_prepared_as_fairseqs_script(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    talks = iwslt14_talks()
    url = server.add("/fairseq/data/iwslt14/de-en.tgz", iwslt14_archive(talks))
    out = tmp_path / "text"
    assert run("--source", "iwslt14", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out, "--url", url) == 0
    assert_aligned(out, "de", "en")
    expected = iwslt14_expected(talks)
    assert len(expected) == 3 * (3 + 40) + 4 + 2 == 135
    train = [pair for n, pair in enumerate(expected, 1) if n % 23]
    valid = [pair for n, pair in enumerate(expected, 1) if n % 23 == 0]
    assert list(zip(lines(out / "train.de"), lines(out / "train.en"), strict=True)) == train
    assert list(zip(lines(out / "valid.de"), lines(out / "valid.en"), strict=True)) == valid and len(valid) == 5
    # Dev/test: seg tags removed, ’ -> ', tokenized without XML unescaping, lower-cased.
    assert lines(out / "test.en") == [f"it &apos;s {s.lower()} {i} en &amp; amp ; co" for s in IWSLT14_SETS
                                      for i in range(3)]
    assert lines(out / "test.de")[0] == "it &apos; s ted.dev2010 0 de &amp; amp ; co"
    for message in ("3 talks, 140 lines per side after the tag filter", "140 pairs in, 135 kept",
                    "train: 130 sentence pairs written", "valid: 5 sentence pairs written",
                    "TEDX.dev2012: 3 segments", "test: 15 sentence pairs written"):
        assert message in caplog.text
    # One named test set, prepared the same way, alone in its folder.
    named = tmp_path / "tst2011"
    assert run("--source", "iwslt14", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", named,
               "--url", url, "--test-set", "tst2011") == 0
    assert sorted(p.name for p in named.iterdir()) == ["tst2011.de", "tst2011.en"]
    assert lines(named / "tst2011.en") == [f"it &apos;s ted.tst2011 {i} en &amp; amp ; co" for i in range(3)]
    options = CorpusOptions(raw_dir=tmp_path / "raw", downloads=[(url, None)])
    assert named_test_sets("iwslt14", "de", "en", options) == IWSLT14_NAMES


def test_iwslt14_unknown_test_set_lists_the_names(server, tmp_path, capsys):
    url = server.add("/de-en.tgz", iwslt14_archive())
    out = tmp_path / "out"
    assert run("--source", "iwslt14", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out,
               "--url", url, "--test-set", "tst2013") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"iwslt14 corpus has no such test set for de-en; it has: {', '.join(IWSLT14_NAMES)}" in err
    assert not out.exists()


def test_clean_corpus_n_rules():
    cases = [(de, en) for de, en, _ in clean_corpus_cases()]
    kept = [(de, en) for de, en, keep in clean_corpus_cases() if keep]
    assert list(clean_corpus_n(cases)) == kept
    pairs = [("a b", "c d"), ("x | y", "p  q\t"), ("|", "z"), ("a", "| |"), (" a \u00a0b ", "c d")]
    assert list(clean_corpus_n(pairs)) == [("a b", "c d"), ("x y", "p q"), ("a b", "c d")]
    # A `|` in the first pair marks a factored corpus: then `|` stays (and counts in its word).
    assert list(clean_corpus_n([("a|X b|Y", "c|Z d|W"), ("d|U", "e|V")])) == [("a|X b|Y", "c|Z d|W"), ("d|U", "e|V")]
    assert list(clean_corpus_n([("x" * 1001, "y")])) == []


def test_parallel_tokenization_keeps_the_order():
    pairs = [(f"Satz {i}, \"zitiert\".", f"It's sentence {i}.") for i in range(37)]
    expected = [(tokenize(de, "de"), tokenize(en, "en")) for de, en in pairs]
    assert expected[0] == ("Satz 0 , &quot; zitiert &quot; .", "It &apos;s sentence 0 .")
    assert list(tokenize_pairs(pairs, "de", "en", chunk_size=4, workers=2)) == expected


@pytest.mark.parametrize("source,edit,message", [
    # IWSLT'17 drops text lines that look like tags: one on one side only.
    ("iwslt17", ("en", "line 31 en", "<i>line 31 en</i>"), "talk 1 has 32 lines in the first but 31 in the second"),
    # fairseq drops any line containing <url>: a text line with one, on one side only.
    ("iwslt14", ("de", "line 5 de", "line 5 de <url>"), "talk 0 has 32 lines in the first but 33 in the second"),
    ("iwslt17", ("de", "<talkid>1</talkid>", "<talkid>7</talkid>"),
     "talk number 2 is 7 in the first but 1 in the second"),
])
def test_training_files_are_checked_talk_by_talk(server, tmp_path, capsys, source, edit, message):
    year = 14 if source == "iwslt14" else 17
    files = {f"de-en/train.tags.de-en.{lang}": tags_file(lang, year=year) for lang in ("de", "en")}
    lang, old, new = edit
    files[f"de-en/train.tags.de-en.{lang}"] = files[f"de-en/train.tags.de-en.{lang}"].replace(old, new)
    files.update({f"de-en/{xml_name(year, s, 'de-en', lang)}": xml_file(s, lang, 2)
                  for s in ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
                  for lang in ("de", "en")})
    url = server.add("/de-en.tgz", targz(files))
    out = tmp_path / "out"
    assert run("--source", source, "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out, "--url", url) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
    assert "train.tags.de-en.de and " in err and "train.tags.de-en.en:" in err
    assert not out.exists() or not list(out.iterdir())


def test_iwslt_missing_language_lists_available_ones(server, tmp_path, capsys):
    url = server.add("/de-en.tgz", targz({f"de-en/train.tags.de-en.{lang}": tags_file(lang) for lang in ("de", "en")}))
    assert run("--source", "iwslt14", "--pair", "de-fr", "--raw-dir", tmp_path, "-o", tmp_path / "o", "--url", url) == 2
    err = capsys.readouterr().err.strip()
    assert "no training data for de-fr" in err and "languages: de, en" in err and "\n" not in err


@pytest.fixture
def iwslt17_urls(server):
    trnted = {f"de-en/train.tags.de-en.{lang}": tags_file(lang, n_talks=1, per_talk=10) for lang in ("de", "en")}
    trnted.update({f"de-en/{xml_name(17, s, 'de-en', lang)}": xml_file(s, lang, 2)
                   for s in ("TED.dev2010", "TED.tst2010", "TED.tst2015") for lang in ("de", "en")})
    test_de = {f"de-en/{xml_name(17, s, 'de-en', 'de')}": xml_file(s, "de", 4) for s in ("TED.tst2016", "TED.tst2017")}
    test_en = {f"en-de/{xml_name(17, s, 'en-de', 'en')}": xml_file(s, "en", 4) for s in ("TED.tst2016", "TED.tst2017")}
    return [server.add("/archive/2017-01-trnted/texts/de/en/de-en.tgz", targz(trnted)),
            server.add("/archive/2017-01-ted-test/texts/de/en/de-en.tgz", targz(test_de)),
            server.add("/archive/2017-01-ted-test/texts/en/de/en-de.tgz", targz(test_en))]


def test_iwslt17_training_and_separate_test_archives(iwslt17_urls, server, tmp_path):
    url_args = [a for u in iwslt17_urls for a in ("--url", u)]
    raw = tmp_path / "raw"
    for pair in ("de-en", "en-de"):
        src, tgt = pair.split("-")
        out = tmp_path / pair
        assert run("--source", "iwslt17", "--pair", pair, "--raw-dir", raw, "-o", out, *url_args) == 0
        assert_aligned(out, src, tgt)
        assert lines(out / "train.de")[:3] == ["Title 0 de", "About 0 de", "line 0 de"]
        assert lines(out / "test.de") == [f"TED.tst2017 {i} de & co" for i in range(4)]
        assert lines(out / "test.en") == [f"TED.tst2017 {i} en & co" for i in range(4)]
        # tst2016 ships with tst2017 in the test archives: a further test set, never valid.
        assert lines(out / "valid.en") == [f"{s} {i} en & co" for s in ("TED.dev2010", "TED.tst2010", "TED.tst2015")
                                           for i in range(2)]
        assert run("--source", "iwslt17", "--pair", pair, "--raw-dir", raw, "-o", out, *url_args,
                   "--test-set", "tst2016") == 0
        assert lines(out / "tst2016.de") == [f"TED.tst2016 {i} de & co" for i in range(4)]
        assert_aligned(out, src, tgt, splits=["tst2016"])
    assert len(server.requests) == 3  # the second pair reuses the shared raw folder
    options = CorpusOptions(raw_dir=raw, downloads=[(u, None) for u in iwslt17_urls])
    assert named_test_sets("iwslt17", "de", "en", options) == ["tst2016"]


def test_iwslt17_unknown_test_set(iwslt17_urls, tmp_path, capsys):
    url_args = [a for u in iwslt17_urls for a in ("--url", u)]
    assert run("--source", "iwslt17", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", tmp_path / "out",
               *url_args, "--test-set", "tst2015") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "iwslt17 corpus has no such test set for de-en; it has: tst2016" in err


def test_iwslt17_multilingual_archives_give_any_direction(server, tmp_path):
    """The DeEnItNlRo archive (every pair's tags and dev/tst2010 files, one order per pair) and the
    multi-parallel tst2017 archives, which hold only their source side: de-it's reference is the
    source side of it-de's archive."""
    langs = ("de", "en", "it")
    folder = "DeEnItNlRo-DeEnItNlRo"
    trnmted = {}
    for pair in ("de-en", "de-it", "en-it"):
        for lang in pair.split("-"):
            trnmted[f"{folder}/train.tags.{pair}.{lang}"] = tags_file(lang, n_talks=1, per_talk=6)
            trnmted.update({f"{folder}/{xml_name(17, s, pair, lang)}": xml_file(s, lang, 2)
                            for s in ("TED.dev2010", "TED.tst2010")})
    urls = [server.add(f"/2017-01-trnmted/texts/DeEnItNlRo/DeEnItNlRo/{folder}.tgz", targz(trnmted))]
    for src in langs:
        for tgt in (lang for lang in langs if lang != src):
            name = f"{src}-{tgt}/IWSLT17.TED.tst2017.mltlng.{src}-{tgt}.{src}.xml"
            urls.append(server.add(f"/2017-01-mted-test/texts/{src}/{tgt}/{src}-{tgt}.tgz",
                                   targz({name: xml_file("tst2017", src, 3)})))
    url_args = [a for u in urls for a in ("--url", u)]
    for pair in ("it-de", "de-en"):
        src, tgt = pair.split("-")
        out = tmp_path / pair
        assert run("--source", "iwslt17", "--pair", pair, "--raw-dir", tmp_path / "raw", "-o", out, *url_args) == 0
        assert_aligned(out, src, tgt)
        assert lines(out / f"train.{src}")[:3] == [f"Title 0 {src}", f"About 0 {src}", f"line 0 {src}"]
        assert lines(out / f"valid.{tgt}") == [f"{s} {i} {tgt} & co" for s in ("TED.dev2010", "TED.tst2010")
                                                for i in range(2)]
        assert lines(out / f"test.{src}") == [f"tst2017 {i} {src} & co" for i in range(3)]
        assert lines(out / f"test.{tgt}") == [f"tst2017 {i} {tgt} & co" for i in range(3)]


def test_a_direction_url_fetches_both_directions_archives():
    url = "https://host/2017-01-mted-test/texts/{src}/{tgt}/{src}-{tgt}.tgz"
    assert direction_urls(url, None, "de", "it") == ["https://host/2017-01-mted-test/texts/de/it/de-it.tgz",
                                                     "https://host/2017-01-mted-test/texts/it/de/it-de.tgz"]
    assert direction_urls("https://host/all.tgz", "md5:00", "de", "it") == ["https://host/all.tgz"]
    with pytest.raises(ConfigError, match="one checksum cannot verify it; set checksum: null"):
        direction_urls(url, "md5:00", "de", "it")


def test_talks_without_talkid_are_delimited_by_their_url(server, tmp_path, capsys):
    """Older files have no <talkid>; their URLs may name the language, so only the counts must agree."""
    def no_talkid(lang):
        text = tags_file(lang, n_talks=3, per_talk=30).replace("/talks/", f"/talks/lang/{lang}/")
        return "\n".join(line for line in text.splitlines() if not line.startswith("<talkid>")) + "\n"

    files = {f"de-en/train.tags.de-en.{lang}": no_talkid(lang) for lang in ("de", "en")}
    files.update({f"de-en/{xml_name(17, s, 'de-en', lang)}": xml_file(s, lang, 2)
                  for s in ("TED.dev2010", "TED.tst2010") for lang in ("de", "en")})
    out = tmp_path / "out"
    url = server.add("/de-en.tgz", targz(files))
    assert run("--source", "iwslt17", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out, "--url", url) == 0
    assert len(lines(out / "train.en")) == 3 * 32
    files["de-en/train.tags.de-en.de"] = files["de-en/train.tags.de-en.de"].replace("line 70 de", "<p>line 70 de")
    url = server.add("/de-en-2.tgz", targz(files))
    assert run("--source", "iwslt17", "--pair", "de-en", "--raw-dir", tmp_path / "raw", "-o", out, "--url", url) == 2
    err = capsys.readouterr().err.strip()
    assert "talk http://www.ted.com/talks/lang/de/2.html has 31 lines in the first but 32 in the second" in err
