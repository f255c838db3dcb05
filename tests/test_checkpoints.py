"""Checkpoint files: weights_only loading, fallback from a corrupt one, pruning, averaging, RNG states."""

from __future__ import annotations

import logging
import random
import shutil

import numpy as np
import pytest
import torch
from train_helpers import make_corpus, write_config

from pasero import checkpoints
from pasero.cli.train import average_main, train_main
from pasero.distributed import env_info, first_host
from pasero.errors import CheckpointError
from pasero.train_config import load_config
from pasero.training import Trainer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 30-step run with validation every 10 steps and every checkpoint kept."""
    root = tmp_path_factory.mktemp("run")
    cfg = make_corpus(root)
    cfg_path = write_config(root / "train.yaml", {**cfg, "keep_last": 0})
    assert train_main(["-c", str(cfg_path)]) == 0
    return root / "model"


def test_checkpoints_load_weights_only_and_hold_the_training_state(run_dir):
    ckpt = torch.load(run_dir / "checkpoint_20.pt", weights_only=True)
    assert {"model", "model_config", "arch", "dictionary", "tokenizer", "inference", "optimizer", "scheduler",
            "scaler", "rng", "data_state", "step", "epoch", "metrics", "train_config", "meta"} <= set(ckpt)
    assert ckpt["step"] == 20 and ckpt["data_state"]["epoch"] == ckpt["epoch"]
    assert ckpt["metrics"]["valid"]["step"] == 20 and set(ckpt["metrics"]["history"]) == {10, 20}
    best = checkpoints.load_checkpoint(run_dir / "checkpoint_best.pt")
    assert best["step"] == best["metrics"]["best_step"]
    model, loaded = checkpoints.load_model(run_dir, "cpu")  # a folder: checkpoint_best.pt
    assert loaded["step"] == best["step"] and not model.training


def test_rng_state_round_trip():
    state = checkpoints.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(1)
    buffer = __import__("io").BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    checkpoints.set_rng_state(torch.load(buffer, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_corrupt_last_checkpoint_falls_back_with_a_warning(run_dir, tmp_path, caplog):
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)
    (model_dir / "checkpoint_last.pt").unlink()
    data = (model_dir / "checkpoint_30.pt").read_bytes()
    (model_dir / "checkpoint_last.pt").write_bytes(data[: len(data) // 2])  # truncated by a full disk
    with caplog.at_level(logging.WARNING):
        ckpt, path = checkpoints.load_resume_checkpoint(model_dir)
    assert path.name == "checkpoint_30.pt" and ckpt["step"] == 30
    assert "corrupt or truncated" in caplog.text and "checkpoint_last.pt" in caplog.text
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        checkpoints.load_checkpoint(model_dir / "checkpoint_last.pt")
    # training resumes from the fallback (here: already finished) instead of failing
    cfg = load_config(model_dir / "config.yaml", {"model_dir": str(model_dir)})
    trainer = Trainer(cfg)
    assert trainer.run() == 0 and trainer.state.step == 30


def test_keep_last_and_keep_best_prune_step_checkpoints(tmp_path):
    ckpt = {"model": {"w": torch.zeros(1)}, "step": 0}
    history = {}
    for step, metric in [(1, 5.0), (2, 1.0), (3, 4.0), (4, 3.0), (5, 6.0)]:
        history[step] = metric
        checkpoints.save_checkpoint({**ckpt, "step": step}, tmp_path, keep_last=2, keep_best=1, history=history,
                                    is_best=step == 2)
    assert [s for s, _ in checkpoints.step_checkpoints(tmp_path)] == [2, 4, 5]
    assert checkpoints.load_checkpoint(tmp_path / "checkpoint_best.pt")["step"] == 2
    assert checkpoints.load_checkpoint(tmp_path / "checkpoint_last.pt")["step"] == 5


def test_average_last_and_best(run_dir, tmp_path):
    out = tmp_path / "avg.pt"
    assert average_main([str(run_dir), "-o", str(out), "--last", "2"]) == 0
    avg = torch.load(out, weights_only=True)
    a, b = (checkpoints.load_checkpoint(run_dir / f"checkpoint_{s}.pt")["model"] for s in (20, 30))
    for name, tensor in avg["model"].items():
        torch.testing.assert_close(tensor, (a[name] + b[name]) / 2)
    assert avg["meta"]["steps"] == [20, 30] and avg["meta"]["params"] > 0 and "optimizer" not in avg
    assert avg["meta"]["train_seconds"] == pytest.approx(
        checkpoints.load_checkpoint(run_dir / "checkpoint_30.pt")["meta"]["train_seconds"])

    assert average_main([str(run_dir), "-o", str(out), "--best", "1"]) == 0
    best = torch.load(out, weights_only=True)
    reference = checkpoints.load_checkpoint(run_dir / "checkpoint_best.pt")
    assert best["meta"]["steps"] == [reference["step"]]
    assert all(torch.equal(best["model"][k], v) for k, v in reference["model"].items())
    model, _ = checkpoints.load_model(out, "cpu")
    assert model.num_parameters() == reference["meta"]["params"]
    # by another metric: the lowest valid loss
    chosen = checkpoints.select_checkpoints(run_dir, best=2, metric="loss")
    losses = {s: checkpoints.load_checkpoint(p)["metrics"]["valid"]["loss"] for s, p in
              checkpoints.step_checkpoints(run_dir)}
    assert [p.name for p in chosen] == [f"checkpoint_{s}.pt" for s in sorted(losses, key=losses.get)[:2]]


def test_average_of_an_empty_folder_is_a_one_line_error(tmp_path, capsys):
    assert average_main([str(tmp_path), "-o", str(tmp_path / "model.pt")]) == 2
    assert "no checkpoint_{step}.pt files" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists()


def test_distributed_environment():
    assert first_host("gpu[07-09,12],cpu1") == "gpu07"
    assert first_host("node1,node2") == "node1"
    assert first_host("n[1-2]-ib") == "n1-ib"
    slurm = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"}
    assert env_info(slurm) == env_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert env_info(slurm).rank == 3 and not env_info(slurm).is_master
    assert env_info({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).world_size == 1


def _flip_byte_in_largest_member(path):
    """Flip one byte in the middle of the largest tensor's data (not a zip header or directory)."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    header = info.header_offset
    name_len, extra_len = int.from_bytes(data[header + 26:header + 28], "little"), \
        int.from_bytes(data[header + 28:header + 30], "little")
    offset = header + 30 + name_len + extra_len + info.file_size // 2
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))
    return info.filename


def test_a_flipped_byte_is_a_corrupt_checkpoint_and_resume_falls_back(run_dir, tmp_path, caplog):
    model_dir = tmp_path / "model"
    shutil.copytree(run_dir, model_dir)  # copies: the hard links of checkpoint_last/best are broken
    (model_dir / "checkpoint_last.pt").unlink()
    member = _flip_byte_in_largest_member(model_dir / "checkpoint_30.pt")
    torch.load(model_dir / "checkpoint_30.pt", weights_only=True)  # torch alone does not notice
    with pytest.raises(CheckpointError) as error:
        checkpoints.load_checkpoint(model_dir / "checkpoint_30.pt")
    message = str(error.value)
    assert "\n" not in message and str(model_dir / "checkpoint_30.pt") in message
    assert "corrupt or truncated" in message and member in message
    with caplog.at_level(logging.WARNING):
        ckpt, path = checkpoints.load_resume_checkpoint(model_dir)
    assert path.name == "checkpoint_20.pt" and ckpt["step"] == 20 and "checkpoint_30.pt" in caplog.text
    with pytest.raises(CheckpointError, match="checkpoint_30.pt: corrupt"):
        checkpoints.average_checkpoints([model_dir / "checkpoint_20.pt", model_dir / "checkpoint_30.pt"])


def _save_run(model_dir, metrics, keep_last=2, keep_best=0, weights=None):
    """A run whose validations gave `metrics` (nll, one per step); weights of step s are all s."""
    history, best = {}, None
    for step, value in enumerate(metrics, start=1):
        history[step] = value
        improved = best is None or value < best
        best = value if improved else best
        w = torch.full((2,), float(step)) if weights is None else weights(step)
        ckpt = {"model": {"w": w}, "step": step, "meta": {"params": 2}, "train_config": {"best_metric": "nll"},
                "metrics": {"history": dict(history), "valid": {"nll": value, "step": step}}}
        checkpoints.save_checkpoint(ckpt, model_dir, keep_last=keep_last, keep_best=keep_best, history=history,
                                    is_best=improved)


def test_nonfinite_metrics_rank_last_and_nonfinite_weights_are_refused(tmp_path, capsys):
    assert checkpoints.rank_steps({1: float("nan"), 2: 3.0, 3: float("-inf"), 4: 2.0, 5: 2.0}, True) == [4, 5, 2, 1, 3]
    assert checkpoints.rank_steps({1: float("nan"), 2: 3.0, 3: float("inf"), 4: 2.0}, False)[:2] == [2, 4]
    def nan_at_3(step):
        return torch.full((2,), float("nan") if step == 3 else float(step))
    _save_run(tmp_path, [4.0, float("nan"), float("nan"), 3.0], keep_last=0, weights=nan_at_3)
    assert [p.name for p in checkpoints.select_checkpoints(tmp_path, best=3)] == \
        ["checkpoint_4.pt", "checkpoint_1.pt", "checkpoint_2.pt"]
    out = tmp_path / "model.pt"
    assert average_main([str(tmp_path), "-o", str(out), "--last", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "checkpoint_3.pt: NaN or inf in the weights (w)" in err and not out.exists()


def test_best_selection_follows_the_recorded_history_not_the_files_left(tmp_path, capsys):
    # the best validation (step 2) is older than the keep_last 2 newest
    _save_run(tmp_path, [5.0, 1.0, 4.0, 3.0, 6.0], keep_last=2, keep_best=0)
    assert [s for s, _ in checkpoints.step_checkpoints(tmp_path)] == [2, 4, 5]  # the best step is kept
    (tmp_path / "checkpoint_2.pt").unlink()  # as older versions pruned it: checkpoint_best.pt remains
    out = tmp_path / "model.pt"
    assert average_main([str(tmp_path), "-o", str(out), "--best", "1"]) == 0
    model = torch.load(out, weights_only=True)
    assert model["meta"]["steps"] == [2] and torch.equal(model["model"]["w"], torch.full((2,), 2.0))
    assert average_main([str(tmp_path), "-o", str(out), "--best", "2"]) == 0  # steps 2 (best.pt) and 4
    model = torch.load(out, weights_only=True)
    assert model["meta"]["steps"] == [2, 4] and torch.equal(model["model"]["w"], torch.full((2,), 3.0))
    capsys.readouterr()
    assert average_main([str(tmp_path), "-o", str(out), "--best", "3"]) == 2  # steps 2, 4, 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "checkpoint_2.pt" not in err and "checkpoint_4.pt" not in err
    assert "the 3 best checkpoints by nll include checkpoint_3.pt, deleted by keep_last; train with keep_best: 3" in err


def test_keep_best_keeps_what_best_selection_needs(tmp_path):
    _save_run(tmp_path, [5.0, 1.0, 4.0, 3.0, 6.0, 7.0, 8.0], keep_last=2, keep_best=2)
    assert [s for s, _ in checkpoints.step_checkpoints(tmp_path)] == [2, 4, 6, 7]
    assert [p.name for p in checkpoints.select_checkpoints(tmp_path, best=2)] == ["checkpoint_2.pt", "checkpoint_4.pt"]


class _RunsCode:
    """What a malicious checkpoint hides: unpickling it would call os.system."""

    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


def test_a_checkpoint_that_would_run_code_is_refused_as_such(tmp_path, monkeypatch):
    import pytest

    from pasero.checkpoints import load_checkpoint
    from pasero.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint_last.pt"
    torch.save({"model": {}, "payload": _RunsCode()}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "refused: it asks to load the Python object" in message and "system" in message
    assert "weights_only=False" not in message and "corrupt" not in message
    assert not (tmp_path / "pwned").exists()
