"""A multilingual experiment through Snakemake, end to end on a tiny local corpus of three languages:
one download per language pair, one tokenizer and dictionary, one model, every direction decoded
and scored (a zero-shot one too), the experiment's table and a resumed training after a kill."""

from __future__ import annotations

import copy
import json
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest
from test_workflow import TINY, command, environment, snakemake, workspace

from pasero import toy

EXP = Path("results/mine/tri")


def french(english: str) -> str:
    """A third language for the test: English words spelt backwards (its own vocabulary)."""
    return " ".join(word[::-1] for word in english.split())


def write_corpus(root: Path) -> None:
    """data/{pair}/{split}.{lang} for de-en, fr-en and de-fr, from the toy German-English corpus."""
    corpus = toy.generate(seed=3, sizes={"train": 600, "valid": 20, "test": 20})
    for split, pairs in corpus.items():
        for pair, side in (("de-en", lambda de, en: (de, en)), ("fr-en", lambda de, en: (french(en), en)),
                           ("de-fr", lambda de, en: (de, french(en)))):
            folder = root / "data" / pair
            folder.mkdir(parents=True, exist_ok=True)
            src, tgt = pair.split("-")
            rows = [side(de, en) for de, en in pairs]
            (folder / f"{split}.{src}").write_text("".join(a + "\n" for a, _ in rows))
            (folder / f"{split}.{tgt}").write_text("".join(b + "\n" for _, b in rows))


CONFIG = copy.deepcopy(TINY)
CONFIG["corpora"] = {
    "mine": {
        "source": "local",
        "files": {split: f"data/{{pair}}/{split}.{{lang}}" for split in ("train", "valid", "test")},
        "multilingual": {
            "tri": {"langs": ["en", "de", "fr"], "directions": ["de-en", "en-de", "fr-en"], "zero_shot": ["de-fr"],
                    "settings": {"train": {"lang_temperature": 2.0}}},
        },
    },
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    path = workspace(tmp_path_factory.mktemp("multilingual"), config=CONFIG)
    write_corpus(path)
    snakemake(path, str(EXP / "bleu.txt"), str(EXP / "directions.svg"), "results/summary.tsv")
    return path


@pytest.mark.slow
def test_every_direction_is_decoded_and_scored_by_one_model(finished):
    path = finished
    results = path / EXP
    assert sorted(p.name for p in (path / "results" / "mine").iterdir()) == ["de-en", "de-fr", "fr-en", "tri"]
    assert not (path / "results" / "mine" / "en-de").exists()  # en-de reads the text of de-en
    ckpt_meta = json.loads((results / "de-en" / "test.decode.json").read_text())
    assert ckpt_meta["target_lang"] == "en" and ckpt_meta["zero_shot"] is False
    assert json.loads((results / "de-fr" / "test.decode.json").read_text())["zero_shot"] is True
    combined = json.loads((results / "scores.json").read_text())
    assert set(combined["directions"]) == {"de-en", "en-de", "fr-en", "de-fr"}
    assert set(combined["averages"]) == {"trained", "x-en", "en-x", "zero_shot"}
    assert combined["averages"]["trained"]["directions"] == 3
    assert "de-fr" in (results / "bleu.txt").read_text() and "zero-shot" in (results / "bleu.txt").read_text()
    chart = (results / "directions.svg").read_text()
    assert all(pair in chart for pair in ("de-en", "en-de", "fr-en", "de-fr")) and "off-target" in chart
    summary = pd.read_csv(path / "results" / "summary.tsv", sep="\t")
    assert sorted(summary["pair"]) == ["tri/avg en-x", "tri/avg trained", "tri/avg x-en", "tri/avg zero_shot",
                                       "tri/de-en", "tri/de-fr", "tri/en-de", "tri/fr-en"]
    assert summary["params"].nunique() == 1 and summary["best_step"].notna().all()
    log = (results / "train" / "train.log").read_text()
    assert "valid | step 40 | loss by direction: de-en" in log
    for pair in ("de-en", "en-de", "fr-en"):
        assert (results / "bin" / f"train.{pair}.{pair.split('-')[0]}.bin").is_file()


@pytest.mark.slow
def test_a_killed_multilingual_training_resumes(finished, tmp_path):
    import os
    import subprocess
    import time

    path = tmp_path / "copy"
    shutil.copytree(finished, path, symlinks=True)
    shutil.rmtree(path / EXP / "train")
    checkpoint, last = path / EXP / "train" / "checkpoint_20.pt", path / EXP / "train" / "checkpoint_last.pt"
    process = subprocess.Popen(command(str(EXP / "train" / "done")), cwd=path, env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (checkpoint.exists() and last.exists() and os.path.samefile(checkpoint, last)):
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint_20.pt"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    snakemake(path, "--unlock")
    snakemake(path, str(EXP / "train" / "done"))
    history = (path / EXP / "train" / "train.log").read_text()
    assert "resumed from" in history and "training finished at step 40" in history
