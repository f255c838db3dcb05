"""Exceptions that reach the user as one-line messages.

Every error a user can fix by changing an input, a file or an option derives from
PaseroError; the command-line layer prints its message on one line and exits non-zero.
Anything else is a bug and keeps its traceback.
"""

import difflib
import errno
from collections.abc import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """'did you mean a or b?' for a misspelt name, '' when nothing known is close."""
    close = difflib.get_close_matches(name, list(known), n=3)
    return f"did you mean {' or '.join(close)}?" if close else ""


class PaseroError(Exception):
    """An error the user can act on; the message names the file/field and the fix."""


class ConfigError(PaseroError):
    """A wrong option, config key or value."""


class DataError(PaseroError):
    """An input file is missing, malformed or inconsistent."""


class DownloadError(PaseroError):
    """A download failed (network, HTTP status, truncated or unsafe archive)."""


class ChecksumError(DownloadError):
    """A downloaded file does not match its expected checksum."""


class CheckpointError(PaseroError):
    """A checkpoint is missing, corrupt or does not match the model/dictionary."""


class TrainingError(PaseroError):
    """Training cannot go on (e.g. it diverged): the checkpoints on disk are left as they were."""


class LockedError(PaseroError):
    """Another process holds the lock on a file or folder (its holder is in the message)."""


class DiskFullError(PaseroError):
    """An output could not be written for lack of space (nothing was left under its final name)."""

    def __init__(self, path: object):
        super().__init__(f"{path}: no space left on device; free some space and rerun "
                         "(nothing was left half-written under its final name)")


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a full disk. It reaches us as ENOSPC, or
    from torch.save as a C++ writer error whose text never says so, raised while handling the ENOSPC
    of the Python file it writes to."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "file write failed" in str(error) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
