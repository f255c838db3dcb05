"""End-to-end training: outputs, resume bit for bit after SIGKILL/SIGTERM, data parallelism, bad input,
resuming or starting over when the inputs changed (--reset-if-changed), the time budget (max_time)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from train_helpers import VOCAB, make_corpus, write_config

from pasero.checkpoints import changed_inputs, load_checkpoint
from pasero.cli.train import _train_parser, train_main
from pasero.dictionary import Dictionary
from pasero.errors import ConfigError, TrainingError
from pasero.options import cli_values
from pasero.train_config import load_config, parse_duration
from pasero.training import EXIT_INTERRUPTED, MAX_NONFINITE_UPDATES, Trainer

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def weights(model_dir: Path, name: str = "checkpoint_last.pt") -> dict[str, bytes]:
    ckpt = load_checkpoint(model_dir / name)
    return {k: v.numpy().tobytes() for k, v in ckpt["model"].items()}


def start(cfg_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pasero.cli.train", "-c", str(cfg_path), *args],
                            stderr=subprocess.PIPE, text=True, env=ENV)


def run(cfg_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pasero.cli.train", "-c", str(cfg_path), *args],
                          capture_output=True, text=True, env=ENV)


def interrupt_at(cfg_path: Path, step: int, sig: int) -> tuple[int, str]:
    """Start training, send `sig` as soon as `step` is logged; returns (exit code, stderr)."""
    proc = start(cfg_path)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if f"| step {step}/" in line:
            proc.send_signal(sig)
            break
    lines.extend(proc.stderr)
    return proc.wait(), "".join(lines)


def test_train_outputs_and_rerun_is_a_no_op(tmp_path):
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", {**cfg, "max_steps": 20, "keep_last": 1})
    assert train_main(["-c", str(cfg_path)]) == 0
    model_dir = Path(cfg["model_dir"])
    names = {p.name for p in model_dir.iterdir()}
    assert {"checkpoint_20.pt", "checkpoint_last.pt", "checkpoint_best.pt", "config.yaml", "inference.yaml",
            "train.jsonl", "train.log"} <= names
    rows = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
    best_step = [r for r in rows if r["type"] == "valid"][-1]["best_step"]
    kept = {n for n in names if re.fullmatch(r"checkpoint_\d+\.pt", n)}
    assert kept == {f"checkpoint_{s}.pt" for s in (20, best_step)}  # keep_last 1, and the best
    train_rows = [r for r in rows if r["type"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 21))
    assert {"loss", "nll", "ppl", "lr", "tokens_per_s", "gnorm", "elapsed"} <= set(train_rows[0])
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    valid = [r for r in rows if r["type"] == "valid"]
    assert [r["step"] for r in valid] == [10, 20] and {"bleu", "chrf", "nll", "ppl"} <= set(valid[0])
    ckpt = load_checkpoint(model_dir / "checkpoint_last.pt")
    assert ckpt["step"] == 20 and ckpt["dictionary"] == Dictionary.load(cfg["dict"]).symbols
    assert ckpt["model_config"]["embed_dim"] == 32 and ckpt["inference"]["target_lang"] == "en"
    assert ckpt["meta"]["params"] > 0 and ckpt["meta"]["train_seconds"] > 0
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert saved["encoder_layers"] == 1 and saved["max_steps"] == 20
    before = (model_dir / "checkpoint_last.pt").stat().st_mtime_ns
    assert train_main(["-c", str(cfg_path)]) == 0  # finished: resuming does nothing
    assert (model_dir / "checkpoint_last.pt").stat().st_mtime_ns == before


def tensorboard_steps(model_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(model_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_log_lines_say_where_training_is_and_when_it_ends(tmp_path):
    """step N/max_steps with its percentage, updates/s and an ETA (validation time included); a
    line when validation starts, so that a long validation is not mistaken for a hang; TensorBoard."""
    cfg = make_corpus(tmp_path / "data")
    path = write_config(tmp_path / "c.yaml", {**cfg, "model_dir": str(tmp_path / "m")})
    result = run(path)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line for line in result.stderr.splitlines() if "| step " in line and "valid |" not in line]
    (tenth,) = [line for line in steps if "| step 10/30 (33%) |" in line]
    assert re.search(r"\| [0-9.]+ upd/s \|", tenth) and re.search(r"\| ETA \d+:\d\d:\d\d$", tenth)
    assert steps[-1].endswith("| ETA 0:00:00")
    assert "valid | step 10 | validating on" in result.stderr
    rows = [json.loads(r) for r in (tmp_path / "m" / "train.jsonl").read_text().splitlines()]
    assert all(r["updates_per_s"] > 0 for r in rows if r["type"] == "train" and r["step"] > 5)
    # the same figures as TensorBoard scalars
    assert tensorboard_steps(tmp_path / "m", "train/loss") == [r["step"] for r in rows if r["type"] == "train"]
    assert tensorboard_steps(tmp_path / "m", "valid/chrf") == [10, 20, 30]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_after_sigkill_and_sigterm_is_bit_exact(tmp_path, dtype):
    """Also under bf16 autocast (the default on CPUs with AVX512-BF16/AMX): the same dtype and
    threads give the same bytes, and the checkpoints keep float32 master weights."""
    cfg = {**make_corpus(tmp_path / "data"), "dtype": dtype}
    paths = {}
    for name in ("straight", "killed", "stopped"):
        paths[name] = write_config(tmp_path / f"{name}.yaml", {**cfg, "model_dir": str(tmp_path / name)})
    assert run(paths["straight"]).returncode == 0
    reference = weights(tmp_path / "straight")

    code, log = interrupt_at(paths["killed"], 14, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["step"] == 10
    resumed = run(paths["killed"])
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr

    code, log = interrupt_at(paths["stopped"], 14, signal.SIGTERM)
    assert code == EXIT_INTERRUPTED, log
    assert "interrupted at step" in log
    stopped_at = load_checkpoint(tmp_path / "stopped" / "checkpoint_last.pt")["step"]
    assert 14 <= stopped_at < 20  # the current update finished and was saved, not a validation checkpoint
    assert run(paths["stopped"]).returncode == 0

    for name in ("killed", "stopped"):
        assert weights(tmp_path / name) == reference, name
    steps = [json.loads(r)["step"] for r in (tmp_path / "killed" / "train.jsonl").read_text().splitlines()
             if json.loads(r)["type"] == "train"]
    assert steps == list(range(1, 31))  # the steps redone after the kill are logged once
    assert tensorboard_steps(tmp_path / "killed", "train/loss") == steps  # and drawn once in TensorBoard
    assert f"({dtype})" in resumed.stderr
    assert {t.dtype for t in load_checkpoint(tmp_path / "killed" / "checkpoint_last.pt")["model"].values()} == {
        torch.float32}


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(tmp_path):
    cfg = make_corpus(tmp_path / "data")
    common = {**cfg, "virtual_dp_size": 2, "max_steps": 8, "valid_interval": 8, "valid_decode": False,
              "best_metric": "nll"}
    one = write_config(tmp_path / "one.yaml", {**common, "model_dir": str(tmp_path / "one")})
    two = write_config(tmp_path / "two.yaml", {**common, "model_dir": str(tmp_path / "two")})
    assert run(one).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "pasero.cli.train", "-c", str(two)], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-6000:]
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert b["meta"]["world_size"] == 2 and a["step"] == b["step"] == 8
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert a["metrics"]["valid"]["nll"] == pytest.approx(b["metrics"]["valid"]["nll"], rel=1e-4)


def test_dictionary_mismatch_is_a_one_line_error(tmp_path, capsys):
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", {**cfg, "max_steps": 2, "valid_interval": 2,
                                                      "valid_decode": False, "best_metric": "loss"})
    assert train_main(["-c", str(cfg_path)]) == 0
    Dictionary.from_symbols(list(reversed(VOCAB))).save(tmp_path / "other.txt")
    before = (Path(cfg["model_dir"]) / "checkpoint_last.pt").read_bytes()
    capsys.readouterr()
    assert train_main(["-c", str(cfg_path), "--dict", str(tmp_path / "other.txt"), "--max-steps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not match the dictionary" in err and "other.txt" in err
    assert (Path(cfg["model_dir"]) / "checkpoint_last.pt").read_bytes() == before  # nothing overwritten


def test_reset_continue_and_model_mismatch(tmp_path, capsys):
    cfg = make_corpus(tmp_path)
    first = write_config(tmp_path / "first.yaml", {**cfg, "max_steps": 4, "valid_interval": 4,
                                                   "valid_decode": False, "best_metric": "nll"})
    assert train_main(["-c", str(first)]) == 0
    model_dir = Path(cfg["model_dir"])
    saved = tmp_path / "saved.pt"
    shutil.copyfile(model_dir / "checkpoint_last.pt", saved)
    # another architecture in the same folder: refused, with the way out
    capsys.readouterr()
    assert train_main(["-c", str(first), "--encoder-layers", "2", "--max-steps", "8"]) == 2
    assert "--reset" in capsys.readouterr().err
    # --reset starts over
    assert train_main(["-c", str(first), "--reset", "--max-steps", "2", "--valid-interval", "2"]) == 0
    assert sorted(p.name for p in model_dir.glob("checkpoint_*.pt")) == [
        "checkpoint_2.pt", "checkpoint_best.pt", "checkpoint_last.pt"]
    assert load_checkpoint(model_dir / "checkpoint_last.pt")["step"] == 2
    # --continue: weights from another run, step count from 0 (a negligible learning rate keeps them)
    tuned = tmp_path / "tuned"
    assert train_main(["-c", str(first), "--model-dir", str(tuned), "--continue-from", str(saved), "--max-steps", "1",
                       "--valid-interval", "1", "--lr-scheduler", "constant", "--lr", "1e-12"]) == 0
    ckpt = load_checkpoint(tuned / "checkpoint_last.pt")
    assert ckpt["step"] == 1
    for name, tensor in load_checkpoint(saved)["model"].items():
        torch.testing.assert_close(ckpt["model"][name], tensor, atol=1e-6, rtol=0)


def test_missing_data_and_bad_options_are_one_line_errors(tmp_path, capsys):
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", cfg)
    for argv, expected in [
        (["--valid-split", "dev"], "dev.de-en.de.{bin,idx}: binarized data not found"),
        (["--learning-rate", "1e-3"], "unknown option 'learning_rate'"),
        (["--dropuot", "0.3"], "did you mean dropout"),
        (["--lr", "fast"], "option 'lr' expects float"),
    ]:
        assert train_main(["-c", str(cfg_path), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert not Path(cfg["model_dir"]).exists()


def test_reset_if_changed_continues_unless_the_weights_would_differ(tmp_path, caplog):
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", {**cfg, "max_steps": 4, "valid_interval": 2, "log_interval": 2,
                                                      "valid_decode": False, "best_metric": "nll"})
    model_dir = Path(cfg["model_dir"])
    assert train_main(["-c", str(cfg_path)]) == 0

    def rerun(*args: str) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pasero"):
            assert train_main(["-c", str(cfg_path), "--reset-if-changed", *args]) == 0
        return caplog.text

    def train_steps() -> list[int]:
        rows = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
        return [r["step"] for r in rows if r["type"] == "train"]

    assert "training already finished (step 4)" in rerun()
    # more steps, other logging and checkpoint settings: the run continues
    log = rerun("--max-steps", "6", "--log-interval", "1", "--keep-last", "1", "--valid-beam-size", "2")
    assert "resumed from" in log and "training from scratch" not in log
    assert load_checkpoint(model_dir / "checkpoint_last.pt")["step"] == 6 and train_steps() == [2, 4, 5, 6]
    # an option that changes the weights: one line says which, and training starts over
    log = rerun("--max-steps", "6", "--dropout", "0.2")
    changed = [line for line in log.splitlines() if "training from scratch" in line]
    assert len(changed) == 1 and "inputs changed" in changed[0] and "dropout 0.1 -> 0.2" in changed[0], log
    assert "resumed from" not in log and train_steps() == [2, 4, 6]
    assert load_checkpoint(model_dir / "checkpoint_last.pt")["train_config"]["dropout"] == 0.2
    # fewer steps than the checkpoint has: a fresh run would stop earlier
    assert "max_steps 2 < the checkpoint's step 6" in rerun("--max-steps", "2", "--dropout", "0.2")
    # other training data, or another dictionary, under the same file names
    make_corpus(tmp_path, seed=1)
    log = rerun("--max-steps", "2", "--dropout", "0.2")
    assert "training from scratch" in log and "(train data)" in log
    Dictionary.from_symbols(list(reversed(VOCAB))).save(cfg["dict"])
    assert "(dictionary)" in rerun("--max-steps", "2", "--dropout", "0.2")
    assert load_checkpoint(model_dir / "checkpoint_last.pt")["dictionary"][4:] == list(reversed(VOCAB))


def test_a_new_tokenizer_is_a_change_named_by_its_settings():
    def tokenizer(vocab_size: int, model: list[int]) -> dict:
        return {"type": "sentencepiece", "settings": {"vocab_size": vocab_size, "inputs": [f"/tmp/{vocab_size}"]},
                "model": torch.tensor(model, dtype=torch.uint8)}

    ckpt = {"train_config": {"lr": 0.001}, "dictionary": ["a"], "tokenizer": tokenizer(400, [1, 2]), "step": 3,
            "meta": {"train_data": "sha"}}
    same = {"train_config": {"lr": 0.001}, "resumable": frozenset(), "symbols": ["a"], "train_data": "sha"}
    assert changed_inputs(ckpt, tokenizer=tokenizer(400, [1, 2]), **same) == []
    assert changed_inputs(ckpt, tokenizer=tokenizer(440, [1, 3]), **same) == ["tokenizer.vocab_size 400 -> 440"]
    assert changed_inputs(ckpt, tokenizer=tokenizer(400, [1, 3]), **same) == ["tokenizer model"]
    assert changed_inputs(ckpt, tokenizer=None, **same) == ["tokenizer given -> none"]


def test_a_model_option_newer_than_the_checkpoint_counts_as_its_default():
    """A run trained before `position_offset` existed resumes; one that sets it otherwise starts over."""
    ckpt = {"train_config": {"lr": 0.001, "embed_dim": 32}, "dictionary": ["a"], "tokenizer": None, "step": 3}
    now = {"resumable": frozenset(), "symbols": ["a"], "tokenizer": None, "train_data": "sha"}
    assert changed_inputs(ckpt, train_config={"lr": 0.001, "embed_dim": 32, "position_offset": 0}, **now) == []
    assert changed_inputs(ckpt, train_config={"lr": 0.001, "embed_dim": 32, "position_offset": 2}, **now) == [
        "position_offset 0 -> 2"]


@pytest.mark.parametrize("value,seconds", [
    (5400, 5400.0), (1.5, 1.5), ("5400", 5400.0), ("1e-6", 1e-6), ("90s", 90.0), ("30m", 1800.0),
    ("4h", 14400.0), ("1h30m", 5400.0), ("1h 30m 10s", 5410.0), ("1.5h", 5400.0), ("01:30:00", 5400.0),
    ("90:00", 5400.0), (None, None)])
def test_max_time_accepts_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "1x", "h", "", "1:75", "1:2:3:4", "1h30", "-1h", "inf", True, [1]])
def test_max_time_rejects_other_values(value):
    with pytest.raises(ConfigError, match=r"option 'max_time' expects a duration: seconds .* HH:MM:SS"):
        parse_duration(value)


def test_max_time_from_the_command_line(tmp_path, capsys):
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", cfg)
    parser = _train_parser()
    for text, seconds in [("1:30:00", 5400.0), ("45m", 2700.0), ("null", None)]:  # 1:30:00 is YAML's 5400
        args, _ = parser.parse_known_args(["--max-time", text])
        assert load_config(cfg_path, cli_values(args)).max_time == seconds
    for text, message in [("1.5 hours", "option 'max_time' expects a duration"),
                          ("0", "option 'max_time' must be positive")]:
        assert train_main(["-c", str(cfg_path), "--max-time", text]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def rows(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]


def test_time_budget_validates_saves_and_finishes(tmp_path, caplog):
    """A budget spent by the first update (the real clock): the run ends as finished, not interrupted."""
    cfg = make_corpus(tmp_path)
    cfg_path = write_config(tmp_path / "train.yaml", {**cfg, "max_steps": 1000, "log_interval": 5,
                                                      "valid_interval": 5, "valid_decode": False,
                                                      "best_metric": "nll", "max_time": "0.000001s"})
    model_dir = Path(cfg["model_dir"])
    with caplog.at_level(logging.INFO, logger="pasero"):
        assert train_main(["-c", str(cfg_path)]) == 0
    assert [(r["type"], r["step"]) for r in rows(model_dir)] == [("train", 1), ("valid", 1)]
    assert {p.name for p in model_dir.glob("checkpoint*.pt")} == {
        "checkpoint_1.pt", "checkpoint_last.pt", "checkpoint_best.pt"}
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        ckpt = load_checkpoint(model_dir / name)
        assert ckpt["step"] == 1 and ckpt["meta"]["wall_seconds"] >= 1e-6
    assert "time budget of 1e-06s (max_time) reached at step 1" in caplog.text
    assert "training finished at step 1 (epoch 1; time budget 1e-06s spent)" in caplog.text
    # the same command again: nothing to do
    before = (model_dir / "checkpoint_last.pt").stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pasero"):
        assert train_main(["-c", str(cfg_path)]) == 0
    assert "training already finished (step 1): time budget 1e-06s spent" in caplog.text
    assert (model_dir / "checkpoint_last.pt").stat().st_mtime_ns == before
    # no budget: training continues
    assert train_main(["-c", str(cfg_path), "--max-time", "null", "--max-steps", "3"]) == 0
    assert load_checkpoint(model_dir / "checkpoint_last.pt")["step"] == 3


def test_time_budget_is_summed_over_restarts(tmp_path, caplog):
    """A fake clock on which each update takes 10 s: the budget counts the time of earlier runs."""
    cfg = make_corpus(tmp_path)
    base = {**cfg, "max_steps": 1000, "log_interval": 3, "valid_interval": 4, "valid_decode": False,
            "best_metric": "nll"}
    model_dir = Path(cfg["model_dir"])

    def train(max_time: object, reset_if_changed: bool = False, **options: object) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pasero"):
            trainer = Trainer(load_config(None, {**base, "max_time": max_time, **options}),
                              reset_if_changed=reset_if_changed)
            trainer.clock = lambda: 10.0 * trainer.state.step
            assert trainer.run() == 0
        return caplog.text

    log = train(45)  # 50 s after step 5
    assert [(r["type"], r["step"]) for r in rows(model_dir)] == [
        ("train", 3), ("valid", 4), ("train", 5), ("valid", 5)]  # steps 4-5 logged, step 5 validated
    assert rows(model_dir)[2]["loss"] > 0
    ckpt = load_checkpoint(model_dir / "checkpoint_last.pt")
    assert ckpt["step"] == 5 and ckpt["meta"]["wall_seconds"] == 50.0 and (model_dir / "checkpoint_5.pt").is_file()
    assert "time budget of 45s (max_time) reached at step 5" in log
    assert "training already finished (step 5): time budget 45s spent" in train(45)
    # a larger budget continues (also with --reset-if-changed): 50 s spent, 50 s more by step 10
    log = train("1m35s", reset_if_changed=True)
    assert "resumed from" in log and "training from scratch" not in log
    ckpt = load_checkpoint(model_dir / "checkpoint_last.pt")
    assert ckpt["step"] == 10 and ckpt["meta"]["wall_seconds"] == 100.0
    assert [r["step"] for r in rows(model_dir) if r["type"] == "valid"] == [4, 5, 8, 10]
    # max_steps first: its reason is the one logged
    assert "; max_steps 12 reached); best" in train(None, max_steps=12)


def test_training_gives_up_when_every_update_is_non_finite(tmp_path):
    cfg = load_config(write_config(tmp_path / "train.yaml", {**make_corpus(tmp_path), "max_steps": 1000,
                                                             "valid_interval": 500}))
    trainer = Trainer(cfg)
    with torch.no_grad():
        next(trainer.raw_model.parameters()).fill_(float("nan"))  # what a damaged checkpoint would give
    with pytest.raises(TrainingError, match=f"the {MAX_NONFINITE_UPDATES} updates of steps 1-10 all had NaN"):
        trainer.train()
    assert trainer.state.step == MAX_NONFINITE_UPDATES - 1  # it stopped there, not at max_steps
    assert not list(Path(cfg.model_dir).glob("checkpoint*.pt"))  # nothing NaN was saved


def test_a_second_trainer_on_the_same_model_folder_is_refused(tmp_path, capsys):
    """While one pasero-train holds the folder (here: this process, set up and not yet training),
    another exits at once, naming the holder; once the first ends, the folder is free again."""
    cfg_path = write_config(tmp_path / "train.yaml", {**make_corpus(tmp_path), "max_steps": 2})
    first = Trainer(load_config(cfg_path))
    try:
        assert train_main(["-c", str(cfg_path)]) == 2
        err = capsys.readouterr().err
        assert "is being trained by another pasero-train" in err and f"pid {os.getpid()} on " in err
        assert err.count("\n") == 1
    finally:
        first.close()
    assert train_main(["-c", str(cfg_path)]) == 0


def test_a_nan_validation_never_becomes_the_best(tmp_path):
    cfg = load_config(write_config(tmp_path / "train.yaml", make_corpus(tmp_path)))
    trainer = Trainer(cfg)
    try:
        nan = float("nan")
        for step, chrf in ((1, nan), (2, 10.0), (3, nan)):
            trainer.state.step = step
            trainer.validate = lambda chrf=chrf: {"loss": 1.0, "nll": 1.0, "ppl": 2.0, "bleu": chrf, "chrf": chrf}
            trainer.validate_and_save()
            if step == 1:
                assert trainer.state.validations.best is None and trainer.state.validations.bad_validations == 1
        record = trainer.state.validations
        assert (record.best, record.best_step, record.bad_validations) == (10.0, 2, 1)
        assert load_checkpoint(Path(cfg.model_dir) / "checkpoint_best.pt")["step"] == 2
    finally:
        trainer.close()
