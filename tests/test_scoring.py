"""pasero-score / pasero.scoring must give exactly what the sacrebleu command line gives."""

import json
import random
import subprocess
import sys

import pytest

from pasero import scoring
from pasero.cli.score import score_main
from pasero.errors import ConfigError

WORDS = ["the", "The", "cat", "Katze", "sat", "on", "mat", "Hello", "world", "naïve", "café", "it's",
         "don't", "U.S.", "(", ")", ",", ".", "!", "?", "3.5", "20%", "e-mail", "ÉCOLE", "straße", "—"]


def make_corpus(tmp_path, n=60, seed=0):
    """References and noisy hypotheses (dropped, swapped, re-cased words) as files."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(3, 15))]
        hyp = [w.upper() if rng.random() < 0.1 else w for w in ref if rng.random() > 0.2]
        if len(hyp) > 2 and rng.random() < 0.3:
            hyp[0], hyp[1] = hyp[1], hyp[0]
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp).replace(" .", "."))
    hyps[3] = ""  # an empty hypothesis line is legal
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    return tmp_path / "hyp.txt", tmp_path / "ref.txt"


def sacrebleu_cli(hyp, ref, *options):
    """The score lines of the real sacrebleu command line (text format)."""
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-f", "text", *options],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().splitlines()


@pytest.mark.parametrize("tok,lowercase", [("13a", False), ("none", True), ("intl", False)])
def test_equals_sacrebleu_command_line(tmp_path, capsys, tok, lowercase):
    hyp, ref = make_corpus(tmp_path, seed=len(tok))
    lc = ["-lc", "--chrf-lowercase"] if lowercase else []
    expected = sacrebleu_cli(hyp, ref, "-m", "bleu", "chrf", "-tok", tok, *lc)
    expected += sacrebleu_cli(hyp, ref, "-m", "chrf", "--chrf-word-order", "2", *lc)

    argv = ["-H", str(hyp), "-r", str(ref), "--bleu-tok", tok, "-o", str(tmp_path / "bleu.txt"),
            "--json", str(tmp_path / "scores.json")] + (["--lowercase"] if lowercase else [])
    assert score_main(argv) == 0
    assert (tmp_path / "bleu.txt").read_text().splitlines() == expected
    assert capsys.readouterr().out.splitlines() == expected

    scores = json.loads((tmp_path / "scores.json").read_text())
    for name, line in zip(scoring.METRICS, expected, strict=True):
        head, value = line.split(" = ", 1)
        assert f"{scores[name]:.1f}" == value.split()[0]
        assert head.split("|", 1)[1] == scores["signatures"][name]
    assert f"tok:{tok}" in scores["signatures"]["bleu"]
    assert ("case:lc" in scores["signatures"]["chrf"]) == lowercase
    assert scores["n_lines"] == 60


def test_score_api_matches_file_scores_and_is_sensitive(tmp_path):
    hyp, ref = make_corpus(tmp_path)
    refs = ref.read_text().splitlines()
    perfect = scoring.score(refs, refs)
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)
    noisy = scoring.score(hyp.read_text().splitlines(), refs)
    assert 0 < noisy["bleu"] < noisy["chrf"] < 100
    assert noisy["bleu_details"]["hyp_len"] < noisy["bleu_details"]["ref_len"]
    # Case-insensitive scoring forgives the upper-cased words.
    assert scoring.score(hyp.read_text().splitlines(), refs, lowercase=True)["bleu"] > noisy["bleu"]


def test_provenance_merged_into_json(tmp_path):
    hyp, ref = make_corpus(tmp_path)
    info = tmp_path / "decode.json"
    info.write_text(json.dumps({"checkpoint": "model.pt", "steps": [100, 200], "decode_seconds": 1.5,
                                "n_lines": 60}))
    out = tmp_path / "scores.json"
    assert score_main(["-H", str(hyp), "-r", str(ref), "--json", str(out), "--info", str(info),
                       "--meta", "step=200", "--meta", "variant=big"]) == 0
    scores = json.loads(out.read_text())
    assert scores["checkpoint"] == "model.pt" and scores["steps"] == [100, 200]
    assert scores["step"] == 200 and scores["variant"] == "big" and scores["n_lines"] == 60
    assert scores["hyp"] == str(hyp)


@pytest.mark.parametrize("case", ["unequal", "empty_hyp", "empty_both", "missing_ref", "bad_meta", "bad_tok"])
def test_bad_inputs_are_one_line_errors_without_outputs(tmp_path, capsys, case):
    hyp, ref = tmp_path / "hyp", tmp_path / "ref"
    hyp.write_text("a b c\nd e\n")
    ref.write_text("a b c\nd e\n")
    extra = []
    if case == "unequal":
        ref.write_text("a b c\nd e\nf\n")
    elif case == "empty_hyp":
        hyp.write_text("")
    elif case == "empty_both":
        hyp.write_text("")
        ref.write_text("")
    elif case == "missing_ref":
        ref = tmp_path / "nope"
    elif case == "bad_meta":
        extra = ["--meta", "novalue"]
    argv = ["-H", str(hyp), "-r", str(ref), "-o", str(tmp_path / "bleu.txt"), "--json", str(tmp_path / "s.json")]
    if case == "bad_tok":
        with pytest.raises(SystemExit) as e:  # argparse refuses it before anything runs
            score_main(argv + ["--bleu-tok", "moses"])
        assert e.value.code == 2
    else:
        assert score_main(argv + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "error:" in err
        expected = {"unequal": "3", "empty_hyp": "empty", "empty_both": "empty", "missing_ref": "nope",
                    "bad_meta": "KEY=VALUE"}[case]
        assert expected in err
    assert not (tmp_path / "bleu.txt").exists() and not (tmp_path / "s.json").exists()


# --- extra BLEU protocols -------------------------------------------------------------------------

RAW_REFS = ["It's raining, isn't it? We're here.", 'Dr. Smith said "hello" & left at 5,300 $.',
            "The 1990's were great; I'd say you'll see -- it's 20% (or 3.5).", "Mr. Brown's dog doesn't bark."]
RAW_HYPS = ["It is raining, isn't it? We are here.", 'Dr. Smith said "hi" & left at 5,300 $.',
            "The 1990's were good; I'd say you see -- it's 20% (or 3.5).", "Mr. Brown's dog does not bark."]
# The same lines as tokenizer.perl -l en writes them (escaped), then lower-cased: fairseq's IWSLT'14 text.
TOK_REFS = ["it &apos;s raining , isn &apos;t it ? we &apos;re here .",
            "dr. smith said &quot; hello &quot; &amp; left at 5,300 $ .",
            "the 1990 &apos;s were great ; i &apos;d say you &apos;ll see -- it &apos;s 20 % ( or 3.5 ) .",
            "mr. brown &apos;s dog doesn &apos;t bark ."]
TOK_HYPS = ["it is raining , isn &apos;t it ? we are here .",
            "dr. smith said &quot; hi &quot; &amp; left at 5,300 $ .",
            "the 1990 &apos;s were good ; i &apos;d say you see -- it &apos;s 20 % ( or 3.5 ) .",
            "mr. brown &apos;s dog does not bark ."]


def unescape(lines):
    return [line.replace("&apos;", "'").replace("&quot;", '"').replace("&amp;", "&") for line in lines]


def sacrebleu_api(hyps, refs, tok, lowercase):
    from sacrebleu.metrics import BLEU
    return BLEU(tokenize=tok, lowercase=lowercase).corpus_score(hyps, [refs]).score


def test_tokenized_bleu_is_sacrebleu_none_on_moses_tokenized_lowercased_text():
    result = scoring.extra_bleu(RAW_HYPS, RAW_REFS, "tokenized", "en")
    assert result["bleu"] == pytest.approx(sacrebleu_api(unescape(TOK_HYPS), unescape(TOK_REFS), "none", True))
    assert 0 < result["bleu"] < 100


def test_tokenized_bleu_leaves_tokenized_text_as_it_is():
    """Moses splits its own "it 's" into "it ' s"; the protocol must not, or the literature's
    figure (BLEU of the tokenized text as it is) would not be reproduced."""
    tokenize = scoring.PROTOCOLS["tokenized"].prepare("en")
    assert [tokenize(line) for line in TOK_REFS] == unescape(TOK_REFS)
    assert [tokenize(line) for line in unescape(TOK_REFS)] == unescape(TOK_REFS)
    literature = sacrebleu_api(TOK_HYPS, TOK_REFS, "none", True)  # escaping maps tokens one to one
    assert scoring.extra_bleu(TOK_HYPS, TOK_REFS, "tokenized", "en")["bleu"] == pytest.approx(literature)
    assert scoring.extra_bleu(unescape(TOK_HYPS), TOK_REFS, "tokenized", "en")["bleu"] == pytest.approx(literature)
    french = scoring.PROTOCOLS["tokenized"].prepare("fr")
    assert french("l' homme d' aujourd' hui") == "l' homme d' aujourd' hui"


def test_a_regional_language_code_uses_its_language_s_moses_rules():
    """TED talks name targets pt_br or zh_cn: they score with the Portuguese or Chinese rules."""
    assert scoring.PROTOCOLS["tokenized"].prepare("pt_br")("Olá, mundo.") == "Olá , mundo ."
    result = scoring.extra_bleu(RAW_HYPS, RAW_REFS, "tokenized", "pt_br")
    assert result["signature"].endswith("|pre:moses-tok|lang:pt_br")


@pytest.mark.parametrize("lowercase", [False, True])
def test_detokenized_bleu_is_sacrebleu_13a_on_moses_detokenized_text(lowercase):
    from sacremoses import MosesDetokenizer
    detok = MosesDetokenizer("en")
    hyps = [detok.detokenize(line.split()) for line in TOK_HYPS]  # also unescapes
    refs = [detok.detokenize(line.split()) for line in TOK_REFS]
    assert refs[0] == "it's raining, isn't it? we're here."
    result = scoring.extra_bleu(TOK_HYPS, TOK_REFS, "detokenized", "en", lowercase=lowercase)
    assert result["bleu"] == pytest.approx(sacrebleu_api(hyps, refs, "13a", lowercase))
    assert ("case:lc" in result["signature"]) == lowercase


def test_extra_lines_follow_the_sacrebleu_lines_with_their_signatures(tmp_path, capsys):
    hyp, ref = tmp_path / "hyp", tmp_path / "ref"
    hyp.write_text("\n".join(TOK_HYPS) + "\n")
    ref.write_text("\n".join(TOK_REFS) + "\n")
    expected = sacrebleu_cli(hyp, ref, "-m", "bleu", "chrf", "-tok", "none")
    expected += sacrebleu_cli(hyp, ref, "-m", "chrf", "--chrf-word-order", "2")
    out = tmp_path / "bleu.txt"
    assert score_main(["-H", str(hyp), "-r", str(ref), "--bleu-tok", "none", "--extra-bleu", "tokenized",
                       "--extra-bleu", "detokenized", "--lang", "en", "-o", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[:3] == expected and len(lines) == 5
    fields = [dict(f.split(":", 1) for f in line.split(" = ")[0].split("|")[1:]) for line in lines[3:]]
    assert fields[0] == {**fields[0], "tok": "none", "case": "lc", "pre": "moses-tok", "lang": "en"}
    assert fields[1] == {**fields[1], "tok": "13a", "case": "mixed", "pre": "moses-detok", "lang": "en"}
    assert all(line.startswith("BLEU|") for line in lines[3:])
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.parametrize("case", ["no_lang", "bad_lang", "bad_protocol"])
def test_protocol_option_errors(tmp_path, capsys, case):
    hyp = tmp_path / "hyp"
    hyp.write_text("a b c\n")
    argv = ["-H", str(hyp), "-r", str(hyp), "-o", str(tmp_path / "bleu.txt"), "--extra-bleu"]
    argv += {"no_lang": ["tokenized"], "bad_lang": ["tokenized", "--lang", "english!"],
             "bad_protocol": ["moses"]}[case]
    if case == "bad_protocol":
        with pytest.raises(SystemExit) as e:
            score_main(argv)
        assert e.value.code == 2
    else:
        assert score_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--lang" in err
    assert not (tmp_path / "bleu.txt").exists()
    with pytest.raises(ConfigError, match="target language"):
        scoring.score(["a"], ["a"], protocols=["tokenized"])


# --- several test sets ----------------------------------------------------------------------------

def test_several_test_sets_in_one_call(tmp_path, capsys):
    hyp, ref = make_corpus(tmp_path)
    (tmp_path / "t2.hyp").write_text("\n".join(TOK_HYPS) + "\n")
    (tmp_path / "t2.ref").write_text("\n".join(TOK_REFS) + "\n")
    out, js = tmp_path / "bleu.txt", tmp_path / "scores.json"
    assert score_main(["-H", str(hyp), "-r", str(ref), "--test-set", "tst2016", str(tmp_path / "t2.hyp"),
                       str(tmp_path / "t2.ref"), "--extra-bleu", "tokenized", "--lang", "en", "-o", str(out),
                       "--json", str(js), "--meta", "step=5"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0] == "[test]" and "\n[tst2016]\n" in stdout
    primary = scoring.score(hyp.read_text().splitlines(), ref.read_text().splitlines(),
                            protocols=["tokenized"], lang="en")
    assert out.read_text() == scoring.format_report(primary)  # only the primary test set

    scores = json.loads(js.read_text())
    assert scores["step"] == 5 and scores["bleu"] == pytest.approx(primary["bleu"])
    assert set(scores["test_sets"]) == {"test", "tst2016"}
    assert scores["extra_bleu"]["tokenized"] == primary["extra_bleu"]["tokenized"]
    assert set(scores["extra_bleu"]["tokenized"]) == {"bleu", "signature", "score_line", "bleu_details"}
    second = scores["test_sets"]["tst2016"]
    assert second["n_lines"] == 4 and second["hyp"] == str(tmp_path / "t2.hyp")
    assert second["extra_bleu"]["tokenized"]["bleu"] == pytest.approx(sacrebleu_api(TOK_HYPS, TOK_REFS, "none", True))
    for key in ("bleu", "chrf", "chrf++", "signatures", "score_lines", "bleu_details", "n_lines", "bleu_tok",
                "lowercase", "hyp", "ref", "extra_bleu"):
        assert scores["test_sets"]["test"][key] == scores[key]


@pytest.mark.parametrize("name,expected", [("tst-2016", "letters, digits"), ("test", "already used"),
                                           ("tokenized", "protocol"), ("dup", "already used"),
                                           ("short", "t2.hyp has 4 lines but")])
def test_bad_test_sets_are_one_line_errors_without_outputs(tmp_path, capsys, name, expected):
    hyp, ref = make_corpus(tmp_path)
    (tmp_path / "t2.hyp").write_text("\n".join(TOK_HYPS) + "\n")
    (tmp_path / "t2.ref").write_text("\n".join(TOK_REFS[:3 if name == "short" else 4]) + "\n")
    test_set = [str(tmp_path / "t2.hyp"), str(tmp_path / "t2.ref")]
    argv = ["-H", str(hyp), "-r", str(ref), "--test-set", name, *test_set, "-o", str(tmp_path / "bleu.txt"),
            "--json", str(tmp_path / "s.json")]
    if name == "dup":
        argv += ["--test-set", name, *test_set]
    assert score_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "bleu.txt").exists() and not (tmp_path / "s.json").exists()
