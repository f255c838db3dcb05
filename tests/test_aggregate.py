"""pasero-aggregate: results tables from the scores.json files that pasero-score writes."""

import json

import pandas as pd
import pytest

from pasero.cli.aggregate import aggregate_main
from pasero.cli.score import score_main

REFS = ["the cat sat on the mat .", "a dog barked at the postman .", "it is raining again today ."]


def scored_experiment(results, corpus, name, hyps, steps, params=1_234_567, train_seconds=5400.0):
    """results/{corpus}/{name}/scores.json as the workflow's score rule writes it."""
    folder = results / corpus / name
    folder.mkdir(parents=True)
    (folder / "test.hyp").write_text("\n".join(hyps) + "\n")
    (folder / "ref.txt").write_text("\n".join(REFS) + "\n")
    (folder / "decode.json").write_text(json.dumps(
        {"checkpoint": str(folder / "model.pt"), "steps": steps, "params": params, "train_seconds": train_seconds}))
    pair, _, variant = name.partition(".")
    assert score_main(["-H", str(folder / "test.hyp"), "-r", str(folder / "ref.txt"), "--json",
                       str(folder / "scores.json"), "--info", str(folder / "decode.json"), "--meta",
                       f"corpus={corpus}", "--meta", f"pair={pair}", "--meta", f"variant={variant}"]) == 0
    return json.loads((folder / "scores.json").read_text())


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    perfect = scored_experiment(results, "TED", "de-en", REFS, [7000])
    partial = scored_experiment(results, "TED", "de-en.big", [REFS[0], "a dog barked .", "it rains ."], [5000, 6000])
    other = scored_experiment(results, "toy", "de-en", ["the cat sat .", "a dog .", "rain ."], [300])
    return results, {"TED/de-en": perfect, "TED/de-en.big": partial, "toy/de-en": other}


def test_summary_has_one_row_per_experiment_with_its_scores(results, capsys):
    results, scores = results
    tsv, md = results / "summary.tsv", results / "summary.md"
    assert aggregate_main([str(results), "-o", str(tsv), "--markdown", str(md)]) == 0

    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    assert list(table[["corpus", "pair", "variant"]].itertuples(index=False, name=None)) == [
        ("TED", "de-en", ""), ("TED", "de-en", "big"), ("toy", "de-en", "")]
    for row in table.itertuples():
        expected = scores[f"{row.corpus}/{row.pair}{'.' + row.variant if row.variant else ''}"]
        assert row.bleu == pytest.approx(expected["bleu"], abs=1e-3)
        assert row.chrf == pytest.approx(expected["chrf"], abs=1e-3)
        assert row.signature == expected["signatures"]["bleu"]
        assert row.params == 1_234_567
        assert row.train_hours == pytest.approx(1.5)
    assert table.loc[0, "bleu"] == pytest.approx(100.0)
    assert list(table["best_step"].astype(str)) == ["7000", "5000+6000", "300"]

    report = md.read_text()
    assert "| corpus | pair | variant | BLEU | chrF |" in report
    assert "1.2M" in report
    # pair x corpus BLEU table, also printed
    pivot = report.split("## BLEU by pair and corpus")[1]
    assert "| pair | TED | toy |" in pivot
    assert "| de-en | 100.00 |" in pivot
    assert "| de-en.big |" in pivot and pivot.split("| de-en.big |")[1].split("\n")[0].rstrip().endswith("|")
    assert "| pair | TED | toy |" in capsys.readouterr().out


def test_explicit_files_select_experiments(results):
    results, _ = results
    tsv = results / "only.tsv"
    assert aggregate_main([str(results / "toy" / "de-en" / "scores.json"), "-o", str(tsv)]) == 0
    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    assert list(table["corpus"]) == ["toy"]


def test_names_come_from_the_folder_when_the_scores_do_not_say(tmp_path):
    folder = tmp_path / "results" / "IWSLT14" / "de-en.cased"
    folder.mkdir(parents=True)
    (folder / "scores.json").write_text(json.dumps({"bleu": 33.3, "chrf": 60.0}))
    tsv = tmp_path / "summary.tsv"
    assert aggregate_main([str(tmp_path / "results"), "-o", str(tsv)]) == 0
    row = pd.read_csv(tsv, sep="\t", keep_default_na=False).iloc[0]
    assert (row.corpus, row.pair, row.variant, row.bleu) == ("IWSLT14", "de-en", "cased", 33.3)


def test_nothing_to_aggregate_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert aggregate_main([str(tmp_path / "empty"), "-o", str(tmp_path / "summary.tsv")]) == 2
    err = capsys.readouterr().err
    assert "no scores.json found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "summary.tsv").exists()


def test_a_corrupt_scores_file_is_named(tmp_path, capsys):
    bad = tmp_path / "results" / "toy" / "de-en" / "scores.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert aggregate_main([str(tmp_path / "results"), "-o", str(tmp_path / "summary.tsv")]) == 2
    assert str(bad) in capsys.readouterr().err
