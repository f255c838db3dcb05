"""Export a trained model to CTranslate2 or to Hugging Face transformers, translating exactly as pasero does.

    pasero-export results/toy/de-en/model.pt --format ctranslate2 -o toy-ct2   # fast CPU/GPU serving
    pasero-export results/toy/de-en/model.pt --format hf -o toy-hf             # transformers.pipeline

Both runtimes implement fairseq's Transformer, which is ours, so the export is a renaming of weights
plus the conventions below; what a runtime cannot express is refused with a one-line error rather
than exported into a model that translates differently. Each export is checked before it is
written under its final name: the runtime loads it from disk and must give the log-probabilities
pasero gives to a few probe translations.

Each runtime has its module, which says what differs there by construction of the runtime:
`pasero.export_ct2` (CTranslate2) and `pasero.export_hf` (transformers' Marian).

Conventions (pasero -> runtime):
- positions: pasero's sinusoidal table (fairseq's frequencies, sin half then cos half) from row
  `position_offset` for the first token: 0, or padding_idx + 1 as in fairseq for models imported from
  fairseq. Both runtimes store the table itself (its rows from that offset):
  CTranslate2's position encodings, Marian's `embed_positions` weights (Marian computes its own table
  with other frequencies, so a model re-saved by transformers' `save_pretrained`, which drops them,
  translates differently: re-export it from pasero instead).
- post-LN (fairseq's default) or pre-LN with final layer norms (`normalize_before`), embeddings scaled
  by sqrt(dim), relu or exact (erf) gelu, shared source/target embeddings, output tied to the target
  embeddings or not, LayerNorm eps 1e-5, no bias on the output projection.
- ids: the dictionary's order (fairseq's <s>=0 <pad>=1 </s>=2 <unk>=3); eos ends the source; the
  decoder starts with eos (or the target language's code for models trained with lang_code: decoder).
- search (`ctranslate2_translate`, `transformers_generate_kwargs`): a finished hypothesis is ranked by
  score / length ** len_penalty with eos counted in the length; eos among the best `beam_size` of
  the 2 * `beam_size` candidates finishes a hypothesis; a sentence stops with `beam_size` finished
  ones; <pad> is never produced and eos not before `min_len` tokens; a sentence of n source tokens
  (eos included) gets at most int(max_len_a * n + max_len_b) tokens before eos.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pasero import search
from pasero.dictionary import SPECIALS
from pasero.errors import CheckpointError, ConfigError
from pasero.search_options import SearchOptions

if TYPE_CHECKING:
    from pasero.generator import TextGenerator
    from pasero.model import Transformer

logger = logging.getLogger(__name__)

FORMATS = ("ctranslate2", "hf")
INSTALL_HINT = "pip install -e '.[export]'"
TOLERANCE = 1e-3  # largest difference of log-probabilities between pasero and an export (float32)


def export(model_path: str | os.PathLike, fmt: str, output: str | os.PathLike, force: bool = False) -> Path:
    """Write the model at `model_path` (file or folder) to the folder `output` in format `fmt`.

    The folder appears only once complete and checked; an existing non-empty folder is replaced
    only with `force`."""
    from pasero.generator import TextGenerator

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    output = Path(output)
    if output.exists() and not force and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output} already exists: remove it or pass --force to replace it")
    runtime = _runtime(fmt)
    generator = TextGenerator.build(model_path, device="cpu", dtype="float32")
    runtime.check_supported(generator)
    with _staging(output) as tmp:
        runtime.write(generator, tmp)
        _write_readme(tmp, generator, fmt, runtime.usage(generator, output.name))
    logger.info("exported %s to %s (%s)", generator.path, output, fmt)
    return output


def _runtime(fmt: str) -> ModuleType:
    """The module that writes `fmt`, once its runtime (an optional dependency) imports; else how to install it."""
    name = "ctranslate2" if fmt == "ctranslate2" else "transformers"
    try:
        importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"--format {fmt} needs the '{name}' package: {INSTALL_HINT}") from None
    return importlib.import_module("pasero.export_ct2" if fmt == "ctranslate2" else "pasero.export_hf")


@contextlib.contextmanager
def _staging(output: Path) -> Iterator[Path]:
    """A temporary folder beside `output` that replaces it if the block succeeds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        yield tmp
        _plain_permissions(tmp)
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _plain_permissions(folder: Path) -> None:
    """What mkdir and open would have given (mkdtemp and some writers make private files)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


# -- the model's pieces --------------------------------------------------------------------------


def detached(x: Tensor) -> Tensor:
    return x.detach().float().contiguous().clone()


def split_kv(attention: torch.nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Our fused key/value projection, split: k weight, v weight, k bias, v bias."""
    w, b = attention.kv_proj.weight, attention.kv_proj.bias
    d = w.size(1)
    return w[:d], w[d:], b[:d], b[d:]


def output_weight(model: Transformer) -> Tensor:
    return model.output_proj.weight if model.output_proj is not None else model.tgt_embed.weight


def _probes(generator: TextGenerator) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) pairs to compare an export with: sources made of unambiguous
    dictionary entries, targets the model's own greedy translations (eos included)."""
    d = generator.source_dictionary
    counts = Counter(d.symbols)
    ids = [i for i, s in enumerate(d.symbols) if i >= len(SPECIALS) and counts[s] == 1]
    if generator.lang_code == "source":
        ids = [i for i in ids if not d.symbols[i].startswith("<lang:")]
    step = max(len(ids) // 12, 1)
    sources = [ids[::step][:5], ids[1::step][:11]]
    if generator.lang_code == "source":
        sources = [[generator._lang_id, *s] for s in sources]
    sources = [s + [d.eos_idx] for s in sources]
    options = SearchOptions(beam_size=1, max_len_a=1.0, max_len_b=5)
    bos = torch.tensor(generator._lang_id) if generator.lang_code == "decoder" else None
    hyps = search.generate(generator.model, sources, options, bos=bos)
    return [(s, h[0].tokens.tolist()) for s, h in zip(sources, hyps, strict=True)]


def _pasero_log_probs(generator: TextGenerator, source: list[int], target: list[int]) -> Tensor:
    """Log-probability of each target token (eos included) under the pasero model."""
    first = generator._lang_id if generator.lang_code == "decoder" else generator.dictionary.eos_idx
    with torch.no_grad():
        logits = generator.model(torch.tensor([source]), torch.tensor([[first, *target[:-1]]]))
    return logits[0].float().log_softmax(-1).gather(1, torch.tensor(target)[:, None])[:, 0]


def max_length(options: SearchOptions, src_len: int, max_positions: int) -> int:
    """Tokens a source of `src_len` tokens (eos included) may get before eos: pasero's
    `search.max_lengths` for one sentence."""
    return max(0, min(int(options.max_len_a * src_len + options.max_len_b), max_positions - 1))



def verify(generator: TextGenerator, fmt: str, score: Any) -> None:
    """Refuse an export whose log-probabilities on the probe translations are not pasero's."""
    worst = 0.0
    for source, target in _probes(generator):
        theirs = torch.as_tensor(score(source, target), dtype=torch.float)
        ours = _pasero_log_probs(generator, source, target)
        if theirs.shape != ours.shape:
            worst = float("inf")
            break
        worst = max(worst, float((theirs - ours).abs().max()))
    if not worst <= TOLERANCE:
        raise CheckpointError(f"{generator.path}: the {fmt} export does not reproduce the model (log-probabilities "
                              f"differ by {worst:.2g}); this version of its runtime is not supported")


# -- usage notes written with each export ---------------------------------------------------------


def _write_readme(out: Path, generator: TextGenerator, fmt: str, usage: list[str]) -> None:
    """A README.md with the model's provenance and how to translate with it as pasero would."""
    o = generator.options
    meta = {k: v for k, v in generator.meta.items() if k in ("checkpoint", "step", "params")}
    lines = [f"# {generator.source_lang or 'src'}-{generator.target_lang or 'tgt'} translation model "
             f"exported by pasero-export ({fmt})", "", "Provenance: " + json.dumps(meta), "",
             f"Search settings of the model: beam_size={o.beam_size} len_penalty={o.len_penalty} "
             f"max_len_a={o.max_len_a} max_len_b={o.max_len_b} min_len={o.min_len}.", "", *usage]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
