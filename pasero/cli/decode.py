"""pasero-decode: translate files (or stdin) with a trained model.

Input is read `--buffer-size` lines at a time; each buffer is sorted by length, cut into
batches of `--batch-size` source tokens, decoded, and written back in input order. So a large
file decodes at full speed, and `--buffer-size 1` translates each line as soon as it is typed.
A file output appears under its final name only when complete; with `--continue` it is instead
appended to (flushed after each buffer), and a rerun resumes where the previous one stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pasero import scoring, slurm
from pasero.cli.common import command, setup_logging
from pasero.cli.score import read_text
from pasero.errors import ConfigError, DataError
from pasero.files import atomic_output, count_lines, decode_line, expand_langs, read_lines
from pasero.options import add_arguments, build, cli_values
from pasero.progress import progress_bar
from pasero.search_options import DecodeOptions, SearchOptions

if TYPE_CHECKING:
    from pasero.generator import TextGenerator

logger = logging.getLogger("pasero.decode")
DEFAULT_BUFFER = 10_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pasero-decode",
        description="Translate text with a trained model (beam search, greedy decoding or sampling). "
                    "Paths may contain {src}, {tgt} and {pair} (e.g. test.{src} -> test.de).")
    p.add_argument("model", help="model file (model.pt, checkpoint_*.pt) or model folder")
    p.add_argument("-i", "--input", nargs="+", default=[], help="input files (default: stdin)")
    p.add_argument("-o", "--output", nargs="+", default=[], help="output files, one per input (default: stdout)")
    p.add_argument("-r", "--ref", nargs="+", default=[], help="references, one per input: print BLEU/chrF at the end")
    p.add_argument("-s", "--source-lang", help="source language code, for {src} (default: the model's)")
    p.add_argument("-t", "--target-lang", help="target language code, for {tgt}; a multilingual model translates "
                                               "into it (default: the model's)")
    search = p.add_argument_group("search (defaults: the model's inference settings, else those shown)")
    add_arguments(search, SearchOptions)
    r = p.add_argument_group("runtime")
    runtime = set(DecodeOptions.__dataclass_fields__) - set(SearchOptions.__dataclass_fields__)
    add_arguments(r, DecodeOptions, only=runtime)
    r.add_argument("-v", "--verbose", action="store_true",
                   help="print fairseq-style S-/T-/H-/D-/P- lines (scores in base 2); with stdout output, "
                        "instead of the plain translations")
    r.add_argument("--continue", dest="resume", action="store_true",
                   help="append to the existing --output files, skipping the inputs already translated")
    r.add_argument("--bleu-tok", choices=scoring.bleu_tokenizers(), metavar="TOK", help="BLEU tokenization for -r "
                   "(default: the model's)")
    r.add_argument("--info-out", metavar="FILE.json", help="write provenance and speed (for pasero-score --info)")
    slurm.add_slurm_arguments(p)
    return p


def expand(path: str, src: str | None, tgt: str | None) -> str:
    if (("{src}" in path or "{pair}" in path) and not src) or (("{tgt}" in path or "{pair}" in path) and not tgt):
        raise ConfigError(f"'{path}' uses {{src}}/{{tgt}}/{{pair}} but the model has no language codes: "
                          "pass --source-lang and --target-lang")
    return expand_langs(path, src, tgt)


def complete_lines(path: Path) -> int:
    """Lines of a partial output that are complete; a last line without newline (a killed job) is cut off."""
    if not path.exists():
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        done = data.rfind(b"\n") + 1
        if done < len(data):
            f.truncate(done)
    return data.count(b"\n")


def buffers(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    lines = iter(lines)
    while chunk := list(islice(lines, size)):
        yield chunk


def stdin_lines() -> Iterator[str]:
    for n, raw in enumerate(sys.stdin.buffer, 1):
        yield decode_line(raw, "stdin", n).rstrip("\r\n")


class Translator:
    """Writes each buffer's translations (and -v lines) and keeps count for the provenance."""

    def __init__(self, generator: TextGenerator, verbose: bool):
        self.generator, self.verbose = generator, verbose
        self.n_lines = self.n_tokens = 0
        self.seconds = 0.0

    def run(self, lines: Iterable[str], out: IO[str] | None, buffer_size: int, first_id: int = 0,
            refs: Sequence[str] | None = None, total: int | None = None, name: str | None = None) -> list[str]:
        """Translate `lines` buffer by buffer; returns the translations. With a `name` (an input
        file of `total` lines), a progress bar on a terminal, a progress line every 30 s in a log."""
        with progress_bar(total, name and Path(name).name, "sent", disable=name is None, log_every=30) as bar:
            return self._run(lines, out, buffer_size, first_id, refs, bar.update)

    def _run(self, lines: Iterable[str], out: IO[str] | None, buffer_size: int, first_id: int,
             refs: Sequence[str] | None, progress: Callable[[int], Any]) -> list[str]:
        translations: list[str] = []
        for chunk in buffers(lines, buffer_size):
            start = time.perf_counter()
            results = self.generator.decode(chunk, return_scores=self.verbose, progress=progress)
            self.seconds += time.perf_counter() - start
            self.n_lines += len(chunk)
            self.n_tokens += sum(len(nbest[0]["tokens"]) + 1 for nbest in results)
            best = [nbest[0]["detok"] for nbest in results]
            translations += best
            if out is not None:
                out.write("".join(line + "\n" for line in best))
                out.flush()
            if self.verbose:
                for k, (line, nbest) in enumerate(zip(chunk, results, strict=True)):
                    i = first_id + len(translations) - len(chunk) + k
                    self.print_verbose(i, line, refs[i] if refs is not None and i < len(refs) else None, nbest)
                sys.stdout.flush()
        return translations

    def print_verbose(self, i: int, line: str, ref: str | None, nbest: list[dict[str, Any]]) -> None:
        """fairseq-generate's format: scores are normalized and in base 2."""
        print(f"S-{i}\t{self.generator.tokenize(line)}")
        if ref is not None:
            print(f"T-{i}\t{ref}")
        for h in nbest:
            score = h["normalized_score"] / math.log(2)
            print(f"H-{i}\t{score:.4f}\t{' '.join(h['tokens'])}")
            print(f"D-{i}\t{score:.4f}\t{h['detok']}")
            print(f"P-{i}\t{' '.join(f'{s / math.log(2):.4f}' for s in h['positional_scores'])}")


def translate(translator: Translator, input_path: str | None, output_path: str | None, args: argparse.Namespace,
              buffer_size: int, refs: Sequence[str] | None) -> list[str]:
    """Translate one input (a file or stdin) into its output; returns every line of the output."""
    lines = read_lines(input_path) if input_path else stdin_lines()
    total = count_lines(input_path) if input_path else None
    if output_path is None:
        return translator.run(lines, None if args.verbose else sys.stdout, buffer_size, refs=refs, total=total,
                              name=input_path)
    if not args.resume:
        with atomic_output(output_path) as out:
            return translator.run(lines, out, buffer_size, refs=refs, total=total, name=input_path)
    done = complete_lines(Path(output_path))
    if input_path and done > count_lines(input_path):
        raise DataError(f"{output_path} has more lines ({done}) than {input_path}: not its output; "
                        "remove it or run without --continue")
    if done:
        logger.info("%s: %d lines already translated, continuing", output_path, done)
    with open(output_path, "a", encoding="utf-8") as out:
        translator.run(islice(lines, done, None), out, buffer_size, first_id=done, refs=refs,
                       total=None if total is None else total - done, name=input_path)
    return read_text(output_path)


def check_args(args: argparse.Namespace) -> DecodeOptions:
    """The paths fit together; returns the decoding options given on the command line."""
    n = max(len(args.input), 1)
    if args.output and len(args.output) != n:
        raise ConfigError(f"{len(args.output)} outputs for {len(args.input)} inputs: give one -o per -i")
    if args.ref and len(args.ref) != n:
        raise ConfigError(f"{len(args.ref)} references for {len(args.input)} inputs: give one -r per -i")
    if args.resume and not args.output:
        raise ConfigError("--continue needs -o (it resumes a partial output file)")
    options = build(DecodeOptions, cli_values(args), "command line")
    if options.buffer_size is None:
        options.buffer_size = 1 if not args.input and sys.stdin.isatty() else DEFAULT_BUFFER
    return options


@command
def decode_main(argv: Sequence[str] | None = None) -> int:
    try:
        return _decode(build_parser().parse_args(argv), argv)
    except BrokenPipeError:  # e.g. `pasero-decode ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _decode(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    setup_logging()
    if args.slurm:  # the job runs this command without --slurm
        if not args.input:
            raise ConfigError("--slurm needs input files (-i): a SLURM job does not read this terminal")
        slurm.submit(["pasero-decode", *slurm.strip_slurm_arguments(argv)], slurm.options_from_args(args))
        return 0
    if where := slurm.placement():
        logger.info("running in %s", where)
    options = check_args(args)
    from pasero.generator import TextGenerator  # torch: not needed for --help and argument errors

    given = {k: v for k, v in cli_values(args).items() if k in SearchOptions.__dataclass_fields__}
    generator = TextGenerator.build(args.model, device=options.device, dtype=options.dtype,
                                    batch_size=options.batch_size, source_lang=args.source_lang,
                                    target_lang=args.target_lang, **given)
    if generator.zero_shot:
        logger.info("%s-%s is a zero-shot direction: the model was not trained on it (it was on %s)",
                    generator.source_lang, generator.target_lang, ", ".join(generator.lang_pairs))
    src = args.source_lang or generator.source_lang
    tgt = args.target_lang or generator.target_lang
    inputs = [expand(p, src, tgt) for p in args.input] or [None]
    outputs = [expand(p, src, tgt) for p in args.output] or [None] * len(inputs)
    refs = [expand(p, src, tgt) for p in args.ref] or [None] * len(inputs)
    for input_path, ref_path in zip(inputs, refs, strict=True):  # fail now rather than after hours of decoding
        if input_path and not Path(input_path).is_file():
            raise DataError(f"{input_path}: no such input file")
        if ref_path and input_path and count_lines(ref_path) != count_lines(input_path):
            raise DataError(f"{ref_path} has {count_lines(ref_path)} lines but {input_path} has "
                            f"{count_lines(input_path)}: the reference must be aligned with the input")

    translator = Translator(generator, args.verbose)
    bleu_tok = args.bleu_tok or generator.bleu_tok
    report, n_output = [], 0
    for input_path, output_path, ref_path in zip(inputs, outputs, refs, strict=True):
        ref_lines = read_text(ref_path) if ref_path else None
        hyps = translate(translator, input_path, output_path, args, options.buffer_size, ref_lines)
        n_output += len(hyps)
        if ref_lines is not None:
            result = scoring.score(hyps, ref_lines, bleu_tok=bleu_tok)
            report.append({"input": input_path or "-", "ref": ref_path, **{m: result[m] for m in scoring.METRICS}})
            stream = sys.stderr if output_path is None and not args.verbose else sys.stdout
            print(scoring.format_report(result), end="", file=stream, flush=True)

    if args.info_out:
        write_info(args.info_out, generator, translator, inputs, outputs, n_output, report)
    logger.info("translated %d lines in %.1fs (%.1f sentences/s)", translator.n_lines, translator.seconds,
                translator.n_lines / max(translator.seconds, 1e-9))
    return 0


def write_info(path: str, generator: TextGenerator, translator: Translator, inputs: list, outputs: list,
               n_output: int, report: list) -> None:
    """Provenance for pasero-score --info: model, decoding settings and speed. With --continue,
    n_lines counts every output line, speed only those translated by this run."""
    seconds = translator.seconds
    info = {
        **generator.meta,
        "source_lang": generator.source_lang, "target_lang": generator.target_lang,
        **({"zero_shot": generator.zero_shot} if generator.lang_pairs else {}),
        "inputs": [p or "-" for p in inputs], "outputs": [p or "-" for p in outputs],
        "n_lines": n_output, "n_lines_decoded": translator.n_lines,
        "decode_seconds": round(seconds, 3),
        "sentences_per_second": round(translator.n_lines / seconds, 2) if seconds else None,
        "tokens_per_second": round(translator.n_tokens / seconds, 1) if seconds else None,
        "device": str(generator.device), "dtype": str(next(generator.model.parameters()).dtype).split(".")[-1],
        "decoding": {**dataclasses.asdict(generator.options), "batch_size": generator.batch_size},
        "hostname": os.uname().nodename,
    }
    if report:
        info["scores"] = report
    with atomic_output(path) as f:
        json.dump(info, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(decode_main())
