"""pasero-export: write a trained model in a format that other inference runtimes load.

    pasero-export results/toy/de-en/model.pt --format ctranslate2 -o toy-ct2
    pasero-export results/toy/de-en --format hf -o toy-hf
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pasero.cli.common import command, setup_logging

logger = logging.getLogger("pasero.export")

EPILOG = """\
ctranslate2: a CTranslate2 model folder (ctranslate2.Translator), with the model's SentencePiece
tokenizer (pasero.tokenizer.Tokenizer.load). hf: a Hugging Face transformers MarianMTModel folder
(AutoModelForSeq2SeqLM / AutoTokenizer.from_pretrained). Both translate as pasero does; the export is
checked against the model before it is written, and what a format cannot reproduce is refused.
Needs the optional dependencies: pip install -e '.[export]'. See pasero/export.py (and export_ct2.py,
export_hf.py) for the conventions.
"""


def build_parser() -> argparse.ArgumentParser:
    from pasero.export import FORMATS

    p = argparse.ArgumentParser(prog="pasero-export", description="Export a trained model to CTranslate2 or "
                                "Hugging Face transformers.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model file (model.pt, checkpoint_*.pt) or model folder")
    p.add_argument("-f", "--format", required=True, choices=FORMATS, help="target runtime")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (written when complete)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists and is not empty")
    return p


@command
def export_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from pasero.export import export  # torch: not needed for --help and argument errors

    export(args.model, args.format, args.output, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(export_main())
