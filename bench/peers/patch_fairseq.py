"""Patch an installed fairseq 0.12.2 (and hydra-core 1.0.7) so that it imports and trains on Python 3.11
and torch 2.13.

    python bench/peers/patch_fairseq.py VENV_SITE_PACKAGES

Run by bench/peers/build_fairseq.sh after `pip install fairseq==0.12.2`. Every patch is idempotent (a
second run changes nothing and says so), and every patch says why it is needed. The patched files are
the installed copies in the given site-packages; nothing else is touched. Checkpoint loading needs,
besides, `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1` in the environment (torch >= 2.6 loads with
weights_only=True by default, and fairseq checkpoints hold an argparse.Namespace and omegaconf
objects); bench/peers/side_by_side.py sets it for every fairseq command.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# `name: SomeConfig = SomeConfig()` and `field(default=SomeConfig())`: Python 3.11's dataclasses
# reject any unhashable default (a dataclass instance with eq=True has __hash__ = None) with
# "mutable default ... is not allowed: use default_factory". Both become field(default_factory=...).
ANNOTATED_DEFAULT = re.compile(r"^(?P<head>\s+\w+: (?P<cls>\w+) = )(?P=cls)\(\)\s*$", re.MULTILINE)
FIELD_DEFAULT = re.compile(r"field\(default=(?P<cls>[A-Z]\w*)\(\)\)")

MUTABLE_DEFAULT_FILES = [
    "fairseq/dataclass/configs.py",
    "fairseq/models/transformer/transformer_config.py",
    "hydra/conf/__init__.py",
]


@dataclass(frozen=True)
class Replace:
    """Replace `old` by `new` once in `path`; already patched when `new` is there and `old` is not."""

    path: str
    old: str
    new: str
    reason: str


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
        'float("inf")',
        "numpy >= 1.24 removed the np.float alias (the CRF layer of NAT models; not on the MT path)",
    ),
]


def patch_mutable_defaults(text: str) -> tuple[str, int]:
    text, n_annotated = ANNOTATED_DEFAULT.subn(r"\g<head>field(default_factory=\g<cls>)", text)
    text, n_field = FIELD_DEFAULT.subn(r"field(default_factory=\g<cls>)", text)
    return text, n_annotated + n_field


def apply_replace(site: Path, patch: Replace) -> str:
    path = site / patch.path
    text = path.read_text()
    if patch.new in text:  # checked first: a patch may keep the original line (an added import)
        return "already patched"
    if patch.old in text:
        path.write_text(text.replace(patch.old, patch.new, 1))
        return "patched"
    raise SystemExit(f"{path}: neither the original nor the patched text was found (another fairseq version?)")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    for name in MUTABLE_DEFAULT_FILES:
        path = site / name
        text, count = patch_mutable_defaults(path.read_text())
        if count:
            path.write_text(text)
        print(f"{name}: {count} mutable dataclass default(s) -> default_factory" if count else
              f"{name}: no mutable dataclass default left")
    for patch in REPLACEMENTS:
        print(f"{patch.path}: {apply_replace(site, patch)} ({patch.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
