"""pasero-import-fairseq: a fairseq Transformer checkpoint as a self-contained pasero model.

    pasero-import-fairseq checkpoints/checkpoint_best.pt --dict-dir data-bin/iwslt14.de-en -o model.pt
    pasero-decode model.pt -i test.de          # = fairseq-generate's hypotheses (beam 5, lenpen 1)
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pasero.cli.common import command, setup_logging

logger = logging.getLogger("pasero.import_fairseq")

EPILOG = """\
The model keeps fairseq's dictionaries (separate or joined), its position numbering and, as decoding
defaults, fairseq-generate's (beam 5, max_len_a 0, max_len_b 200, len_penalty 1). Without --spm the
model reads and writes space-separated pieces, as fairseq-generate without --bpe; with the
SentencePiece model the data was encoded with, it translates raw text and detokenizes. Reading the
checkpoint runs no code it names and does not need fairseq. See pasero/fairseq_import.py.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pasero-import-fairseq", description="Convert a fairseq transformer checkpoint "
                                "(transformer, transformer_iwslt_de_en, ...) into a pasero model.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="fairseq checkpoint (checkpoint_best.pt, checkpoint_last.pt, ...)")
    p.add_argument("--dict-dir", required=True, metavar="DIR",
                   help="the data folder of fairseq-preprocess: dict.{src}.txt and dict.{tgt}.txt, or dict.txt")
    p.add_argument("--spm", metavar="MODEL", help="the SentencePiece model (.model) the data was encoded with")
    p.add_argument("-s", "--source-lang", help="source language (default: the checkpoint's task option)")
    p.add_argument("-t", "--target-lang", help="target language (default: the checkpoint's task option)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="the pasero model file to write")
    return p


@command
def import_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from pasero.checkpoints import source_symbols  # torch: not needed for --help and argument errors
    from pasero.fairseq_import import import_fairseq

    ckpt = import_fairseq(args.checkpoint, args.dict_dir, args.output, spm=args.spm, source_lang=args.source_lang,
                          target_lang=args.target_lang)
    cfg = ckpt["model_config"]
    sizes = len(source_symbols(ckpt)), len(ckpt["dictionary"])
    logger.info("wrote %s: %d+%d layers, embed_dim %d, %s, %s dictionaries (%d/%d symbols), %d parameters", args.output,
                cfg["encoder_layers"], cfg["decoder_layers"], cfg["embed_dim"],
                "pre-LN" if cfg["normalize_before"] else "post-LN",
                "separate" if "source_dictionary" in ckpt else "one joint", *sizes, ckpt["meta"]["params"])
    return 0


if __name__ == "__main__":
    sys.exit(import_main())
