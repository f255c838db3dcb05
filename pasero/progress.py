"""Progress bars for the long steps (decoding, binarization, tokenizer sampling, downloads).

A bar is drawn only when stderr is a terminal: a log file (a Snakemake rule's, a SLURM job's)
stays free of redraws and gets the steps' own summary lines instead.
"""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int | None, desc: str | None, unit: str, disable: bool = False, **options: Any) -> Any:
    """A tqdm bar on stderr (rate, ETA), disabled when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=disable or not sys.stderr.isatty(), dynamic_ncols=True,
                **options)
