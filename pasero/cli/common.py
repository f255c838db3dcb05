"""What every pasero command shares: logging set-up and the one-line error contract."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence

from pasero.errors import DiskFullError, PaseroError, is_disk_full


def setup_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if verbose or os.environ.get("PASERO_DEBUG") else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def command(func: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a command's main so user errors print one line and exit non-zero.

    PaseroError -> `pasero-xxx: error: message` and exit code 2; Ctrl-C -> 130.
    Console scripts pass the returned code to sys.exit; tests call main(argv) directly.
    Set PASERO_DEBUG=1 to see the traceback of a user error.
    """

    @functools.wraps(func)
    def main(argv: Sequence[str] | None = None) -> int:
        prog = os.path.basename(sys.argv[0]) or "pasero"
        try:
            code = func(argv)
        except PaseroError as e:
            if os.environ.get("PASERO_DEBUG"):
                raise
            print(f"{prog}: error: {e}", file=sys.stderr)
            code = 2
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            code = 130
        except (OSError, RuntimeError) as e:  # a full disk outside the outputs (a log, a cache)
            if not is_disk_full(e) or os.environ.get("PASERO_DEBUG"):
                raise
            print(f"{prog}: error: {DiskFullError(getattr(e, 'filename', None) or 'a file')}", file=sys.stderr)
            code = 2
        return code or 0

    return main
