"""pasero-decode: files and stdin, buffering, -v lines, --continue, scores and provenance."""

import json
import os
import subprocess
import sys
import threading

import pytest
from decoding_models import save_copy_checkpoint, word_corpus

from pasero import scoring
from pasero.cli.decode import decode_main
from pasero.generator import TextGenerator

LINES = word_corpus(30, seed=11)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_copy_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def expected(model):
    """What the Python API gives for LINES with the model's defaults."""
    return [nbest[0]["detok"] for nbest in TextGenerator.build(model).decode(LINES)]


@pytest.fixture
def data(tmp_path):
    (tmp_path / "test.de").write_text("\n".join(LINES) + "\n")
    (tmp_path / "test.en").write_text("\n".join(LINES) + "\n")  # the model copies: its input is the reference
    return tmp_path


def run(capsys, *argv):
    code = decode_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_file_to_file_with_scores_and_provenance(model, expected, data, capsys):
    code, out, err = run(capsys, model, "-i", data / "test.{src}", data / "test.de", "-o", data / "hyp.{pair}.{tgt}",
                         data / "second.txt", "-r", data / "test.{tgt}", data / "test.en",
                         "--info-out", data / "info.json")
    assert code == 0, err
    assert (data / "hyp.de-en.en").read_text().splitlines() == expected
    assert (data / "second.txt").read_text().splitlines() == expected
    result = scoring.score(expected, LINES)
    assert out == scoring.format_report(result) * 2  # one report per input, sacreBLEU's lines
    assert result["bleu"] > 50
    info = json.loads((data / "info.json").read_text())
    assert info["checkpoint"] == str(model.resolve()) and info["steps"] == [150] and info["train_seconds"] == 12.5
    assert info["params"] > 0 and info["n_lines"] == 2 * len(LINES) and info["decode_seconds"] > 0
    assert info["sentences_per_second"] > 0 and info["decoding"]["beam_size"] == 3
    assert info["scores"][0]["bleu"] == pytest.approx(result["bleu"])


def test_buffering_and_batching_keep_the_input_order(model, expected, data, capsys):
    for options in (["--buffer-size", "4", "--batch-size", "10"], ["--buffer-size", "1"]):
        assert run(capsys, model, "-i", data / "test.de", "-o", data / "out", *options)[0] == 0
        assert (data / "out").read_text().splitlines() == expected


def test_options_override_the_model_defaults(model, data, capsys):
    code, _, _ = run(capsys, model, "-i", data / "test.de", "-o", data / "out", "--beam-size", "1",
                     "--max-len-a", "0", "--max-len-b", "1", "--dtype", "float32", "--device", "cpu")
    assert code == 0
    assert all(len(line.split()) == 1 for line in (data / "out").read_text().splitlines())


def test_verbose_lines(model, expected, data, capsys):
    code, out, _ = run(capsys, model, "-i", data / "test.de", "-v", "--nbest", "2", "-r", data / "test.en",
                       "-o", data / "out")
    assert code == 0
    lines = out.splitlines()
    assert (data / "out").read_text().splitlines() == expected  # the output file gets the best hypothesis
    for kind, count in (("S", 1), ("T", 1), ("H", 2), ("D", 2), ("P", 2)):
        assert sum(line.startswith(f"{kind}-") for line in lines) == count * len(LINES)
    first = [line for line in lines if line.split("\t")[0].endswith("-0")]
    assert first[0] == f"S-0\t{TextGenerator.build(model).tokenize(LINES[0])}"
    assert first[1] == f"T-0\t{LINES[0]}"
    _, score, pieces = first[2].split("\t")
    _, dscore, detok = first[3].split("\t")
    positional = [float(x) for x in first[4].split("\t")[1].split()]
    assert detok == expected[0] and dscore == score and len(positional) == len(pieces.split()) + 1
    # H scores are fairseq's: length-normalized, base 2.
    assert float(score) == pytest.approx(sum(positional) / len(positional), abs=1e-3)
    # Without -o, stdout carries only the -v lines.
    _, out, _ = run(capsys, model, "-i", data / "test.de", "-v")
    assert all(line[:2] in ("S-", "H-", "D-", "P-") for line in out.splitlines())


def test_continue_resumes_a_partial_output(model, expected, data, capsys):
    out = data / "out"
    out.write_text("\n".join(expected[:7]) + "\n" + "half a li")  # a job killed in the middle of a line
    assert run(capsys, model, "-i", data / "test.de", "-o", out, "--continue", "--info-out", data / "i.json")[0] == 0
    assert out.read_text().splitlines() == expected
    info = json.loads((data / "i.json").read_text())
    assert info["n_lines"] == len(LINES) and info["n_lines_decoded"] == len(LINES) - 7
    assert run(capsys, model, "-i", data / "test.de", "-o", out, "--continue")[0] == 0  # complete: nothing to do
    assert out.read_text().splitlines() == expected
    out.write_text("\n".join(expected + ["extra"]) + "\n")
    code, _, err = run(capsys, model, "-i", data / "test.de", "-o", out, "--continue")
    assert code == 2 and "more lines" in err


@pytest.mark.parametrize("case", ["bad_utf8", "missing_input", "outputs", "continue", "ref_lines", "no_model",
                                  "placeholder"])
def test_errors_are_one_line_and_leave_no_output(model, data, capsys, case):
    args = [model, "-i", data / "test.de", "-o", data / "out"]
    if case == "bad_utf8":
        (data / "test.de").write_bytes(("\n".join(LINES[:12]) + "\n").encode() + b"caf\xe9\n")
        args += ["--buffer-size", "5"]  # fails after two buffers were written to the temporary file
    elif case == "missing_input":
        args[2] = data / "nope.de"
    elif case == "outputs":
        args += [data / "out2"]
    elif case == "continue":
        args = [model, "--continue"]
    elif case == "ref_lines":
        (data / "test.en").write_text("one line\n")
        args += ["-r", data / "test.en"]
    elif case == "no_model":
        args[0] = data / "missing_model"
    elif case == "placeholder":
        args += ["-s", "fr", "-t", "it"]
        args[2] = data / "test.{src}"
    code, _, err = run(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "error:" in err
    expected = {"bad_utf8": "test.de:13", "missing_input": "nope.de", "outputs": "-o", "continue": "-o",
                "ref_lines": "test.en", "no_model": "missing_model", "placeholder": "test.fr"}[case]
    assert expected in err
    assert sorted(p.name for p in data.iterdir()) == ["test.de", "test.en"]


def test_stdin_streaming_is_interactive_with_buffer_size_one(model, expected):
    """Each line is translated as soon as it arrives (the input stays open)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pasero.cli.decode", str(model), "--buffer-size", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    timer = threading.Timer(120, proc.kill)
    timer.start()
    try:
        answers = []
        for line in LINES[:2]:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            answers.append(proc.stdout.readline().rstrip("\n"))
        proc.stdin.close()
        assert proc.wait() == 0
    finally:
        timer.cancel()
        proc.kill()
    assert answers == expected[:2]


def test_stdin_to_stdout_in_buffers(model, expected, monkeypatch, capsys, tmp_path):
    data = tmp_path / "in"
    data.write_text("\n".join(LINES) + "\n")
    with open(data, "rb") as f:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": f, "isatty": lambda self: False})())
        code, out, _ = run(capsys, model, "--buffer-size", "7")
    assert code == 0 and out.splitlines() == expected


def test_a_model_with_nan_weights_is_a_one_line_error(model, data, tmp_path, capsys):
    import torch

    ckpt = torch.load(model, weights_only=True)
    name = next(iter(ckpt["model"]))
    ckpt["model"][name].view(-1)[0] = float("nan")
    broken = tmp_path / "nan" / "model.pt"
    broken.parent.mkdir()
    torch.save(ckpt, broken)
    code, _, err = run(capsys, broken, "-i", data / "test.de", "-o", tmp_path / "out.en")
    assert code != 0 and err.count("\n") == 1
    assert "weights hold NaN or inf values" in err and str(broken) in err and name in err
    assert not (tmp_path / "out.en").exists()


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end of the terminal is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_progress_bar_on_a_terminal_and_none_in_a_log_file(model, data):
    """Decoding a file shows sentences, sentences/s and an ETA on a terminal; a log file (Snakemake's,
    a SLURM job's) gets no redraws: its summary line (and, in a long decoding, a line every 30 s)."""
    import fcntl
    import pty
    import struct
    import termios

    argv = [sys.executable, "-m", "pasero.cli.decode", str(model), "-i", str(data / "test.de"), "-o",
            str(data / "hyp.txt"), "--batch-size", "60"]
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal of 100 columns
    proc = subprocess.Popen(argv, stderr=child, stdout=subprocess.DEVNULL)
    os.close(child)
    terminal = read_all(parent).decode("utf-8", "replace")
    assert proc.wait() == 0, terminal
    os.close(parent)
    assert f"{len(LINES)}/{len(LINES)}" in terminal and "sent/s" in terminal and "\r" in terminal
    with open(data / "decode.log", "w") as log:
        assert subprocess.run(argv, stderr=log, stdout=subprocess.DEVNULL).returncode == 0
    logged = (data / "decode.log").read_text()
    assert "\r" not in logged and "%|" not in logged and f"translated {len(LINES)} lines" in logged
