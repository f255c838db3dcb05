"""Convert a fairseq checkpoint to a CTranslate2 model, on torch >= 2.6.

    FAIRSEQ_VENV/bin/python bench/peers/convert_ct2.py FAIRSEQ_CHECKPOINT DATA_DIR OUT_DIR [-s de -t en]
        [--quantization int8] [--force]

DATA_DIR holds fairseq's dict.{src}.txt and dict.{tgt}.txt. Run it with the python of the fairseq
virtual environment (bench/peers/build_fairseq.sh), which has fairseq and ctranslate2.

Why not `ct2-fairseq-converter`: it reads the checkpoint with torch.load(weights_only=True), torch's
default since 2.6, which refuses the argparse.Namespace / omegaconf objects that a fairseq checkpoint
pickles (recent CTranslate2 releases add an `--unsafe_deserialization` flag; older 4.x have none).
This script loads the checkpoint itself with weights_only=False (fairseq checkpoints are trusted
pickles, written here) and hands it to CTranslate2's own `FairseqConverter`, whose torch.load is
pointed at the loaded checkpoint for the time of the conversion: the conversion itself
(architecture, weights, vocabularies) is CTranslate2's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import torch
from ctranslate2.converters import FairseqConverter


def load_checkpoint(path: str) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


@contextlib.contextmanager
def preloaded(path: str, checkpoint: dict[str, Any]) -> Iterator[None]:
    """While active, torch.load(path, ...) returns `checkpoint`; any other file loads unrestricted."""
    original = torch.load
    target = os.path.realpath(path)

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(f, str | os.PathLike) and os.path.realpath(f) == target:
            return checkpoint
        kwargs["weights_only"] = False
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def convert(checkpoint_path: str, data_dir: str, out_dir: str, source_lang: str | None = None,
            target_lang: str | None = None, quantization: str | None = None, force: bool = False) -> str:
    checkpoint = load_checkpoint(checkpoint_path)
    converter = FairseqConverter(checkpoint_path, data_dir, source_lang=source_lang, target_lang=target_lang)
    with preloaded(checkpoint_path, checkpoint):
        return converter.convert(out_dir, quantization=quantization, force=force)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="fairseq checkpoint (checkpoint_best.pt, ...)")
    parser.add_argument("data_dir", help="folder of dict.{src}.txt and dict.{tgt}.txt")
    parser.add_argument("out_dir", help="CTranslate2 model folder to write")
    parser.add_argument("-s", "--source-lang")
    parser.add_argument("-t", "--target-lang")
    parser.add_argument("--quantization", help="weight type of the saved model, e.g. int8 (default: as trained)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT_DIR")
    args = parser.parse_args()
    out = convert(args.checkpoint, args.data_dir, args.out_dir, args.source_lang, args.target_lang,
                  args.quantization, args.force)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
