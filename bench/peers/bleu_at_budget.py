"""BLEU at an equal wall-clock budget: pasero and fairseq 0.12.2 train the same model on the same
data with the same recipe for the same number of seconds, at the same time, one thread each; then
each decodes the test set with its own beam search and both are scored alike.

    python bench/peers/bleu_at_budget.py [--work /work/peers/sbs] [--budget 600]

Data: the toy experiment of a side_by_side.py work folder (30,000 training pairs; side_by_side.py
builds it and fairseq's view of it). Model and recipe: the toy's own (transformer_tiny: 2+2 layers,
d128, ffn 512, 4 heads, shared embeddings; Adam 0.9/0.98, inverse_sqrt lr 2e-3 after 200 warm-up
updates from 1e-7, label smoothing 0.1, dropout 0.1, 4096-token batches), because a short budget
on one CPU thread is a few hundred updates, which the 4000 warm-up updates of the IWSLT recipe
would spend at a negligible learning rate. pasero trains at its best precision here (--dtype auto:
bf16 autocast on CPUs with AVX512-BF16), fairseq in fp32 (its --bf16 is not supported on CPU).
Budget: pasero's --max-time, fairseq's --stop-time-hours (both count training time, and both
save their last checkpoint when it is spent). Decoding: beam 5, at most 1.2 x source length + 10
tokens, the last checkpoint of each. Scoring: fairseq's pieces are detokenized with the same
SentencePiece tokenizer, then both go through pasero-score (sacreBLEU 13a, chrF).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import side_by_side as sbs  # noqa: E402

TOY_MODEL = dict(embed_dim=128, ffn_dim=512, layers=2, heads=4)  # config/config.yaml: toy, transformer_tiny
TOY_RECIPE = dict(sbs.RECIPE, lr=2e-3, warmup=200, dropout=0.1)


def train(setup: sbs.Setup, budget: float) -> tuple[Path, Path, dict[str, int]]:
    """Both trainings at once; their model files and update counts."""
    sbs.RECIPE.update(TOY_RECIPE)  # the command builders read the module's recipe
    pasero_dir, fairseq_dir = setup.work / "budget" / "pasero", setup.work / "budget" / "fairseq"
    pasero_cmd = sbs.pasero_train_command(setup, "auto", 10**6, 50, pasero_dir) + ["--max-time", f"{budget}s"]
    fairseq_cmd = sbs.fairseq_train_command(setup, False, 10**6, 50, fairseq_dir) + [
        "--stop-time-hours", budget / 3600, "--disable-validation"]  # pasero does not validate either
    sbs.log(f"training pasero and fairseq for {budget:.0f} s each, at the same time")
    pasero_log, fairseq_log = pasero_dir.with_suffix(".log"), fairseq_dir.with_suffix(".log")
    procs = [(sbs.start(setup, pasero_cmd, pasero_log), pasero_log), (sbs.start(setup, fairseq_cmd, fairseq_log),
                                                                         fairseq_log)]
    for process, log_path in procs:
        sbs.finish(process, log_path)
    pasero_ckpt = pasero_dir / "checkpoint_last.pt"
    saved = re.findall(r"@ (\d+) updates", fairseq_log.read_text())  # "saved checkpoint ... (epoch 3 @ 412 updates"
    updates = {"pasero": _last_step(pasero_dir), "fairseq": int(saved[-1]) if saved else 0}
    return pasero_ckpt, fairseq_dir / "checkpoint_last.pt", updates


def _last_step(model_dir: Path) -> int:
    rows = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
    return max((int(r["step"]) for r in rows if "step" in r), default=0)


def score(setup: sbs.Setup, hypotheses: Path, name: str) -> dict:
    out = setup.work / "budget" / f"{name}.scores.json"
    sbs.run(setup, [setup.pasero_bin / "pasero-score", "-H", hypotheses, "-r", setup.exp / "text" / f"test.{setup.tgt}",
                    "--json", out], setup.work / "budget" / f"{name}.score.log")
    return json.loads(out.read_text())


def decode(setup: sbs.Setup, pasero_ckpt: Path, fairseq_ckpt: Path) -> dict[str, dict]:
    budget = setup.work / "budget"
    sbs.run(setup, [setup.pasero_bin / "pasero-decode", pasero_ckpt, "-i", setup.exp / "text" / f"test.{setup.src}",
                    "-o", budget / "pasero.hyp", "--beam-size", 5, "--max-len-a", 1.2, "--max-len-b", 10,
                    "--device", "cpu"], budget / "pasero.decode.log")
    _, pieces = sbs.fairseq_decode(setup, fairseq_ckpt, 5, out=budget / "fairseq.generate")
    (budget / "fairseq.pieces").write_text("".join(line + "\n" for line in pieces))
    sbs.run(setup, [setup.pasero_bin / "pasero-detokenize", setup.exp / "tokenizer", "-i", budget / "fairseq.pieces",
                    "-o", budget / "fairseq.hyp"], budget / "fairseq.detok.log")
    return {"pasero": score(setup, budget / "pasero.hyp", "pasero"),
            "fairseq": score(setup, budget / "fairseq.hyp", "fairseq")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/work/peers/sbs"))
    p.add_argument("--fairseq-venv", type=Path, default=Path("/work/peers/fairseq-venv"))
    p.add_argument("--pasero-bin", type=Path, default=sbs.REPO / ".venv" / "bin")
    p.add_argument("--budget", type=float, default=600, help="training seconds per tool")
    args = p.parse_args()
    work = args.work.resolve()
    setup = sbs.Setup(work, work / "pipeline" / "results" / "toy" / "de-en", "de", "en", args.pasero_bin,
                      args.fairseq_venv, TOY_MODEL, 1)
    sbs.ensure_toy_experiment(setup)
    sbs.prepare_data(setup)
    pasero_ckpt, fairseq_ckpt, updates = train(setup, args.budget)
    scores = decode(setup, pasero_ckpt, fairseq_ckpt)
    print(f"| tool | updates in {args.budget:.0f} s | BLEU | chrF |")
    print("|---|---|---|---|")
    for tool in ("pasero", "fairseq"):
        print(f"| {tool} | {updates[tool]:.0f} | {scores[tool]['bleu']:.2f} | {scores[tool]['chrf']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
