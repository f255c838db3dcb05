"""Small file helpers shared by every stage: atomic outputs and strict UTF-8 reading.

Outputs are written to a temporary file beside their final name and renamed only on
success, so an interrupted or failing command never leaves a partial file that a
resumed pipeline would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pasero.errors import DataError, DiskFullError, LockedError, is_disk_full

logger = logging.getLogger(__name__)


def temp_beside(path: Path) -> tuple[int, str]:
    """A temporary file next to `path`, with the permissions a plain open() would give.

    Temporary files of `path` left by a killed writer (up to a whole checkpoint each) are removed
    first: one process writes a given output at a time (Snakemake jobs, the locked trainer).
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.????????.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _name_the_output(e, path)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path (same folder) that is renamed to `path` if the block succeeds.

    For libraries that insist on writing a file themselves (torch.save, sentencepiece).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _name_the_output(e, path)
        raise


class LogFile(logging.FileHandler):
    """A log file that, when it cannot be written (a full disk), says so once on stderr and
    carries on, instead of printing a traceback for every further line."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, encoding="utf-8")
        self.failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            reason = "no space left on device" if error is not None and is_disk_full(error) else str(error)
            print(f"pasero: warning: cannot write to {self.baseFilename} ({reason}); logging to the console only",
                  file=sys.stderr)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True) -> Iterator[None]:
    """Exclusive lock on `.{name}.lock` beside `path`, held for the block (POSIX flock, released by
    the kernel even after kill -9).

    The lock file names its holder (pid and host), so that with wait=False a refused caller can
    say who holds it (LockedError). Where the file system has no locks the block runs unlocked,
    with a warning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+", encoding="utf-8") as f:
        try:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            raise LockedError(f"{lock_path} is held by {f.read().strip() or 'another process'}") from None
        except (ImportError, OSError) as e:
            logger.warning("cannot lock %s (%s): concurrent runs are not prevented", lock_path, e)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield  # closing the file releases the lock


def _name_the_output(error: BaseException, path: Path) -> None:
    """A full disk says which output it was writing, not just "No space left"."""
    if is_disk_full(error):
        raise DiskFullError(path) from error


def invalid_utf8(where: object, lineno: int, byte: int) -> DataError:
    """The one message for a line that is not UTF-8: which file (or stdin) and line, and the fix."""
    return DataError(f"{where}:{lineno}: invalid UTF-8 (byte {byte}); re-encode it as UTF-8")


def decode_line(raw: bytes, where: object, lineno: int) -> str:
    """A line read in binary, decoded; invalid UTF-8 is a DataError naming `where` and the line,
    not a UnicodeDecodeError deep inside a pipeline step."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_utf8(where, lineno, e.start) from None


def expand_langs(text: str, src: str | None, tgt: str | None) -> str:
    """`{src}`, `{tgt}` and `{pair}` (src-tgt) replaced with language codes, so that one path or
    config serves every language pair."""
    return text.replace("{src}", src or "").replace("{tgt}", tgt or "").replace("{pair}", f"{src}-{tgt}")


def lang_of(path: str | os.PathLike) -> str:
    """A text file's language: its extension, as the pipeline names its text (train.de of de-en
    and of de-fr are both German)."""
    path = Path(path)
    return path.suffix.lstrip(".") or path.name


def read_lines(path: str | os.PathLike) -> Iterator[str]:
    """Yield the lines of a UTF-8 text file without their newline.

    Invalid UTF-8 is a DataError naming the file and line, not a UnicodeDecodeError
    deep inside a pipeline step. A byte-order mark (U+FEFF, as some Windows editors write)
    is dropped from the first line: otherwise it stays glued to the first word and becomes
    a token, a dictionary entry or a TSV header cell of its own.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = decode_line(raw, path, lineno)
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            yield line.rstrip("\r\n")


def count_lines(path: str | os.PathLike) -> int:
    """Number of lines of a file, counted in binary chunks (fast on large corpora)."""
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")
