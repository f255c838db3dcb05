"""pasero-import-fairseq checked against fairseq itself: the fairseq model of a side-by-side run,
decoded by fairseq-generate and, imported, by pasero-decode, on the same tokenized test set.

    python bench/peers/import_check.py [--work /work/peers/sbs] [--max-len-b 40] [--beams 5 1]

Needs a finished `side_by_side.py` run in WORK (its fairseq model train/fairseq-fp32/checkpoint_last.pt,
fairseq-data/ and test.tok) and the fairseq virtual environment of build_fairseq.sh. Both tools get
the same length limit for every sentence (max_len_a 0: fairseq's max_len_a applies to a batch's
padded source length, pasero's to each sentence's), float32, batches of 4096 source tokens, one
thread. Printed: the share of test sentences whose hypotheses are identical, and both tools'
sentences/s on the same weights (each tool's own timer, model loading excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_by_side import REPO, SMALL, Setup, fairseq_decode, run  # noqa: E402


def pasero_decode(setup: Setup, model: Path, beam: int, max_len_b: int, out: Path) -> tuple[list[str], float]:
    run(setup, [setup.pasero_bin / "pasero-decode", model, "-i", setup.work / "test.tok", "-o", out.with_suffix(".hyp"),
                "--beam-size", beam, "--batch-size", 4096, "--max-len-a", 0, "--max-len-b", max_len_b,
                "--device", "cpu", "--dtype", "float32", "--info-out", out.with_suffix(".json")],
        out.with_suffix(".log"))
    info = json.loads(out.with_suffix(".json").read_text())
    return out.with_suffix(".hyp").read_text().splitlines(), info["n_lines_decoded"] / info["decode_seconds"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/work/peers/sbs"))
    p.add_argument("--fairseq-venv", type=Path, default=Path("/work/peers/fairseq-venv"))
    p.add_argument("--pasero-bin", type=Path, default=REPO / ".venv" / "bin")
    p.add_argument("--max-len-b", type=int, default=40)
    p.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    p.add_argument("-s", "--source-lang", default="de")
    p.add_argument("-t", "--target-lang", default="en")
    args = p.parse_args()
    work = args.work.resolve()
    setup = Setup(work, work, args.source_lang, args.target_lang, args.pasero_bin, args.fairseq_venv,
                  SMALL, 1)
    checkpoint = work / "train" / "fairseq-fp32" / "checkpoint_last.pt"
    out = work / "import-check"
    out.mkdir(exist_ok=True)
    model = out / "model.pt"
    run(setup, [setup.pasero_bin / "pasero-import-fairseq", checkpoint, "--dict-dir", setup.fairseq_data, "-o", model],
        out / "import.log")
    print("| beam | identical hypotheses | fairseq-generate sent/s | pasero-decode sent/s (imported) | ratio |")
    print("|---|---|---|---|---|")
    for beam in args.beams:
        rows, theirs = fairseq_decode(setup, checkpoint, beam, 0, args.max_len_b, out / f"fairseq-beam{beam}")
        fairseq_speed = rows[0].value
        ours, pasero_speed = pasero_decode(setup, model, beam, args.max_len_b, out / f"pasero-beam{beam}")
        same = sum(a.split() == b.split() for a, b in zip(ours, theirs, strict=True))
        print(f"| {beam} | {same}/{len(theirs)} ({100 * same / len(theirs):.1f}%) | {fairseq_speed:.1f} | "
              f"{pasero_speed:.1f} | {pasero_speed / fairseq_speed:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
