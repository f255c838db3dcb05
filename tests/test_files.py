"""Atomic outputs: a killed writer leaves its temporary file, which the next write removes."""

import os
import signal
import subprocess
import sys

from pasero.files import atomic_output


def test_a_killed_writer_s_temporary_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "test.hyp"
    writer = ("import os, signal; from pasero.files import atomic_output\n"
              f"with atomic_output({str(target)!r}) as f:\n"
              "    f.write('partial'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", writer]).returncode == -signal.SIGKILL
    (left,) = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert left.startswith(".test.hyp.") and not target.exists()
    (tmp_path / ".other.hyp.abcdefgh.tmp").write_text("another output's")  # not ours: kept

    with atomic_output(target) as f:
        f.write("done\n")
    assert sorted(os.listdir(tmp_path)) == [".other.hyp.abcdefgh.tmp", "test.hyp"]
    assert target.read_text() == "done\n"


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import errno

    from pasero.cli.score import score_main

    (tmp_path / "hyp").write_text("a b c\n")
    (tmp_path / "ref").write_text("a b c\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    bleu = tmp_path / "bleu.txt"
    code = score_main(["-H", str(tmp_path / "hyp"), "-r", str(tmp_path / "ref"), "-o", str(bleu)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{bleu}: no space left on device; free some space and rerun" in err
    assert sorted(os.listdir(tmp_path)) == ["hyp", "ref"]  # no bleu.txt, no temporary file
