"""pasero side by side with fairseq 0.12.2 and CTranslate2 on the same data, model and settings.

    python bench/peers/side_by_side.py [--work /work/peers/sbs] [--updates 30] [--fairseq-venv DIR]

Needs the fairseq virtual environment of bench/peers/build_fairseq.sh (fairseq, CTranslate2) and
pasero's own (the `pasero-*` commands of REPO/.venv/bin, or --pasero-bin). The script itself needs
only the standard library: every tool runs as a subprocess, with OMP_NUM_THREADS=--threads (1).

Data: the toy pipeline's de-en experiment (`results/toy/de-en` of a copy of the workflow in
WORK/pipeline, built with Snakemake when missing; or --experiment DIR): its SentencePiece model,
dict.txt and binarized train/valid splits. fairseq reads pasero's very .bin/.idx files (fairseq's
mmap format) through symbolic links, with dict.txt as dict.{src,tgt}.txt; the test source is
binarized for fairseq-generate and tokenized for CTranslate2 with the same tokenizer and dictionary.

Measured, one figure per row of the Markdown table printed at the end:
- binarization: pasero-binarize (both languages) vs fairseq-preprocess on the same tokenized training
  text (repeated --binarize-repeat times), --binarize-workers workers each; the outputs must be
  byte-identical;
- training: target tokens/s (padding excluded, fairseq's `wps`) of the same model (3+3 layers, d256,
  ffn 1024, 4 heads, shared embeddings: transformer_small / transformer_iwslt_de_en made smaller;
  `--model full` for the unchanged transformer_iwslt_de_en) with the same batches (4096 tokens) and
  recipe (Adam 0.9/0.98, inverse_sqrt lr 5e-4 with 4000 warm-up steps from 1e-7, label smoothing
  0.1, dropout 0.3), for --updates updates; pasero and fairseq train at the same time, one thread
  each, the first log interval (--log-interval updates) left out as warm-up. Round 1: pasero
  float32 with fairseq fp32; round 2: pasero --dtype auto (bf16 autocast on CPUs with AVX512-BF16 or
  AMX) with fairseq --bf16, or with fairseq fp32 again where fairseq refuses --bf16 on CPU;
- decoding: sentences/s and target tokens/s (eos included) on the test source, beam 5 and greedy,
  each tool with its own model of round 1: pasero-decode (--dtype float32 and auto), fairseq-generate
  (fp32: it has no bf16 on CPU) and CTranslate2 on the fairseq model converted (float32, and int8
  as a reference). Batches of 4096 padded source tokens for all (fairseq --max-tokens), at most
  int(1.2 * source length + 10) output tokens. Each tool's own timer (model loading excluded; pasero's
  includes tokenization and detokenization), one decoder at a time; the CTranslate2 hypotheses are
  compared with fairseq's (the same weights: they should agree). --decode-rounds N runs every
  decoder N times, interleaved, and keeps each one's fastest run (the least slowed down by other
  work on the machine); --baseline-bin DIR adds the pasero-decode of another install (e.g. of the
  previous commit: the speed-up of a change, measured in the same run), its hypotheses compared with
  the current pasero's. (A wrapper script that points PYTHONPATH at another checkout must run
  `python -P`: the commands run from the current folder, whose pasero/ would be imported first.)

After a few updates the models are far from trained and most hypotheses run to the length limit,
so the decoding figures compare search speed at equal output lengths (the table shows the mean
length), not on realistic translations.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

SMALL = dict(embed_dim=256, ffn_dim=1024, layers=3, heads=4)  # transformer_small made smaller
FULL = dict(embed_dim=512, ffn_dim=1024, layers=6, heads=4)  # transformer_small = transformer_iwslt_de_en
RECIPE = dict(batch_tokens=4096, lr=5e-4, beta1=0.9, beta2=0.98, warmup=4000, warmup_init_lr=1e-7,
              label_smoothing=0.1, dropout=0.3, seed=1)
SEARCH = dict(batch_tokens=4096, max_len_a=1.2, max_len_b=10)


@dataclass
class Setup:
    work: Path
    exp: Path  # a pipeline experiment: tokenizer/, dict.txt, bin/, text/
    src: str
    tgt: str
    pasero_bin: Path
    fairseq_venv: Path
    model: dict
    threads: int

    @property
    def fairseq_bin(self) -> Path:
        return self.fairseq_venv / "bin"

    @property
    def fairseq_data(self) -> Path:
        return self.work / "fairseq-data"

    @property
    def pair(self) -> str:
        return f"{self.src}-{self.tgt}"


@dataclass
class Row:
    what: str
    tool: str
    dtype: str
    setting: str
    value: float | None
    unit: str
    note: str = ""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def environment(setup: Setup) -> dict[str, str]:
    threads = str(setup.threads)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",  # fairseq checkpoints are pickles (torch >= 2.6)
            "PYTHONWARNINGS": "ignore"}


def start(setup: Setup, command: list, log_path: Path, stdout: Path | None = None) -> subprocess.Popen:
    """Start a command: stderr (and stdout unless `stdout` is given) to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as err, open(stdout, "w") if stdout else contextlib.nullcontext(err) as out:
        return subprocess.Popen([str(c) for c in command], stdout=out, stderr=err, env=environment(setup))


def finish(process: subprocess.Popen, log_path: Path, check: bool = True) -> int:
    rc = process.wait()
    if rc and check:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"{' '.join(map(str, process.args))}\nfailed with exit code {rc}; {log_path}:\n{tail}")
    return rc


def run(setup: Setup, command: list, log_path: Path, stdout: Path | None = None, check: bool = True
        ) -> tuple[int, float]:
    """Run a command to its end -> (exit code, wall-clock seconds)."""
    begin = time.perf_counter()
    rc = finish(start(setup, command, log_path, stdout), log_path, check)
    return rc, time.perf_counter() - begin


# --- data -------------------------------------------------------------------------------------


def ensure_toy_experiment(setup: Setup) -> None:
    """Build the toy pipeline's tokenizer, dictionary and binarized splits (Snakemake) when missing."""
    bins = [setup.exp / "bin" / f"{split}.{setup.pair}.{lang}.bin"
            for split in ("train", "valid") for lang in (setup.src, setup.tgt)]
    if all(p.exists() for p in bins):
        return
    pipeline = setup.work / "pipeline"
    for name in ("workflow", "rules", "config", "profiles"):
        if not (pipeline / name).exists():
            shutil.copytree(REPO / name, pipeline / name)
    targets = [str(p.relative_to(pipeline)) for p in bins]
    log(f"building the toy experiment with Snakemake in {pipeline}")
    env = {**os.environ, "PATH": f"{setup.pasero_bin}{os.pathsep}{os.environ['PATH']}"}
    log_path = setup.work / "logs" / "snakemake.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as out:
        if subprocess.run([setup.pasero_bin / "snakemake", "--profile", REPO / "profiles" / "local", *targets],
                          cwd=pipeline, env=env, stdout=out, stderr=out).returncode:
            raise SystemExit(f"the toy pipeline failed: {log_path}")


def prepare_data(setup: Setup) -> None:
    """fairseq's data folder (links to pasero's binarized files), the binarized and tokenized test source."""
    data = setup.fairseq_data
    data.mkdir(parents=True, exist_ok=True)
    for path in (setup.exp / "bin").glob(f"*.{setup.pair}.*"):
        link = data / path.name
        if not link.exists():
            link.symlink_to(path)
    for lang in (setup.src, setup.tgt):
        link = data / f"dict.{lang}.txt"
        if not link.exists():
            link.symlink_to(setup.exp / "dict.txt")
        prefix = data / f"test.{setup.pair}.{lang}"
        if not Path(f"{prefix}.bin").exists():
            run(setup, [setup.pasero_bin / "pasero-binarize", "--dict", setup.exp / "dict.txt", "--tokenizer",
                        setup.exp / "tokenizer", "-i", setup.exp / "text" / f"test.{lang}", "-o", prefix,
                        "--workers", "1"], setup.work / "logs" / f"binarize.test.{lang}.log")
    tokenize(setup, setup.exp / "text" / f"test.{setup.src}", setup.work / "test.tok", "tokenize.test")


def tokenize(setup: Setup, text: Path, out: Path, name: str) -> None:
    if not out.exists():
        run(setup, [setup.pasero_bin / "pasero-tokenize", setup.exp / "tokenizer", "-i", text, "-o", out],
            setup.work / "logs" / f"{name}.log")


# --- binarization -----------------------------------------------------------------------------


def binarization(setup: Setup, repeat: int, workers: int) -> list[Row]:
    root = setup.work / "binarize"
    prefix = root / "text" / "train"
    for lang in (setup.src, setup.tgt):
        tokenized = root / "text" / f"once.{lang}"
        tokenized.parent.mkdir(parents=True, exist_ok=True)
        tokenize(setup, setup.exp / "text" / f"train.{lang}", tokenized, f"tokenize.train.{lang}")
        Path(f"{prefix}.{lang}").write_text(tokenized.read_text() * repeat)
    pairs = Path(f"{prefix}.{setup.src}").read_text().count("\n")
    for out in ("pasero", "fairseq"):
        shutil.rmtree(root / out, ignore_errors=True)
        (root / out).mkdir()
    log(f"binarization: {pairs} pairs, {workers} worker(s)")
    pasero_seconds = 0.0
    for lang in (setup.src, setup.tgt):
        pasero_seconds += run(setup, [
            setup.pasero_bin / "pasero-binarize", "--dict", setup.exp / "dict.txt", "-i", f"{prefix}.{lang}",
            "-o", root / "pasero" / f"train.{setup.pair}.{lang}", "--workers", workers],
            root / f"pasero.{lang}.log")[1]
    _, fairseq_seconds = run(setup, [
        setup.fairseq_bin / "fairseq-preprocess", "--source-lang", setup.src, "--target-lang", setup.tgt,
        "--trainpref", prefix, "--srcdict", setup.exp / "dict.txt", "--tgtdict", setup.exp / "dict.txt",
        "--destdir", root / "fairseq", "--workers", workers, "--dataset-impl", "mmap"], root / "fairseq.log")
    same = all(filecmp.cmp(root / "pasero" / name, root / "fairseq" / name, shallow=False)
               for lang in (setup.src, setup.tgt) for name in (f"train.{setup.pair}.{lang}.bin",
                                                               f"train.{setup.pair}.{lang}.idx"))
    note = f"{pairs:,} pairs, {workers} worker(s), whole commands; outputs {'identical' if same else 'DIFFER'}"
    return [Row("binarize", "pasero-binarize", "-", "2 languages", pairs / pasero_seconds, "pairs/s",
                f"{pasero_seconds:.1f} s; {note}"),
            Row("binarize", "fairseq-preprocess", "-", "2 languages", pairs / fairseq_seconds, "pairs/s",
                f"{fairseq_seconds:.1f} s")]


# --- training ---------------------------------------------------------------------------------


def pasero_train_command(setup: Setup, dtype: str, updates: int, interval: int, model_dir: Path) -> list:
    m, r = setup.model, RECIPE
    return [setup.pasero_bin / "pasero-train", "--reset", "--data-dir", setup.exp / "bin",
            "--dict", setup.exp / "dict.txt", "--tokenizer", setup.exp / "tokenizer", "--model-dir", model_dir,
            "-s", setup.src, "-t", setup.tgt, "--arch", "transformer_small", "--embed-dim", m["embed_dim"],
            "--ffn-dim", m["ffn_dim"], "--encoder-layers", m["layers"], "--decoder-layers", m["layers"],
            "--heads", m["heads"], "--shared-embeddings", "true", "--batch-size", r["batch_tokens"],
            "--optimizer", "adam", "--adam-betas", f"[{r['beta1']}, {r['beta2']}]", "--lr", r["lr"],
            "--lr-scheduler", "inverse_sqrt", "--warmup", r["warmup"], "--warmup-init-lr", r["warmup_init_lr"],
            "--label-smoothing", r["label_smoothing"], "--dropout", r["dropout"], "--seed", r["seed"],
            "--max-steps", updates, "--log-interval", interval, "--valid-interval", 10**9,
            "--valid-decode", "false", "--best-metric", "nll", "--tensorboard", "false", "--device", "cpu",
            "--dtype", dtype]


def fairseq_train_command(setup: Setup, bf16: bool, updates: int, interval: int, save_dir: Path) -> list:
    m, r = setup.model, RECIPE
    return [setup.fairseq_bin / "fairseq-train", setup.fairseq_data, "-s", setup.src, "-t", setup.tgt,
            "--arch", "transformer_iwslt_de_en", "--share-all-embeddings",
            "--encoder-embed-dim", m["embed_dim"], "--decoder-embed-dim", m["embed_dim"],
            "--encoder-ffn-embed-dim", m["ffn_dim"], "--decoder-ffn-embed-dim", m["ffn_dim"],
            "--encoder-layers", m["layers"], "--decoder-layers", m["layers"],
            "--encoder-attention-heads", m["heads"], "--decoder-attention-heads", m["heads"],
            "--max-tokens", r["batch_tokens"], "--optimizer", "adam",
            "--adam-betas", f"({r['beta1']}, {r['beta2']})", "--lr", r["lr"], "--lr-scheduler", "inverse_sqrt",
            "--warmup-updates", r["warmup"], "--warmup-init-lr", r["warmup_init_lr"],
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", r["label_smoothing"],
            "--dropout", r["dropout"], "--seed", r["seed"], "--max-update", updates, "--log-interval", interval,
            "--log-format", "json", "--num-workers", "0", "--save-dir", save_dir, "--no-epoch-checkpoints",
            "--cpu", *(["--bf16"] if bf16 else [])]


def throughput(intervals: list[tuple[int, float, float]]) -> float | None:
    """Target tokens/s over the log intervals but the first: (updates, tokens per update, tokens/s)."""
    timed = intervals[1:]
    tokens = sum(n * per_update for n, per_update, _ in timed)
    seconds = sum(n * per_update / rate for n, per_update, rate in timed)
    return tokens / seconds if seconds else None


def pasero_intervals(model_dir: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["type"] == "train"]
    steps = [0] + [r["step"] for r in rows]
    return [(step - previous, r["ntokens"], r["tokens_per_s"])
            for previous, step, r in zip(steps, steps[1:], rows, strict=False)]


def fairseq_intervals(log_path: Path) -> list[tuple[int, float, float]]:
    rows = [json.loads(line.split("| train_inner | ", 1)[1])
            for line in log_path.read_text().splitlines() if "| train_inner | " in line]
    updates = [0] + [int(r["num_updates"]) for r in rows]
    return [(u - previous, float(r["wpb"]), float(r["wps"]))
            for previous, u, r in zip(updates, updates[1:], rows, strict=False)]


def pasero_dtype(model_dir: Path) -> str:
    found = re.search(r"device cpu \((\w+)\)", (model_dir / "train.log").read_text())
    return found.group(1) if found else "?"


def parameters(log_path: Path, pattern: str) -> str:
    found = re.search(pattern, log_path.read_text())
    return found.group(1) if found else "?"


def fairseq_bf16_error(setup: Setup) -> str | None:
    """None when fairseq-train accepts --bf16 on this CPU, else the last line of its error."""
    log_path, save_dir = setup.work / "train" / "fairseq-bf16-probe.log", setup.work / "train" / "fairseq-bf16-probe"
    shutil.rmtree(save_dir, ignore_errors=True)
    command = fairseq_train_command(setup, True, 1, 1, save_dir)
    rc, _ = run(setup, command, log_path, check=False)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    return f"{lines[-1].strip()}" if rc else None


def train_round(setup: Setup, pasero: str, fairseq_bf16: bool, updates: int, interval: int, tag: str,
                number: int) -> list[Row]:
    """pasero (--dtype `pasero`) and fairseq (fp32 or bf16) trained at the same time."""
    root = setup.work / "train"
    pasero_dir, fairseq_dir = root / f"pasero-{pasero}", root / f"fairseq-{tag}"
    for folder in (pasero_dir, fairseq_dir):  # fairseq would resume from a checkpoint_last.pt
        shutil.rmtree(folder, ignore_errors=True)
    log(f"training: pasero --dtype {pasero} and fairseq {tag}, {updates} updates each, at the same time")
    begin = time.perf_counter()
    jobs = [(start(setup, pasero_train_command(setup, pasero, updates, interval, pasero_dir),
                   root / f"pasero-{pasero}.log"), root / f"pasero-{pasero}.log"),
            (start(setup, fairseq_train_command(setup, fairseq_bf16, updates, interval, fairseq_dir),
                   root / f"fairseq-{tag}.log"), root / f"fairseq-{tag}.log")]
    for process, log_path in jobs:
        finish(process, log_path)
    log(f"  done in {time.perf_counter() - begin:.0f} s")
    setting = f"round {number}: {updates} updates of {RECIPE['batch_tokens']} tok"
    timed = f"updates {interval + 1}-{updates} timed, both at once"
    pasero_params = parameters(root / f"pasero-{pasero}.log", r"([\d,]+) parameters")
    fairseq_params = parameters(root / f"fairseq-{tag}.log", r"num. shared model params: ([\d,]+)")
    return [Row("train", "pasero", pasero_dtype(pasero_dir), setting, throughput(pasero_intervals(pasero_dir)),
                "tgt tok/s", f"--dtype {pasero}; {timed}; {pasero_params} parameters"),
            Row("train", "fairseq", "bf16" if fairseq_bf16 else "fp32", setting,
                throughput(fairseq_intervals(root / f"fairseq-{tag}.log")), "tgt tok/s",
                f"{timed}; {fairseq_params} parameters (with the encoder layers' unused zero copies for "
                "BetterTransformer)")]


def training(setup: Setup, updates: int, interval: int) -> tuple[list[Row], list[str]]:
    rows = train_round(setup, "float32", False, updates, interval, "fp32", 1)
    error = fairseq_bf16_error(setup)
    notes = [] if error is None else [f"fairseq-train --bf16 on CPU: not supported (fairseq 0.12.2's --bf16 "
                                      f"implies --tpu): `{error}`; round 2 runs fairseq fp32 again"]
    second = train_round(setup, "auto", error is None, updates, interval, "bf16" if error is None else "fp32-2", 2)
    return rows + second, notes


# --- decoding ---------------------------------------------------------------------------------


def speed_rows(tool: str, dtype: str, beam: int, sentences: int, tokens: int, seconds: float, note: str
               ) -> list[Row]:
    """A decoding run's two rows: sentences/s, and target tokens/s (eos included) with the mean length."""
    setting = f"beam {beam}"
    return [Row("decode", tool, dtype, setting, sentences / seconds, "sent/s", note),
            Row("decode", tool, dtype, setting, tokens / seconds, "tgt tok/s", f"mean length {tokens / sentences:.1f}")]


def pasero_decode(setup: Setup, model: Path, beam: int, dtype: str, baseline: Path | None = None) -> list[Row]:
    """pasero-decode's rows; with `baseline` (a folder of pasero-* commands), that install's instead."""
    tag = "-baseline" if baseline else ""
    out = setup.work / "decode" / f"pasero{tag}-{dtype}-beam{beam}"
    run(setup, [(baseline or setup.pasero_bin) / "pasero-decode", model, "-i", setup.exp / "text" / f"test.{setup.src}",
                "-o", f"{out}.hyp", "--beam-size", beam, "--batch-size", SEARCH["batch_tokens"],
                "--max-len-a", SEARCH["max_len_a"], "--max-len-b", SEARCH["max_len_b"], "--device", "cpu",
                "--dtype", dtype, "--info-out", f"{out}.json"], Path(f"{out}.log"))
    info = json.loads(Path(f"{out}.json").read_text())
    seconds = info["decode_seconds"]
    tokens = round(info["tokens_per_second"] * seconds)
    note = f"--dtype {dtype}; timer includes tokenization and detokenization"
    if baseline:
        same = Path(f"{out}.hyp").read_text() == (setup.work / "decode" / f"pasero-{dtype}-beam{beam}.hyp").read_text()
        note = f"{baseline}; {note}; hypotheses {'identical to' if same else 'DIFFER from'} pasero-decode's"
    return speed_rows(f"pasero-decode{' (baseline)' if baseline else ''}", info["dtype"], beam,
                      info["n_lines_decoded"], tokens, seconds, note)


def fairseq_decode(setup: Setup, checkpoint: Path, beam: int, max_len_a: float = SEARCH["max_len_a"],
                   max_len_b: int = SEARCH["max_len_b"], out: Path | None = None) -> tuple[list[Row], list[str]]:
    """fairseq-generate's rows and its hypotheses (pieces), in test-set order; its files are `out`.*."""
    out = out or setup.work / "decode" / f"fairseq-beam{beam}"
    run(setup, [setup.fairseq_bin / "fairseq-generate", setup.fairseq_data, "--path", checkpoint,
                "--gen-subset", "test", "-s", setup.src, "-t", setup.tgt, "--beam", beam, "--nbest", 1,
                "--max-tokens", SEARCH["batch_tokens"], "--max-len-a", max_len_a,
                "--max-len-b", max_len_b, "--lenpen", 1, "--cpu", "--num-workers", 0],
        Path(f"{out}.log"), stdout=Path(f"{out}.out"))
    found = re.search(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in [\d.]+s \(([\d.]+) sentences/s",
                      Path(f"{out}.log").read_text())
    if not found:
        raise SystemExit(f"no speed line in {out}.log")
    sentences, tokens = (int(found.group(i).replace(",", "")) for i in (1, 2))
    seconds = sentences / float(found.group(3))  # the printed seconds have one decimal only
    hypotheses = dict(re.findall(r"^H-(\d+)\t\S+\t(.*)$", Path(f"{out}.out").read_text(), re.MULTILINE))
    ordered = [hypotheses[str(i)] for i in range(len(hypotheses))]
    return speed_rows("fairseq-generate", "fp32", beam, sentences, tokens, seconds, "search only"), ordered


def agreement(hypotheses: list[str], reference: list[str]) -> float:
    """Share of hypotheses equal to the reference's up to the shorter one's length (the two tools
    batch differently, and a batch's longest source sets fairseq's length limit)."""
    def agree(a: list[str], b: list[str]) -> bool:
        return a[:len(b)] == b[:len(a)]
    return sum(agree(h.split(), r.split()) for h, r in zip(hypotheses, reference, strict=True)) / len(reference)


def ct2_decode(setup: Setup, model: Path, beam: int, compute_type: str, reference: list[str]) -> list[Row]:
    out = setup.work / "decode" / f"ct2-{compute_type}-beam{beam}"
    run(setup, [setup.fairseq_bin / "python", HERE / "ct2_decode.py", model, setup.work / "test.tok",
                f"{out}.hyp", "--beam", beam, "--batch-size", SEARCH["batch_tokens"], "--compute-type",
                compute_type, "--threads", setup.threads, "--max-len-a", SEARCH["max_len_a"],
                "--max-len-b", SEARCH["max_len_b"]], Path(f"{out}.log"), stdout=Path(f"{out}.json"))
    info = json.loads(Path(f"{out}.json").read_text())
    same = agreement(Path(f"{out}.hyp").read_text().splitlines(), reference)
    return speed_rows("CTranslate2", compute_type, beam, info["sentences"], info["tokens"], info["seconds"],
                      f"search only; {100 * same:.0f}% of outputs agree with fairseq's (up to the shorter)")


def decoding(setup: Setup, beams: list[int], rounds: int = 1, baseline: Path | None = None) -> list[Row]:
    pasero_model = setup.work / "train" / "pasero-float32" / "checkpoint_last.pt"
    fairseq_model = setup.work / "train" / "fairseq-fp32" / "checkpoint_last.pt"
    ct2_model = setup.work / "ct2-model"
    log("converting the fairseq model for CTranslate2")
    run(setup, [setup.fairseq_bin / "python", HERE / "convert_ct2.py", fairseq_model, setup.fairseq_data, ct2_model,
                "-s", setup.src, "-t", setup.tgt, "--force"], setup.work / "logs" / "convert_ct2.log")
    rows = []
    for beam in beams:
        best: dict[tuple[str, str], list[Row]] = {}  # (tool, dtype) -> its fastest run's rows
        for number in range(rounds):
            log(f"decoding, beam {beam}" + (f", round {number + 1}/{rounds}" if rounds > 1 else ""))
            runs = [pasero_decode(setup, pasero_model, beam, dtype) for dtype in ("float32", "auto")]
            runs += [pasero_decode(setup, pasero_model, beam, dtype, baseline) for dtype in ("float32", "auto")
                     if baseline]
            fairseq_rows, reference = fairseq_decode(setup, fairseq_model, beam)
            runs += [fairseq_rows] + [ct2_decode(setup, ct2_model, beam, compute_type, reference)
                                      for compute_type in ("float32", "int8")]
            for pair in runs:
                key = (pair[0].tool, pair[0].dtype)
                if key not in best or pair[0].value > best[key][0].value:
                    best[key] = pair
        rows += [row for pair in best.values() for row in pair]
    return rows


# --- report -----------------------------------------------------------------------------------


def reference(rows: list[Row], row: Row, tool: str, dtype: str) -> Row | None:
    return next((r for r in rows if r.what == row.what and r.setting == row.setting and r.unit == row.unit
                 and r.tool.startswith(tool) and r.dtype == dtype and r.value), None)


def ratio(row: Row, ref: Row | None) -> str:
    return f"{row.value / ref.value:.2f}" if ref and row.value else "-"


def markdown(rows: list[Row], setup: Setup, notes: list[str]) -> str:
    m = setup.model
    lines = [f"model: {m['layers']}+{m['layers']} layers, d{m['embed_dim']}, ffn {m['ffn_dim']}, {m['heads']} heads, "
             f"shared embeddings; {setup.threads} thread(s) per process; data: {setup.exp}", "",
             "| step | tool | dtype | setting | figure | unit | × fairseq fp32 | × CT2 float32 | notes |",
             "|---|---|---|---|---:|---|---:|---:|---|"]
    for row in rows:
        fairseq = reference(rows, row, "fairseq", "fp32" if row.what != "binarize" else "-")
        ct2 = reference(rows, row, "CTranslate2", "float32") if row.what == "decode" else None
        value = "failed" if row.value is None else f"{row.value:,.1f}"
        lines.append(f"| {row.what} | {row.tool} | {row.dtype} | {row.setting} | {value} | {row.unit} | "
                     f"{ratio(row, fairseq)} | {ratio(row, ct2)} | {row.note} |")
    return "\n".join(lines + [""] + [f"- {note}" for note in notes])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/work/peers/sbs"), help="work folder (outside the repo)")
    p.add_argument("--experiment", type=Path, help="pipeline experiment folder (default: the toy de-en in WORK)")
    p.add_argument("-s", "--source-lang", default="de")
    p.add_argument("-t", "--target-lang", default="en")
    p.add_argument("--fairseq-venv", type=Path, default=Path("/work/peers/fairseq-venv"))
    p.add_argument("--pasero-bin", type=Path, default=REPO / ".venv" / "bin", help="folder of the pasero-* commands")
    p.add_argument("--model", choices=("small", "full"), default="small",
                   help="small: 3+3 layers, d256; full: transformer_small = transformer_iwslt_de_en")
    p.add_argument("--updates", type=int, default=30, help="training updates per run")
    p.add_argument("--log-interval", type=int, default=10, help="updates per log line; the first is not timed")
    p.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--binarize-repeat", type=int, default=10, help="copies of the training text to binarize")
    p.add_argument("--binarize-workers", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=("binarize", "train", "decode"))
    p.add_argument("--decode-rounds", type=int, default=1, help="runs of each decoder, interleaved; the fastest counts")
    p.add_argument("--baseline-bin", type=Path, help="another install's pasero-* commands, decoded too (e.g. the "
                   "previous commit's, to measure a change)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    work = args.work.resolve()
    setup = Setup(work, (args.experiment or work / "pipeline" / "results" / "toy" / "de-en").resolve(),
                  args.source_lang, args.target_lang, args.pasero_bin, args.fairseq_venv,
                  SMALL if args.model == "small" else FULL, args.threads)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    if args.experiment is None:
        ensure_toy_experiment(setup)
    prepare_data(setup)
    rows: list[Row] = []
    notes = ["fairseq-generate has no bf16 on CPU (only --fp16, model.half()): fairseq decodes in fp32",
             "CTranslate2 on this CPU: compute types " + ct2_compute_types(setup)]
    if "binarize" not in args.skip:
        rows += binarization(setup, args.binarize_repeat, args.binarize_workers)
    if "train" not in args.skip:
        train_rows, train_notes = training(setup, args.updates, args.log_interval)
        rows += train_rows
        notes += train_notes
    if "decode" not in args.skip:
        rows += decoding(setup, args.beams, args.decode_rounds, args.baseline_bin)
    notes.append(f"load average (1 min) of the machine: {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} "
                 f"at the end ({os.cpu_count()} CPUs): other work on the machine slows every tool down")
    report = markdown(rows, setup, notes)
    (work / "side_by_side.md").write_text(report + "\n")
    print(report)
    return 0


def ct2_compute_types(setup: Setup) -> str:
    code = "import ctranslate2; print(', '.join(sorted(ctranslate2.get_supported_compute_types('cpu'))))"
    result = subprocess.run([setup.fairseq_bin / "python", "-c", code], capture_output=True, text=True)
    return result.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
