"""The Snakemake workflow, run through `snakemake --profile local` in a temporary copy of the
repository's workflow with a tiny toy experiment: end to end, what reruns after which change,
resuming an interrupted training, dry runs of the real corpora (offline) and config errors."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
EXP = Path("results/toy/de-en")

# A few seconds of training: enough for checkpoints every 10 steps, nothing more.
TINY = {
    "defaults": {
        "tokenizer": {"vocab_size": 400},
        "train": {
            "arch": "transformer_tiny", "embed_dim": 32, "ffn_dim": 64, "heads": 2, "encoder_layers": 1,
            "decoder_layers": 1, "dropout": 0.1, "lr": 0.003, "warmup": 10, "batch_size": 512,
            "max_steps": 40, "valid_interval": 10, "log_interval": 10, "valid_decode": False,
            "best_metric": "loss",
        },
        "decode": {"beam_size": 2, "max_len_a": 0, "max_len_b": 12},
        "resources": {"threads": 2},
    },
    "corpora": {
        "toy": {"source": "synthetic", "sizes": {"train": 1000, "valid": 20, "test": 20}, "pairs": {"de-en": {}}},
    },
}


def workspace(path: Path, config: dict | None = TINY) -> Path:
    """A copy of the workflow with `config` (None: the repository's config/config.yaml)."""
    path.mkdir(parents=True, exist_ok=True)
    for folder in ("workflow", "rules", "profiles", "config"):
        shutil.copytree(REPO / folder, path / folder)
    if config is not None:
        (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def edit_config(path: Path, edit) -> None:
    config_file = path / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    edit(config)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--profile", "profiles/local", *args]


def environment() -> dict[str, str]:
    """The pasero commands are console scripts next to this Python."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(path: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command(*args), cwd=path, env=environment(), capture_output=True, text=True,
                            timeout=600)
    result.output = result.stdout + result.stderr
    if ok:
        assert result.returncode == 0, result.output[-3000:]
    return result


def planned_jobs(path: Path, *targets: str) -> dict[str, int]:
    """{rule: number of jobs} that a dry run would execute ({} when there is nothing to do)."""
    out = snakemake(path, "-n", *targets).output
    if "Nothing to be done" in out:
        return {}
    jobs = {}
    for line in out.split("Job stats:")[1].splitlines()[3:]:
        fields = line.split()
        if not fields or fields[0] == "total":
            break
        jobs[fields[0]] = int(fields[1])
    return jobs


def mtimes(path: Path, *names: str) -> dict[str, float]:
    return {name: (path / EXP / name).stat().st_mtime for name in names}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The tiny toy experiment run to the end with the default target."""
    path = workspace(tmp_path_factory.mktemp("finished"))
    (path / "console.txt").write_text(snakemake(path).output)
    return path


@pytest.fixture
def copy_of_finished(finished, tmp_path) -> Path:
    path = tmp_path / "copy"
    shutil.copytree(finished, path, symlinks=True)  # keeps modification times and Snakemake's records
    return path


@pytest.mark.slow
def test_the_toy_pipeline_runs_end_to_end(finished):
    exp = finished / EXP
    bleu = (exp / "bleu.txt").read_text()
    assert bleu.startswith("BLEU|nrefs:1|") and "chrF2" in bleu
    scores = json.loads((exp / "scores.json").read_text())
    assert (scores["corpus"], scores["pair"], scores["n_lines"]) == ("toy", "de-en", 20)
    assert scores["params"] > 0 and scores["steps"]
    assert len((exp / "test.hyp").read_text().splitlines()) == 20
    assert {"checkpoint_last.pt", "config.yaml", "train.jsonl"} <= {p.name for p in (exp / "train").iterdir()}
    summary = (finished / "results" / "summary.tsv").read_text().splitlines()
    assert summary[0].startswith("corpus\tpair\tvariant\tbleu\tchrf") and summary[1].startswith("toy\tde-en\t")
    assert "BLEU by pair and corpus" in (finished / "results" / "summary.md").read_text()
    assert (exp / "learning_curve.svg").read_text().lstrip().startswith("<?xml")
    for rule in ("download", "tokenizer", "dict", "train", "select", "decode.test", "score"):
        assert (exp / "logs" / f"{rule}.log").is_file() and (exp / "benchmarks" / f"{rule}.tsv").is_file()
    # while training, the console says where it is (and the log keeps the same lines)
    console, log = (finished / "console.txt").read_text(), (exp / "logs" / "train.log").read_text()
    line = next(line for line in console.splitlines() if "| step 40/" in line)
    assert " upd/s | " in line and "| ETA " in line and line in log.splitlines()


@pytest.mark.slow
def test_the_report_has_the_results_table_and_the_learning_curves(finished, tmp_path):
    report = tmp_path / "report.html"
    snakemake(finished, "--report", str(report))
    html = report.read_text()
    assert "summary.html" in html and "validation.svg" in html and "learning_curve.svg" in html
    assert "Learning curves" in html and "transformer_tiny, 400-piece SentencePiece vocabulary, lr 0.003" in html
    page = (finished / "results" / "report" / "all" / "summary.html").read_text()
    assert "toy/de-en" in page and "Test translations" in page and "What each experiment cost" in page
    # what a browser shows: the report renders, the results page's tables have their rows
    shown = re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", render(report, tmp_path), flags=re.S))
    assert "General" in shown and "Learning curves" in shown and "Results" in shown  # drawn by its scripts
    rendered = render(finished / "results" / "report" / "all" / "summary.html", tmp_path)
    assert rendered.count("<tr>") >= 2 + 2 + 3 and "toy/de-en" in rendered


def render(page: Path, tmp_path: Path) -> str:
    """The DOM of `page` once headless Chromium has run its scripts."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (.ci/run installs Debian's package)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--allow-file-access-from-files"]
    result = subprocess.run([chromium, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True,
                            text=True, check=True)
    return result.stdout


@pytest.mark.slow
def test_a_partial_run_is_reported_with_scored(copy_of_finished, tmp_path):
    """With an experiment not run yet, the default report cannot be made, `scored` can: it shows
    the experiments scored so far."""
    path = copy_of_finished
    edit_config(path, lambda c: c["corpora"]["toy"]["pairs"].update({"en-de": {}}))
    report = tmp_path / "partial.html"
    assert snakemake(path, "--report", str(report), ok=False).returncode != 0
    snakemake(path, "--report", str(report), "--report-after-run", "scored")
    html = report.read_text()
    assert "summary.html" in html and "learning_curve.svg" in html
    page = (path / "results" / "report" / "scored" / "summary.html").read_text()
    assert "toy/de-en" in page and "toy/en-de" not in page
    assert not (path / "results" / "toy" / "en-de").exists()


@pytest.mark.slow
def test_a_second_run_does_nothing(finished):
    assert planned_jobs(finished) == {}


@pytest.mark.slow
def test_editing_pasero_code_does_not_retrain(finished):
    import pasero.training

    Path(pasero.training.__file__).touch()  # what saving an edit does
    assert planned_jobs(finished) == {}


@pytest.mark.slow
def test_changing_decoding_settings_reruns_only_decoding_and_scoring(copy_of_finished):
    path = copy_of_finished
    before = mtimes(path, "train/done", "model.pt", "test.hyp")
    edit_config(path, lambda c: c["defaults"]["decode"].update(beam_size=3))
    assert planned_jobs(path) == {"decode": 1, "score": 1, "aggregate": 1, "results_page": 1, "all": 1}
    snakemake(path)
    after = mtimes(path, "train/done", "model.pt", "test.hyp")
    assert after["train/done"] == before["train/done"] and after["model.pt"] == before["model.pt"]
    assert after["test.hyp"] > before["test.hyp"]
    assert json.loads((path / EXP / "test.decode.json").read_text())["decoding"]["beam_size"] == 3


@pytest.mark.slow
def test_changing_training_settings_retrains_but_keeps_the_data(copy_of_finished):
    edit_config(copy_of_finished, lambda c: c["defaults"]["train"].update(dropout=0.2))
    assert planned_jobs(copy_of_finished) == {
        "train": 1, "select": 1, "decode": 1, "score": 1, "learning_curve": 1, "aggregate": 1, "results_page": 1,
        "validation_curves": 1, "all": 1}


@pytest.mark.slow
def test_changing_tokenizer_settings_reruns_from_the_tokenizer_and_trains_from_scratch(copy_of_finished):
    path = copy_of_finished
    edit_config(path, lambda c: c["defaults"]["tokenizer"].update(vocab_size=440))
    jobs = planned_jobs(path)
    assert "download" not in jobs
    assert jobs == {"tokenizer": 1, "dict": 1, "binarize": 4, "train": 1, "select": 1, "decode": 1, "score": 1,
                    "learning_curve": 1, "aggregate": 1, "results_page": 1, "validation_curves": 1, "all": 1}
    snakemake(path, str(EXP / "train" / "done"))
    log = (path / EXP / "logs" / "train.log").read_text()
    assert "inputs changed" in log and "tokenizer.vocab_size 400 -> 440" in log and "training from scratch" in log
    assert "resumed from" not in log.split("training from scratch")[-1] and "training finished at step 40" in log


def interrupt_training(path: Path, sig: int, at_step: int) -> None:
    """Run Snakemake up to the end of training and send `sig` to it and its jobs (Ctrl-C in a
    terminal, or a crash of everything: kill -9) once the checkpoint of `at_step` is the last one."""
    checkpoint, last = path / EXP / "train" / f"checkpoint_{at_step}.pt", path / EXP / "train" / "checkpoint_last.pt"
    process = subprocess.Popen(command(str(EXP / "train" / "done")), cwd=path, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (checkpoint.exists() and last.exists() and os.path.samefile(checkpoint, last)):
            assert process.poll() is None and time.monotonic() < deadline, f"no {checkpoint.name}"
            time.sleep(0.05)
        os.killpg(process.pid, sig)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not (path / EXP / "train" / "done").exists()


def resumed_step(path: Path) -> int:
    """The step the last training job resumed from (its log is rewritten by every attempt)."""
    log = (path / EXP / "logs" / "train.log").read_text()
    assert "training from scratch" not in log
    match = re.search(r"resumed from \S+checkpoint_last\.pt \(step (\d+)", log)
    assert match, log
    return int(match.group(1))


@pytest.mark.slow
def test_killing_snakemake_during_training_then_rerunning_continues_training(copy_of_finished):
    path = copy_of_finished
    shutil.rmtree(path / EXP / "train")

    interrupt_training(path, signal.SIGINT, at_step=10)
    # the checkpoint saved on SIGINT (step 10 or just after) survives; the rerun continues from it
    interrupt_training(path, signal.SIGKILL, at_step=20)
    assert resumed_step(path) >= 10

    snakemake(path, "--unlock")  # a killed Snakemake leaves its lock behind
    snakemake(path, str(EXP / "train" / "done"))
    assert resumed_step(path) >= 20
    assert "training finished at step 40" in (path / EXP / "logs" / "train.log").read_text()
    history = (path / EXP / "train" / "train.log").read_text()  # every run, the killed ones too
    assert history.count("starting a new training") == 1 and history.count("resumed from") == 2


def running(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for a parent that never reaps it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.slow
def test_sigterm_returns_only_once_training_has_saved_so_a_rerun_never_meets_it(copy_of_finished):
    """SIGTERM to Snakemake and its jobs (a cluster's scancel, systemd): Snakemake returns only after
    pasero-train has saved and exited, so an immediate rerun continues instead of meeting a second
    trainer in the same folder."""
    path = copy_of_finished
    shutil.rmtree(path / EXP / "train")
    interrupt_training(path, signal.SIGTERM, at_step=10)
    holder = (path / EXP / "train" / ".trainer.lock").read_text()  # "pid N on HOST"
    assert not running(int(holder.split()[1])), holder
    history = (path / EXP / "train" / "train.log").read_text()
    assert "received SIGTERM" in history and "rerun the same command to resume" in history
    snakemake(path, str(EXP / "train" / "done"))
    assert resumed_step(path) >= 10


# Dry runs and errors: no training, no network --------------------------------------------------


@pytest.fixture(scope="module")
def real_config(tmp_path_factory) -> Path:
    return workspace(tmp_path_factory.mktemp("real"), config=None)


def test_dry_runs_of_ted_and_iwslt_targets_work_offline(real_config):
    targets = ["results/TED/de-en/bleu.txt", "results/TED/de-en.big/bleu.txt", "results/TED/en-de/bleu.txt",
               "results/IWSLT14/de-en/bleu.txt", "results/IWSLT17/de-en/bleu.txt"]
    out = snakemake(real_config, "-n", *targets).output
    assert "--source ted_talks --pair de-en" in out and "http://phontron.com/data/ted_talks.tar.gz" in out
    assert "--source iwslt14" in out and "--source iwslt17" in out and out.count("--url") >= 5
    assert "--bleu-tok none" in out  # TED is tokenized already
    # IWSLT'17: tst2016 beside tst2017; IWSLT'14: the per-year sets beside their concatenation
    assert "--test-set tst2016 results/IWSLT17/de-en/tst2016.hyp results/IWSLT17/de-en/text/tst2016.en" in out
    for name in ("dev2010", "tedx_dev2012", "tst2010", "tst2011", "tst2012"):
        assert f"--test-set {name} results/IWSLT14/de-en/{name}.hyp" in out
    assert "--extra-bleu tokenized" in out and "--extra-bleu detokenized" in out
    # the `big` variant trains its own model on the data of its pair
    assert "results/TED/de-en.big/train/done" in out and "results/TED/de-en.big/tokenizer" not in out
    assert not (real_config / "results").exists()


def test_pasero_ted_top20_is_one_model_for_38_directions_decoded_one_by_one(real_config):
    """The multilingual experiment of the config: one download per language pair (de-en and en-de
    share theirs), one joint tokenizer with a code per language, one training job, and per direction
    a decoding with -s/-t, a score, and the experiment's table of them."""
    out = snakemake(real_config, "-n", "-p", "results/TED/top20/bleu.txt").output
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
    assert jobs == {"download": "20", "tokenizer": "1", "dict": "1", "binarize": "96", "train": "1", "select": "1",
                    "decode_direction": "40", "score_direction": "40", "combine_directions": "1", "total": "201"}
    commands = [line for line in out.splitlines() if line.startswith("Shell command:")]
    (tokenizer,) = [c for c in commands if "pasero-build-tokenizer" in c]
    assert "--lang-codes en --lang-codes ar" in tokenizer and "--temperature 5" in tokenizer
    (train,) = [c for c in commands if "pasero-train" in c]
    assert "--lang-code source" in train and "--lang-temperature 5" in train and "--source-lang" not in train
    assert "--lang-pairs '[ar-en, he-en," in train and "--valid-lang-pairs '[ar-en, ru-en, ko-en," in train
    (zero_shot,) = [c for c in commands if "pasero-decode" in c and "-s de -t fr" in c]
    assert "-i results/TED/de-fr/text/test.de -o results/TED/top20/de-fr/test.hyp" in zero_shot
    (reverse,) = [c for c in commands if "pasero-decode" in c and "-s en -t de" in c]
    assert "-i results/TED/de-en/text/test.en" in reverse  # the text of de-en, not a second download
    assert "--meta zero_shot=true" in next(c for c in commands if "pasero-score" in c and "top20/de-fr/" in c)
    assert not (real_config / "results").exists()


def test_iwslt17_multilingual_zero_shot_condition_dry_runs_offline(real_config):
    """`directions: all` less the zero-shot directions; each pair fetches the training archive and
    both of its directions' test archives (the reference is the reverse archive's source side)."""
    out = snakemake(real_config, "-n", "-p", "results/IWSLT17M/zero_shot/bleu.txt").output
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.M))
    assert jobs["download"] == "10" and jobs["train"] == "1" and jobs["decode_direction"] == "20"
    commands = [line for line in out.splitlines() if line.startswith("Shell command:")]
    (train,) = [c for c in commands if "pasero-train" in c]
    assert "it-ro" not in train and "de-nl" not in train and "--lang-pairs '[de-en, de-it, de-ro, en-de," in train
    (download,) = [c for c in commands if "pasero-download" in c and "--pair it-ro" in c]
    assert download.count("--url") == 3 and "mted-test/texts/it/ro/it-ro.tgz" in download
    assert "mted-test/texts/ro/it/ro-it.tgz" in download and "DeEnItNlRo-DeEnItNlRo.tgz" in download
    for pair in ("de-nl", "nl-de", "it-ro", "ro-it"):
        assert "--meta zero_shot=true" in next(c for c in commands if "pasero-score" in c and f"/{pair}/" in c)
    assert not (real_config / "results").exists()


def test_a_grid_is_one_variant_per_combination_named_by_its_values(tmp_path):
    """grids: lr x seed, listed as `de-en.sweep` under pairs: four trainings by default, each named by
    its values, with its seed; the scores say which point and seed they are (the summary's mean rows)."""
    path = workspace(tmp_path, config=None)

    def add_grid(c):
        c["grids"] = {"sweep": {"train.lr": [0.0005, 0.001], "train.seed": [1, 2]}}
        c["corpora"]["toy"]["pairs"]["de-en.sweep"] = {}

    edit_config(path, add_grid)
    out = snakemake(path, "-n", "-p").output
    commands = [line for line in out.splitlines() if line.startswith("Shell command:")]
    trains = {re.search(r"--model-dir results/(\S+)/train", c)[1]: c for c in commands if "pasero-train" in c}
    assert {"toy/de-en.sweep_lr0p0005_seed1", "toy/de-en.sweep_lr0p0005_seed2", "toy/de-en.sweep_lr0p001_seed1",
            "toy/de-en.sweep_lr0p001_seed2"} <= set(trains)
    point = trains["toy/de-en.sweep_lr0p001_seed2"]
    assert "--lr 0.001 " in point and "--seed 2 " in point
    (score,) = [c for c in commands if "pasero-score" in c and "de-en.sweep_lr0p001_seed2/" in c]
    assert "--meta grid_point=sweep_lr0p001 --meta seed=2" in score
    edit_config(path, lambda c: c["grids"]["sweep"].update({"model.lr": [1]}))
    result = snakemake(path, "-n", ok=False)
    assert result.returncode != 0 and "grids" in result.output and "model.lr" in result.output


def test_a_multilingual_typo_names_its_key(tmp_path):
    path = workspace(tmp_path, config=None)
    edit_config(path, lambda c: c["corpora"]["TED"]["multilingual"]["top20"].update(zero_shot=["de-xx"]))
    result = snakemake(path, "-n", "results/TED/top20/bleu.txt", ok=False)
    assert "config/config.yaml, corpora/TED/multilingual/top20/direction 'de-xx': xx not among langs" in result.output


def test_the_named_recipes_reach_the_commands(real_config):
    """Pasero's TED recipe and fairseq's IWSLT'14 recipe, as the config's layers resolve them."""
    out = snakemake(real_config, "-n", "-p", "results/TED/de-en/bleu.txt", "results/IWSLT14/de-en/bleu.txt").output
    commands = [line for line in out.splitlines() if line.startswith("Shell command:")]

    def command_of(program, corpus):
        (line,) = [c for c in commands if f"{program} " in c and f"results/{corpus}/" in c]
        return line

    ted = command_of("pasero-train", "TED")
    for option in ("--adam-betas '[0.9, 0.999]'", "--clip-norm 1.0", "--shared-embeddings true", "--patience 5",
                   "--valid-beam-size 5", "--virtual-dp-size 4", "--max-steps 25000", "--best-metric chrf",
                   "--bleu-tok none"):
        assert option in ted
    assert "--inline-case" in command_of("pasero-build-tokenizer", "TED")
    iwslt = command_of("pasero-train", "IWSLT14")
    for option in ("--adam-betas '[0.9, 0.98]'", "--clip-norm 0.0", "--shared-embeddings true", "--dropout 0.3",
                   "--weight-decay 0.0001", "--label-smoothing 0.1", "--warmup 4000", "--batch-size 4096",
                   "--virtual-dp-size 1", "--best-metric bleu", "--valid-beam-size 5", "--bleu-tok none"):
        assert option in iwslt
    assert "--last 5" in command_of("pasero-average-checkpoints", "IWSLT14")
    assert "--vocab-size 10000" in command_of("pasero-build-tokenizer", "IWSLT14")


def test_the_default_target_is_every_listed_experiment_and_the_summary(real_config):
    config = yaml.safe_load((real_config / "config" / "config.yaml").read_text())
    n = sum(len(corpus.get("pairs", {})) for corpus in config["corpora"].values())
    multi = sum(len(corpus.get("multilingual", {})) for corpus in config["corpora"].values())
    jobs = planned_jobs(real_config)
    assert jobs["score"] == n and jobs["train"] == n + multi and jobs["aggregate"] == 1
    assert jobs["combine_directions"] == jobs["directions_chart"] == multi >= 3


@pytest.mark.parametrize("target, message", [
    ("results/WMT/de-en/bleu.txt", "unknown corpus 'WMT'; config/config.yaml defines: toy, TED"),
    ("results/toy/fr-en/bleu.txt", "corpus 'toy' has no pair 'fr-en'; config/config.yaml lists: de-en"),
    ("results/toy/de-en.huge/bleu.txt", "unknown variant 'huge' in 'de-en.huge'; config/config.yaml defines: big"),
])
def test_an_unknown_corpus_pair_or_variant_is_a_clear_error(real_config, target, message):
    result = snakemake(real_config, "-n", target, ok=False)
    assert result.returncode != 0 and message in result.output


def test_a_config_typo_is_an_error_before_any_job(tmp_path):
    path = workspace(tmp_path)
    edit_config(path, lambda c: c["defaults"]["train"].update(lrr=0.1))
    result = snakemake(path, ok=False)
    assert result.returncode != 0
    assert "config/config.yaml, defaults/train: unknown key 'lrr'; did you mean lr?" in result.output
    assert not (path / "results").exists()


def test_a_wrong_type_is_an_error_before_any_job(tmp_path):
    path = workspace(tmp_path)
    edit_config(path, lambda c: c["corpora"]["toy"]["pairs"].update({"de-en": {"decode": {"beam_size": "five"}}}))
    result = snakemake(path, ok=False)
    assert "corpora/toy/pairs/de-en (resolved settings)/decode/beam_size: 'five' is not of type 'integer'" in \
        result.output
    assert not (path / "results").exists()


def test_model_dimensions_that_do_not_fit_are_an_error_before_any_job(tmp_path):
    path = workspace(tmp_path)
    edit_config(path, lambda c: c["defaults"]["train"].update(embed_dim=100, heads=8))
    result = snakemake(path, "-n", ok=False)
    assert "config/config.yaml, corpora/toy/pairs/de-en (resolved settings)/train: embed_dim (100) must be a " \
           "multiple of heads (8)" in result.output
    edit_config(path, lambda c: c["defaults"]["train"].update(embed_dim=128, heads=4))
    edit_config(path, lambda c: c.setdefault("variants", {}).update(odd={"train": {"heads": 3}}))
    result = snakemake(path, "-n", ok=False)
    assert "variants/odd/train: embed_dim (128) must be a multiple of heads (3)" in result.output
    assert not (path / "results").exists()


def test_a_duplicate_key_or_a_yaml_error_names_the_line(tmp_path):
    path = workspace(tmp_path)
    config_file = path / "config" / "config.yaml"
    text = config_file.read_text()
    config_file.write_text(text.replace("    lr: 0.003\n", "    lr: 0.003\n    lr: 0.01\n"))
    result = snakemake(path, "-n", ok=False)
    line = config_file.read_text().splitlines().index("    lr: 0.01") + 1
    message = f"config/config.yaml:{line}: duplicate key 'lr' (first at line {line - 1}); keep one of them"
    assert message in result.output
    config_file.write_text(text + "variants:\n  mine: {tokenizer: {vocab_size: 300}, files: {x: a.{lang}}}\n")
    result = snakemake(path, "-n", ok=False)
    assert re.search(r"config/config\.yaml:\d+:\d+: invalid YAML \(.*\); quote values", result.output), result.output
    assert not (path / "results").exists()


def test_an_exponent_without_a_dot_is_a_number(tmp_path):
    path = workspace(tmp_path)
    config_file = path / "config" / "config.yaml"
    config_file.write_text(config_file.read_text().replace("    lr: 0.003\n", "    lr: 2e-3\n"))
    out = snakemake(path, "-n", "-p", str(EXP / "train" / "done")).output
    assert "--lr 0.002 " in out


def test_snakemake_lint_is_clean(real_config):
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=real_config, env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_is_generated_from_the_option_declarations():
    """`train:` and `decode:` keys are checked against the schema before anything runs: its block
    generated from the declarations (types, bounds, choices) must be the current one, and offer
    every pasero-train option but those the workflow sets itself."""
    from pasero import workflow_schema
    from pasero.train_config import known_keys

    text = (REPO / "workflow" / "schemas" / "config.schema.yaml").read_text()
    assert text.endswith(workflow_schema.generated_block()), "run: python -m pasero.workflow_schema"
    schema = yaml.safe_load(text)
    offered = set(schema["$defs"]["train_options"]["properties"])
    set_by_the_workflow = {"data_dir", "dict", "tokenizer", "model_dir", "source_lang", "target_lang",
                           "train_split", "valid_split", "lang_pairs", "valid_lang_pairs"}
    assert offered == set(known_keys()) - set_by_the_workflow
    assert schema["$defs"]["train_options"]["properties"]["dropout"] == {
        "type": "number", "minimum": 0, "exclusiveMaximum": 1,
        "description": "dropout of the residual connections and embeddings"}


# Further test sets -----------------------------------------------------------------------------


def local_corpus(path: Path) -> dict:
    """A `local` corpus (toy text written as plain files) with a further test set `extra`."""
    from pasero import toy

    corpus = toy.generate(seed=3, sizes={"train": 1000, "valid": 20, "test": 20})
    corpus["extra"] = corpus["valid"][:10]
    for split, pairs in corpus.items():
        for side, lang in enumerate(("de", "en")):
            (path / f"{split}.{lang}").write_text("".join(pair[side] + "\n" for pair in pairs))
    files = {split: str(path / f"{split}.{{lang}}") for split in corpus}
    return {"source": "local", "files": files, "test_sets": ["extra"], "pairs": {"de-en": {}}}


@pytest.mark.slow
def test_further_test_sets_are_decoded_and_scored_without_retraining(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = {**TINY, "corpora": {"mine": local_corpus(data)}}
    config["defaults"] = {**TINY["defaults"], "score": {"extra_bleu": ["tokenized"]}}
    path = workspace(tmp_path / "ws", config)
    exp = path / "results" / "mine" / "de-en"
    snakemake(path, "results/mine/de-en/bleu.txt")

    assert len((exp / "extra.hyp").read_text().splitlines()) == 10
    scores = json.loads((exp / "scores.json").read_text())
    assert set(scores["test_sets"]) == {"test", "extra"}
    assert scores["test_sets"]["extra"]["n_lines"] == 10 and scores["n_lines"] == 20
    bleu = (exp / "bleu.txt").read_text().splitlines()
    # the primary test set only: BLEU, chrF, chrF++ and the tokenized BLEU, which says what it is
    assert len(bleu) == 4 and "pre:moses-tok" in bleu[3] and "pre:" not in bleu[0]

    # scoring one more or one less test set never retrains
    edit_config(path, lambda c: c["corpora"]["mine"].update(test_sets=[]))
    assert planned_jobs(path, "results/mine/de-en/bleu.txt") == {"score": 1}
