"""pasero-aggregate: results tables from the scores.json files that pasero-score writes."""

import json

import pandas as pd
import pytest

from pasero.cli.aggregate import aggregate_main
from pasero.cli.score import score_main

REFS = ["the cat sat on the mat .", "a dog barked at the postman .", "it is raining again today ."]


def scored_experiment(results, corpus, name, hyps, steps, params=1_234_567, train_seconds=5400.0, refs=REFS,
                      training=None):
    """results/{corpus}/{name}/scores.json as the workflow's score rule writes it."""
    folder = results / corpus / name
    folder.mkdir(parents=True)
    (folder / "test.hyp").write_text("\n".join(hyps) + "\n")
    (folder / "ref.txt").write_text("\n".join(refs) + "\n")
    (folder / "decode.json").write_text(json.dumps(
        {"checkpoint": str(folder / "model.pt"), "steps": steps, "params": params, "train_seconds": train_seconds,
         **({"training": training} if training else {})}))
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


def scored_with_test_sets(results, corpus, name, protocols=("tokenized", "detokenized"), test_sets=("tst2016",)):
    """An experiment scored with extra BLEU protocols and further test sets."""
    folder = results / corpus / name
    folder.mkdir(parents=True)
    (folder / "test.hyp").write_text("the cat sat on a mat .\na dog barked .\nit is raining today .\n")
    (folder / "ref.txt").write_text("\n".join(REFS) + "\n")
    argv = ["-H", str(folder / "test.hyp"), "-r", str(folder / "ref.txt"), "--json", str(folder / "scores.json")]
    for protocol in protocols:
        argv += ["--extra-bleu", protocol, "--lang", "en"]
    for test_set in test_sets:
        (folder / f"{test_set}.hyp").write_text("it &apos;s a dog .\nhello .\n")
        (folder / f"{test_set}.ref").write_text("it &apos;s a cat .\nhello .\n")
        argv += ["--test-set", test_set, str(folder / f"{test_set}.hyp"), str(folder / f"{test_set}.ref")]
    assert score_main(argv) == 0
    return json.loads((folder / "scores.json").read_text())


BASE_COLUMNS = ["corpus", "pair", "variant", "bleu", "chrf", "seeds", "std_bleu", "std_chrf", "off_target",
                "zero_shot", "baseline", "p_value", "bleu_ci", "signature", "best_step", "train_hours", "params",
                "n_lines", "scores"]


def test_no_extra_columns_without_protocols_or_test_sets(results):
    results, _ = results
    assert aggregate_main([str(results), "-o", str(results / "summary.tsv")]) == 0
    assert list(pd.read_csv(results / "summary.tsv", sep="\t").columns) == BASE_COLUMNS


def test_protocols_and_test_sets_get_columns_and_a_legend(tmp_path, capsys):
    results = tmp_path / "results"
    new = scored_with_test_sets(results, "IWSLT17", "de-en", test_sets=("tst2016", "tst2015"))
    small = scored_with_test_sets(results, "IWSLT17", "de-en.small", protocols=("tokenized",), test_sets=())
    old = results / "IWSLT17" / "de-en.old" / "scores.json"  # written before protocols and test sets existed
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"bleu": 20.0, "chrf": 50.0, "signatures": {"bleu": "nrefs:1|tok:13a"}}))
    scored_experiment(results, "toy", "de-en", REFS, [300])
    tsv, md = results / "summary.tsv", results / "summary.md"
    assert aggregate_main([str(results), "-o", str(tsv), "--markdown", str(md)]) == 0

    table = pd.read_csv(tsv, sep="\t", keep_default_na=False)
    assert list(table.columns) == BASE_COLUMNS + [
        "bleu_tokenized", "bleu_tokenized_signature", "bleu_detokenized", "bleu_detokenized_signature",
        "bleu_tst2015", "chrf_tst2015", "bleu_tokenized_tst2015", "bleu_detokenized_tst2015",
        "bleu_tst2016", "chrf_tst2016", "bleu_tokenized_tst2016", "bleu_detokenized_tst2016"]
    rows = {row.variant: row for row in table[table["corpus"] == "IWSLT17"].itertuples()}
    assert float(rows[""].bleu_tokenized) == pytest.approx(new["extra_bleu"]["tokenized"]["bleu"], abs=1e-3)
    assert rows[""].bleu_detokenized_signature == new["extra_bleu"]["detokenized"]["signature"]
    assert "pre:moses-tok" in rows[""].bleu_tokenized_signature
    assert float(rows[""].chrf_tst2016) == pytest.approx(new["test_sets"]["tst2016"]["chrf"], abs=1e-3)
    assert float(rows[""].bleu_tokenized_tst2016) == pytest.approx(
        new["test_sets"]["tst2016"]["extra_bleu"]["tokenized"]["bleu"], abs=1e-3)
    assert float(rows["small"].bleu_tokenized) == pytest.approx(small["extra_bleu"]["tokenized"]["bleu"], abs=1e-3)
    assert rows["small"].bleu_detokenized == "" and rows["small"].bleu_tst2016 == ""
    assert rows["old"].bleu == 20.0 and rows["old"].bleu_tokenized == ""

    report = md.read_text()
    assert "| BLEU | chrF | off-target % | baseline | p (vs baseline) | BLEU 95% CI |" in report
    assert "bleu_tokenized" not in report.split("## BLEU by pair and corpus")[0]
    section = report.split("## IWSLT17: every test set and BLEU protocol")[1].split("## toy")[0]
    assert ("| experiment | test BLEU | test chrF | test BLEU tokenized | test BLEU detokenized | tst2015 BLEU |"
            in section)
    assert "| de-en.old | 20.00 | 50.00 |" in section
    legend = section.split("Columns and their signatures:")[1]
    tokenized = next(line for line in legend.splitlines() if line.startswith("- test BLEU tokenized"))
    assert "tst2016 BLEU tokenized" in tokenized and f"`{new['extra_bleu']['tokenized']['signature']}`" in tokenized
    assert "pre:moses-detok" in next(line for line in legend.splitlines() if "BLEU detokenized" in line)
    toy = report.split("## toy: every test set and BLEU protocol")[1]
    assert "| experiment | test BLEU | test chrF |\n" in toy and "tokenized" not in toy
    assert "| pair | IWSLT17 | toy |" in capsys.readouterr().out


def test_a_malformed_test_set_field_is_named(tmp_path, capsys):
    bad = tmp_path / "results" / "toy" / "de-en" / "scores.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"bleu": 1.0, "test_sets": {"tst2016": 3}}))
    assert aggregate_main([str(tmp_path / "results"), "-o", str(tmp_path / "summary.tsv")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "test_sets" in err and len(err.strip().splitlines()) == 1


def test_a_variant_is_tested_against_its_pair_by_paired_bootstrap(tmp_path, capsys):
    """sacreBLEU's paired bootstrap: a variant that fixes the baseline's errors is significantly
    better; one that fixes one sentence of 80 is not. The markdown shows the p-value and the 95% interval."""
    refs = [f"sentence number {i} is about the {w} and the weather ." for i, w in
            zip(range(80), ["cat", "dog", "house", "river"] * 20, strict=True)]
    worse = [r.replace(" the weather", "") if i % 2 else r for i, r in enumerate(refs)]
    results = tmp_path / "results"
    scored_experiment(results, "toy", "de-en", worse, [100], refs=refs)
    scored_experiment(results, "toy", "de-en.fixed", refs, [100], refs=refs)
    scored_experiment(results, "toy", "de-en.same", [refs[1], *worse[1:]], [100], refs=refs)
    scored_experiment(results, "toy", "fr-en.alone", refs, [100], refs=refs)  # no fr-en: no baseline
    assert aggregate_main([str(results), "-o", str(results / "summary.tsv"), "--markdown",
                           str(results / "summary.md")]) == 0
    table = pd.read_csv(results / "summary.tsv", sep="\t", keep_default_na=False)
    rows = {f"{row.pair}.{row.variant}": row for row in table.itertuples()}
    assert rows["de-en.fixed"].baseline == "de-en" and float(rows["de-en.fixed"].p_value) < 0.01
    assert float(rows["de-en.same"].p_value) > 0.05 and float(rows["de-en.same"].bleu_ci) > 0
    assert rows["de-en."].p_value == "" and rows["fr-en.alone"].baseline == ""
    markdown = (results / "summary.md").read_text()
    assert "| p (vs baseline) | BLEU 95% CI |" in markdown and "| de-en | 0.001 | ±" in markdown


def test_seed_replicas_of_a_grid_point_get_a_mean_and_standard_deviation_row(tmp_path):
    results = tmp_path / "results"
    bleus = []
    for seed, hyps in ((1, REFS), (2, [REFS[0], "a dog barked .", REFS[2]]), (3, [REFS[0], REFS[1], "it rains ."])):
        variant = f"lr_lr0p001_seed{seed}"
        scores = scored_experiment(results, "toy", f"de-en.{variant}", hyps, [100])
        meta = {**scores, "grid_point": "lr_lr0p001", "seed": seed}  # as the workflow's score rule adds them
        (results / "toy" / f"de-en.{variant}" / "scores.json").write_text(json.dumps(meta))
        bleus.append(scores["bleu"])
    scored_experiment(results, "toy", "de-en.lr_lr0p002_seed1", REFS, [100])  # one seed: no mean row
    assert aggregate_main([str(results), "-o", str(results / "summary.tsv"), "--markdown",
                           str(results / "summary.md")]) == 0
    table = pd.read_csv(results / "summary.tsv", sep="\t")
    (mean,) = table[table["seeds"].notna()].itertuples()
    assert (mean.variant, mean.seeds) == ("lr_lr0p001", 3)
    assert mean.bleu == pytest.approx(sum(bleus) / 3, abs=1e-3)
    assert mean.std_bleu == pytest.approx(pd.Series(bleus).std(), abs=1e-3)
    assert "| BLEU std | chrF std |" in (results / "summary.md").read_text().replace("| seeds ", "")


def test_the_html_page_shows_the_tables_costs_and_translations(results, tmp_path):
    results, _ = results
    source = tmp_path / "source.de"
    source.write_text("die Katze sitzt .\nein Hund bellt .\nes regnet .\n")
    info = results / "TED" / "de-en.big" / "scores.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "inputs": [str(source)], "device": "cpu",
                                "dtype": "bfloat16", "sentences_per_second": 12.5}))
    benchmarks = results / "TED" / "de-en.big" / "benchmarks"
    benchmarks.mkdir()
    (benchmarks / "train.tsv").write_text("s\th:m:s\tmax_rss\tmax_vms\n10.0\t0:00:10\t812.5\t900\n")
    page = tmp_path / "summary.html"
    assert aggregate_main([str(results), "-o", str(tmp_path / "s.tsv"), "--html", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<table>") >= 4
    assert "TED/de-en.big" in text and "812.50" in text and "12.50" in text and "cpu bfloat16" in text
    assert "die Katze sitzt ." in text and "a dog barked ." in text and "the cat sat on the mat ." in text
    assert "Test translations" in text and text.count("<h3>") == 1  # only the experiment whose source is known


def test_the_training_settings_that_differ_get_columns(tmp_path):
    results = tmp_path / "results"
    base = {"arch": "transformer_small", "lr": 0.0005, "dropout": 0.3, "adam_betas": [0.9, 0.98]}
    scored_experiment(results, "TED", "de-en", REFS, [100], training=base)
    scored_experiment(results, "TED", "de-en.big", REFS, [100], training={**base, "arch": "transformer_base"})
    scored_experiment(results, "TED", "de-en.hot", REFS, [100], training={**base, "lr": 0.001})
    assert aggregate_main([str(results), "-o", str(results / "s.tsv"), "--markdown", str(results / "s.md")]) == 0
    table = pd.read_csv(results / "s.tsv", sep="\t")
    assert [c for c in table.columns if c.startswith("train.")] == ["train.arch", "train.lr"]
    assert dict(zip(table["variant"].fillna(""), table["train.lr"], strict=True)) == {
        "": 0.0005, "big": 0.0005, "hot": 0.001}
    assert "| corpus | pair | variant | train.arch | train.lr | BLEU |" in (results / "s.md").read_text()
