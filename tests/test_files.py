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
