"""Data-preparation figures on a large corpus: tokenizer training, tokenization, binarization.

    python bench/data.py [--pairs 1000000] [--workers 2] [--corpus DIR_WITH_train.de_train.en] [--keep DIR]

Runs the real commands (pasero-build-tokenizer, pasero-tokenize, pasero-build-dict,
pasero-binarize) one after the other as subprocesses and prints, for each, its wall-clock
time, its throughput and its peak memory: the largest resident set of one process
(`maxrss`) and the largest sum over the command and its worker processes (`tree`, sampled
every 50 ms). The default corpus is the toy corpus (pasero.toy) with 1M training pairs;
the binarization of pre-tokenized text is the step to compare with fairseq-preprocess.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 if psutil is missing)."""
    try:
        import psutil
    except ImportError:
        return 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def run(command: list, log: Path) -> tuple[float, float, float]:
    """Run a command -> (seconds, peak single-process RSS MiB, peak tree RSS MiB)."""
    start = time.perf_counter()
    with open(log, "wb") as stderr:
        process = subprocess.Popen([str(c) for c in command], stdout=subprocess.DEVNULL, stderr=stderr)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4 gives this command's own usage: maxrss of it or of its largest worker process.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode:
        sys.exit(f"{command[0]} failed with exit code {process.returncode}:\n{log.read_text()}")
    return seconds, usage.ru_maxrss / 1024, peak / 2**20


def generate(directory: Path, pairs: int) -> None:
    """The toy corpus, written by a subprocess so that its memory is not counted."""
    code = (
        "import sys; from pasero import toy\n"
        f"corpus = toy.generate(1, {{'train': {pairs}, 'valid': 10, 'test': 10}})['train']\n"
        f"for i, lang in enumerate(('de', 'en')):\n"
        f"    with open(r'{directory}/train.' + lang, 'w', encoding='utf-8') as f:\n"
        "        f.writelines(pair[i] + '\\n' for pair in corpus)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000, help="toy training pairs to generate")
    parser.add_argument("--corpus", type=Path, help="folder with train.de and train.en instead of the toy corpus")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--sample-size", type=int, default=1_000_000, help="tokenizer training lines")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="pasero-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.corpus:
            text = args.corpus
        else:
            text = work
            start = time.perf_counter()
            generate(work, args.pairs)
            print(f"generated {args.pairs} toy pairs in {time.perf_counter() - start:.1f}s", flush=True)
        src, tgt = text / "train.de", text / "train.en"
        lines = sum(1 for _ in open(src, "rb"))
        size = (src.stat().st_size + tgt.stat().st_size) / 2**20
        print(f"corpus: {lines} pairs, {size:.0f} MiB; workers: {args.workers}; cpus: {os.cpu_count()}\n", flush=True)
        tok, dict_txt = work / "tokenizer", work / "dict.txt"
        steps = [
            ("build-tokenizer", 2 * lines, [BIN / "pasero-build-tokenizer", "-i", src, tgt, "-o", tok,
                                            "--vocab-size", args.vocab_size, "--inline-case",
                                            "--sample-size", args.sample_size]),
            ("tokenize (1 process)", lines,
             [BIN / "pasero-tokenize", tok, "-i", src, "-o", work / "train.tok.de"]),
            ("build-dict", 2 * lines, [BIN / "pasero-build-dict", "-i", src, tgt, "--tokenizer", tok,
                                       "-o", dict_txt, "--workers", args.workers]),
            ("binarize raw text", lines, [BIN / "pasero-binarize", "--dict", dict_txt, "--tokenizer", tok,
                                          "-i", src, "-o", work / "bin" / "train.de-en.de",
                                          "--workers", args.workers]),
            ("binarize tokenized text", lines, [BIN / "pasero-binarize", "--dict", dict_txt,
                                                "-i", work / "train.tok.de", "-o", work / "bin" / "tok.de-en.de",
                                                "--workers", args.workers]),
        ]
        # The load average tells whether other work shared the CPUs during a step.
        print(f"{'step':<26}{'seconds':>9}{'lines/s':>11}{'maxrss MiB':>12}{'tree MiB':>10}{'load':>7}")
        for i, (name, n, command) in enumerate(steps):
            seconds, maxrss, tree = run(command, work / f"step{i}.log")
            load = os.getloadavg()[0]
            print(f"{name:<26}{seconds:>9.1f}{n / seconds:>11.0f}{maxrss:>12.0f}{tree:>10.0f}{load:>7.1f}",
                  flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
