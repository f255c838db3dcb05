"""pasero-score / pasero.scoring must give exactly what the sacrebleu command line gives."""

import json
import random
import subprocess
import sys

import pytest

from pasero import scoring
from pasero.cli.score import score_main

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
    for name, line in zip(scoring.METRICS, expected):
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
