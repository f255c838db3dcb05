"""pasero-train and pasero-average-checkpoints."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pasero.cli.common import command, setup_logging
from pasero.errors import ConfigError

logger = logging.getLogger("pasero.train")

TRAIN_EPILOG = """\
Every option can be given in the YAML file (as `option: value`) or here (as --option value); the
command line wins. Values are YAML scalars (5e-4, null, true). String values may contain {src},
{tgt} and {pair}. Model options override those of --arch.

Rerunning the same command resumes from MODEL_DIR/checkpoint_last.pt (with --reset-if-changed:
unless the options that determine the weights, the dictionary, the tokenizer or the training data
differ from those of that checkpoint; the log says which). Exit status: 0 finished,
2 bad input, 3 stopped by SIGTERM/SIGINT/SIGUSR2 after saving a checkpoint (rerun to resume).
"""


def _train_parser() -> argparse.ArgumentParser:
    from pasero.slurm import add_slurm_arguments
    from pasero.train_config import add_config_arguments

    parser = argparse.ArgumentParser(
        prog="pasero-train", description="Train a Transformer translation model (resumes automatically).",
        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("-c", "--config", help="YAML training config")
    parser.add_argument("--reset", action="store_true",
                        help="delete MODEL_DIR's checkpoints and logs and start over")
    parser.add_argument("--reset-if-changed", action="store_true",
                        help="start over (as --reset) when MODEL_DIR's checkpoints were trained with other "
                             "weight-determining inputs: options, dictionary, tokenizer or training data; "
                             "resume otherwise (changing max_steps, patience, intervals or device resumes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_config_arguments(parser)
    add_slurm_arguments(parser, data_parallel=True)
    return parser


@command
def train_main(argv: Sequence[str] | None = None) -> int:
    from pasero.options import cli_values
    from pasero.train_config import check_unknown_arguments, load_config
    from pasero.training import Trainer

    parser = _train_parser()
    args, extra = parser.parse_known_args(argv)
    check_unknown_arguments(extra)
    cfg = load_config(args.config, cli_values(args))
    setup_logging(args.verbose)
    from pasero import slurm

    if args.slurm:  # checked here, submitted there: the job runs this command without --slurm
        options = slurm.options_from_args(args, job_dir=Path(cfg.model_dir) / "slurm")
        slurm.submit(["pasero-train", *slurm.strip_slurm_arguments(argv)], options)
        return 0
    if where := slurm.placement():
        logger.info("running in %s", where)
    return Trainer(cfg, reset=args.reset, reset_if_changed=args.reset_if_changed).run()


@command
def average_main(argv: Sequence[str] | None = None) -> int:
    from pasero import checkpoints

    parser = argparse.ArgumentParser(
        prog="pasero-average-checkpoints",
        description="Write one self-contained model file from a training run: the average of the last N or "
                    "best N step checkpoints (best 1 = the best checkpoint's weights).")
    parser.add_argument("model_dir", help="training folder with checkpoint_{step}.pt files")
    parser.add_argument("-o", "--output", required=True, help="output file, e.g. model.pt")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--last", type=int, metavar="N", help="average the N most recent checkpoints")
    group.add_argument("--best", type=int, metavar="N",
                       help="average the N best checkpoints by the run's recorded validation history (default: "
                            "1, checkpoint_best.pt when its step file is gone; NaN/inf rank last); training "
                            "with keep_best: N keeps their files")
    parser.add_argument("--metric", choices=("loss", "nll", "ppl", "bleu", "chrf"),
                        help="metric for --best (default: the run's best_metric; another metric ranks only the "
                             "step checkpoints still on disk)")
    args = parser.parse_args(argv)
    setup_logging()
    n = args.last or args.best or 1
    if n < 1:
        raise ConfigError("N must be at least 1")
    if not Path(args.model_dir).is_dir():
        raise ConfigError(f"{args.model_dir}: no such training folder")
    paths = checkpoints.select_checkpoints(args.model_dir, last=args.last, best=None if args.last else n,
                                           metric=args.metric)
    model = checkpoints.average_checkpoints(paths)
    checkpoints.save_model(model, args.output)
    logger.info("wrote %s from %s (steps %s)", args.output, ", ".join(p.name for p in paths),
                model["meta"]["steps"])
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
