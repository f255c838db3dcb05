"""A really full disk (a small tmpfs): one line naming the output, nothing half-written, and the
rerun after freeing space completes. Mounting needs root (as in CI); elsewhere these are skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import make_corpus, write_config

BIN = Path(sys.executable).parent
MESSAGE = "no space left on device; free some space and rerun (nothing was left half-written under its final name)"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs at tmp_path/disk; calling the fixture's value resizes it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)

    yield disk, resize
    subprocess.run(["umount", "-l", str(disk)], check=False)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") and not p.name.endswith(".lock"))


def test_training_on_a_full_disk_names_the_checkpoint_and_resumes_once_there_is_space(tmp_path, small_disk):
    disk, resize = small_disk
    cfg = make_corpus(tmp_path / "data")
    cfg.update(model_dir=str(disk / "model"), max_steps=20)
    config = write_config(tmp_path / "train.yaml", cfg)

    full = run("pasero-train", "-c", str(config), cwd=tmp_path)
    last_line = full.stderr.strip().splitlines()[-1]
    assert full.returncode == 2 and "Traceback" not in full.stderr
    assert last_line == f"pasero-train: error: {disk / 'model' / 'checkpoint_10.pt'}: {MESSAGE}"
    assert not list((disk / "model").glob("*.pt")) and leftovers(disk) == []

    resize("8m")
    again = run("pasero-train", "-c", str(config), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (disk / "model" / "checkpoint_last.pt").is_file() and leftovers(disk) == []

    # decoding into a full disk: the output is named and never left half-written
    (tmp_path / "src.txt").write_text("w1 w2 w3 w4 w5 w6\n" * 20000)
    resize(f"{shutil.disk_usage(disk).used // 1024 + 8}k")
    decode = run("pasero-decode", str(disk / "model"), "-i", str(tmp_path / "src.txt"), "-o",
                 str(disk / "test.hyp"), "--beam-size", "1", cwd=tmp_path)
    assert decode.returncode == 2 and "Traceback" not in decode.stderr
    assert decode.stderr.strip().splitlines()[-1] == f"pasero-decode: error: {disk / 'test.hyp'}: {MESSAGE}"
    assert not (disk / "test.hyp").exists() and leftovers(disk) == []


def test_binarizing_onto_a_full_disk_names_the_output_and_leaves_nothing(tmp_path, small_disk):
    disk, _ = small_disk
    make_corpus(tmp_path / "data")
    (tmp_path / "big.txt").write_text("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10\n" * 20000)
    result = run("pasero-binarize", "--dict", str(tmp_path / "data" / "dict.txt"), "-i", str(tmp_path / "big.txt"),
                 "-o", str(disk / "bin" / "train.de"), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"pasero-binarize: error: {disk / 'bin' / 'train.de'}.bin/.idx: {MESSAGE}"
    assert list((disk / "bin").iterdir()) == []
