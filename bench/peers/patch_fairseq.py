"""Patch fairseq 0.12.2 (and hydra-core 1.0.7) so that it builds, imports and trains on Python 3.11,
torch 2.13 and numpy 2.

    python bench/peers/patch_fairseq.py --sdist FAIRSEQ_SOURCE_DIR   # the unpacked PyPI sdist, before building
    python bench/peers/patch_fairseq.py VENV_SITE_PACKAGES            # the installed packages

Run by bench/peers/build_fairseq.sh, in that order. Every patch is idempotent (a second run changes
nothing and says so) and says why it is needed; nothing else is touched.

Not patched, on purpose:
- checkpoint loading: torch >= 2.6 loads with weights_only=True by default, which refuses the
  argparse.Namespace and omegaconf objects in a fairseq checkpoint; set
  `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` in the environment (bench/peers/side_by_side.py does, for every
  fairseq command);
- `--bf16` on CPU: fairseq 0.12.2's --bf16 implies --tpu (options.py) and fails without torch_xla;
  fairseq-generate has no bf16 at all (only --fp16). fairseq is benchmarked in fp32, as it ships;
- torchaudio is not installed (see build_fairseq.sh): only the speech tasks import it, lazily.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# `name: SomeConfig = SomeConfig()` and `field(default=SomeConfig())`: Python 3.11's dataclasses
# reject any unhashable default (a dataclass instance with eq=True has __hash__ = None) with
# "mutable default ... is not allowed: use default_factory" (at import: fairseq-train fails before
# anything else). Both become field(default_factory=SomeConfig). The files: fairseq's FairseqConfig
# (dataclass/configs.py) and TransformerConfig (models/transformer/transformer_config.py),
# hydra-core 1.0.7's own config (hydra/conf/__init__.py), and the projects under fairseq/examples
# that fairseq-train loads with --user-dir (data2vec, wav2vec-U, speech_recognition/new), which
# fail the same way. Every file of the two packages is scanned; only dataclass fields match.
ANNOTATED_DEFAULT = re.compile(r"^(?P<head>[ \t]+\w+: (?P<cls>\w+) = )(?P=cls)\(\)[ \t]*$", re.MULTILINE)
FIELD_DEFAULT = re.compile(r"field\(default=(?P<cls>[A-Z]\w*)\(\)\)")
DATACLASSES_IMPORT = re.compile(r"^from dataclasses import (?P<names>[^(\n]+)$", re.MULTILINE)
MUTABLE_DEFAULT_PACKAGES = ["fairseq", "hydra"]


@dataclass(frozen=True)
class Replace:
    """Replace `old` by `new` once in `path`, for `reason`; already patched when `new` is there."""

    path: str
    old: str
    new: str
    reason: str


SDIST_PATCHES = [
    Replace(
        "setup.py",
        'if "READTHEDOCS" in os.environ:\n',
        "# patched: build only the extensions whose sources the sdist ships\n"
        "extensions = [e for e in extensions if all(os.path.exists(s) for s in e.sources)]\n\n"
        'if "READTHEDOCS" in os.environ:\n',
        "the PyPI sdist of 0.12.2 lacks the C++ sources of fairseq.libbase, fairseq.libnat and "
        "alignment_train_cpu_binding (fairseq/clib/libbase, fairseq/clib/libnat, examples/operators), which "
        "setup.py compiles whenever torch is importable (--no-build-isolation): `ninja: error: "
        "'.../balanced_assignment.cpp' ... missing`. They serve BASE layers, the Levenshtein/NAT models "
        "and alignment training, not translation; libbleu and the Cython helpers are built as usual",
    ),
]

REPLACEMENTS = [
    Replace(
        "fairseq/dataclass/initialize.py",
        "        v = FairseqConfig.__dataclass_fields__[k].default\n",
        "        f = FairseqConfig.__dataclass_fields__[k]\n"
        "        v = f.default_factory() if f.default is MISSING_FIELD else f.default  # patched\n",
        "hydra_init() registers each FairseqConfig group with its field's `.default`; after the "
        "default_factory patch that default is dataclasses.MISSING, so build it from the factory",
    ),
    Replace(
        "fairseq/dataclass/initialize.py",
        "from omegaconf import DictConfig, OmegaConf\n",
        "from omegaconf import DictConfig, OmegaConf\nfrom dataclasses import MISSING as MISSING_FIELD  # patched\n",
        "the name the patch above compares with",
    ),
    Replace(
        "fairseq/modules/transformer_layer.py",
        "        self.load_to_BT = True\n",
        "        self.load_to_BT = False  # patched: BetterTransformer fast path off\n",
        "the BetterTransformer fast path (torch._transformer_encoder_layer_fwd, taken in eval mode) "
        "calls the private op with the arguments of torch 1.12; torch 2.x wants a mask type too and raises "
        "`RuntimeError: Mask Type should be defined` when decoding from a loaded checkpoint",
    ),
    Replace(
        "fairseq/data/data_utils.py",
        "                    np.int,\n",
        "                    np.int64,  # patched\n",
        "numpy >= 1.24 removed the np.int alias (wav2vec's compute_mask_indices; never on the MT path, "
        "patched so that it cannot crash)",
    ),
    Replace(
        "fairseq/modules/dynamic_crf_layer.py",
        'np.float("inf")',
        'np.float64("inf")',
        "numpy >= 1.24 removed the np.float alias (the CRF layer of NAT models; not on the MT path)",
    ),
]


def patch_mutable_defaults(text: str) -> tuple[str, int]:
    text, n_annotated = ANNOTATED_DEFAULT.subn(r"\g<head>field(default_factory=\g<cls>)", text)
    text, n_field = FIELD_DEFAULT.subn(r"field(default_factory=\g<cls>)", text)
    if n_annotated:
        text = import_field(text)
    return text, n_annotated + n_field


def import_field(text: str) -> str:
    """Make sure `field` is imported from dataclasses (a file that used plain defaults may lack it)."""
    found = DATACLASSES_IMPORT.search(text)
    if found is None:
        raise SystemExit("no `from dataclasses import ...` line to add `field` to")
    names = [n.strip() for n in found.group("names").split(",")]
    if "field" in names:
        return text
    return text[:found.start("names")] + ", ".join(names + ["field"]) + text[found.end("names"):]


def patch_package_defaults(site: Path, package: str) -> None:
    for path in sorted((site / package).rglob("*.py")):
        text, count = patch_mutable_defaults(path.read_text())
        if count:
            path.write_text(text)
            print(f"{path.relative_to(site)}: {count} mutable dataclass default(s) -> default_factory")


def apply_replace(site: Path, patch: Replace) -> str:
    """Apply a patch once. `new` is looked for first, as it may contain `old` (an added line); `old`
    must never contain `new`, or an unpatched file would read as patched."""
    path = site / patch.path
    text = path.read_text()
    if patch.new in text:  # checked first: a patch may keep the original line (an added import)
        return "already patched"
    if patch.old in text:
        path.write_text(text.replace(patch.old, patch.new, 1))
        return "patched"
    raise SystemExit(f"{path}: neither the original nor the patched text was found (another fairseq version?)")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--sdist":
        for patch in SDIST_PATCHES:
            print(f"{patch.path}: {apply_replace(Path(argv[1]), patch)} ({patch.reason})")
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    for package in MUTABLE_DEFAULT_PACKAGES:
        patch_package_defaults(site, package)
    print(f"{', '.join(MUTABLE_DEFAULT_PACKAGES)}: no mutable dataclass default left")
    for patch in REPLACEMENTS:
        print(f"{patch.path}: {apply_replace(site, patch)} ({patch.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
