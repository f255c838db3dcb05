"""Fetching and unpacking corpus archives: resumable, retried, verified, atomic and safe.

Corpus archives are large (the TED talks are ~350 MB) and are fetched on clusters whose
jobs get killed and whose networks drop connections, so a download:
- resumes from its `.part` file with an HTTP Range request instead of starting over;
- retries with exponential back-off, as long as the failures are transient;
- is verified against the md5/sha256 of the config before it gets its final name, so a
  file under the final name is always complete;
- is extracted into a temporary folder renamed when complete, refusing members that
  would land outside that folder (`../`, absolute names, links pointing outside).
Jobs preparing different pairs of one corpus share the raw folder: `fetch` holds a lock
file per archive, so only one of them downloads and extracts it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.client
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from pasero import __version__
from pasero.errors import ChecksumError, ConfigError, DownloadError
from pasero.files import file_lock
from pasero.progress import progress_bar

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 16
MAX_DELAY = 60.0
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")


@dataclass(frozen=True)
class Checksum:
    """An expected digest, written `md5:HEX` or `sha256:HEX` in config and on the command line."""

    algorithm: str
    hexdigest: str

    @classmethod
    def parse(cls, spec: str) -> Checksum:
        algorithm, _, digest = spec.partition(":")
        algorithm, digest = algorithm.strip().lower(), digest.strip().lower()
        sizes = {"md5": 32, "sha256": 64}
        if algorithm not in sizes or len(digest) != sizes[algorithm] or not _is_hex(digest):
            raise ConfigError(f"checksum {spec!r}: expected md5:<32 hex digits> or sha256:<64 hex digits>")
        return cls(algorithm, digest)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks (archives do not fit in memory)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, checksum: Checksum, name: str | None = None) -> None:
    """Raise ChecksumError, naming the file, the expected and the actual sum, on a mismatch."""
    actual = file_digest(path, checksum.algorithm)
    if actual != checksum.hexdigest:
        raise _mismatch(name or str(path), checksum, actual)


def _mismatch(name: str, checksum: Checksum, actual: str) -> ChecksumError:
    return ChecksumError(
        f"{name}: {checksum.algorithm} mismatch: expected {checksum.hexdigest}, got {actual}; "
        "the download is corrupt or the checksum in the config is wrong (rerun to download again)"
    )


DIRECTION_FIELDS = ("{src}", "{tgt}")


def direction_urls(url: str, checksum: str | None, src: str, tgt: str) -> list[str]:
    """The URLs a pair needs from a config URL: `{src}` and `{tgt}` name one archive per direction,
    and a pair takes both of its directions' (IWSLT'17's multilingual test archives each hold one
    side: the reference of de-it is the source side of it-de's archive)."""
    if not any(field in url for field in DIRECTION_FIELDS):
        return [url]
    if checksum:
        raise ConfigError(f"{url}: a URL with {{src}}/{{tgt}} names one archive per direction, so one checksum "
                          "cannot verify it; set checksum: null (the download log gives each archive's sha256)")
    return list(dict.fromkeys(url.replace("{src}", a).replace("{tgt}", b) for a, b in ((src, tgt), (tgt, src))))


def local_name(url: str) -> Path:
    """Where a URL is stored under the raw folder: `host/path`, like `wget -x`.

    Keeping the URL's path avoids collisions between archives with the same file name
    (IWSLT'17 has a `de-en.tgz` for training and another one for testing).
    """
    parts = urllib.parse.urlsplit(url)
    segments = [s for s in parts.path.split("/") if s not in ("", ".", "..")]
    if not segments:
        raise ConfigError(f"URL {url!r} does not name a file")
    host = (parts.netloc or "local").replace(":", "_")
    return Path(host, *segments)


def extraction_dir(archive: Path) -> Path:
    """The folder an archive is unpacked into: its name without the archive suffix."""
    name = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return archive.with_name(name[: -len(suffix)])
    return archive.with_name(name + ".d")


def fetch(url: str, raw_dir: Path, checksum: Checksum | None = None, **options) -> Path:
    """Download `url` into `raw_dir` (if not there and verified already) and extract it.

    Returns the extraction folder for an archive, the downloaded file otherwise.
    `options` go to `download` (retries, backoff, timeout).
    """
    archive = Path(raw_dir) / local_name(url)
    with file_lock(archive):
        fresh = download(url, archive, checksum, **options)
        if not _is_archive(archive):
            return archive
        target = extraction_dir(archive)
        if fresh and target.exists():
            shutil.rmtree(target)  # unpacked from an older archive
        for stale in target.parent.glob(f".{target.name}.????????.tmp"):  # left by a killed job
            shutil.rmtree(stale, ignore_errors=True)
        return extract(archive, target)


def download(
    url: str,
    dest: Path,
    checksum: Checksum | None = None,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> bool:
    """Download `url` to `dest` atomically; return False if a verified `dest` was already there.

    The bytes go to `dest.part`, which a later call (or retry) continues with an HTTP Range
    request; `dest` appears only once complete and verified.
    """
    dest = Path(dest)
    if dest.exists() and _still_good(dest, checksum):
        return False
    if checksum is None:
        logger.warning("no checksum for %s: the download cannot be verified (add one to the config)", url)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _fetch_with_retries(url, part, retries, backoff, timeout)
    try:
        if checksum is not None:
            _verify_download(part, dest, checksum, url)
        else:
            check_complete(part, f"{url} (saved as {part})")
    except (ChecksumError, DownloadError):
        part.unlink()
        raise
    os.replace(part, dest)
    logger.info("downloaded %s (%d bytes)", dest, dest.stat().st_size)
    if checksum is None:
        logger.info("checksum of %s: sha256:%s (add it to the config to verify it)", dest, file_digest(dest, "sha256"))
    return True


def _still_good(dest: Path, checksum: Checksum | None) -> bool:
    """Whether a file already under the final name can be used. One that fails its checksum is kept
    until a new download verifies: the checksum in the config may be the one that is wrong."""
    if checksum is None:
        try:
            check_complete(dest, str(dest))
        except DownloadError as e:
            logger.warning("%s; deleting it and downloading it again", e)
            dest.unlink()
            return False
        logger.info("using %s (already downloaded, no checksum to verify)", dest)
        return True
    try:
        verify(dest, checksum)
    except ChecksumError as e:
        logger.warning("%s; downloading it again", e)
        return False
    logger.info("using %s (already downloaded, %s verified)", dest, checksum.algorithm)
    return True


def _verify_download(part: Path, dest: Path, checksum: Checksum, url: str) -> None:
    """Verify a fresh download; when the file it replaces has the same wrong sum, the server
    sent the same bytes twice and the checksum in the config is the likely culprit."""
    actual = file_digest(part, checksum.algorithm)
    if actual == checksum.hexdigest:
        return
    if dest.exists() and file_digest(dest, checksum.algorithm) == actual:
        raise ChecksumError(
            f"{dest} (from {url}): downloaded twice with the same {checksum.algorithm} {actual}, but the config "
            f"expects {checksum.hexdigest}: the checksum in the config is probably wrong (the file is kept; "
            f"if you trust the source, put {checksum.algorithm}:{actual} in the config)"
        )
    raise _mismatch(f"{dest} (from {url})", checksum, actual)


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<?xml version=\"1.0\"?>\n<!doctype html")


def check_complete(path: Path, name: str) -> None:
    """Without a checksum, what can still be checked: an HTML page saved in place of a file (a login,
    error or mirror page) and an archive cut short (a stream without Content-Length that stopped)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith(_HTML_STARTS) and not path.name.lower().endswith((".html", ".htm")):
        raise DownloadError(f"{name}: the server sent an HTML page, not the file (an error or login page?); "
                            "check the URL in the config")
    lowered = path.name.lower().removesuffix(".part")
    try:
        if lowered.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"member {bad} is damaged")
        elif lowered.endswith(ARCHIVE_SUFFIXES):
            with tarfile.open(path, "r:*") as tar:
                for _ in tar:  # reads (and decompresses) to the end
                    pass
        elif lowered.endswith((".gz", ".bz2", ".xz")):
            opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}[Path(lowered).suffix]
            with opener(path, "rb") as f:
                while f.read(1 << 20):
                    pass
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError) as e:
        raise DownloadError(f"{name}: incomplete or damaged ({e or type(e).__name__}); rerun to download it "
                            "again, and add a checksum to the config to catch this at once") from None


class _Transient(Exception):
    """A failure worth retrying: dropped connection, timeout, server error."""


def _fetch_with_retries(url: str, part: Path, retries: int, backoff: float, timeout: float) -> None:
    failures = 0
    while True:
        before = _size(part)
        try:
            _fetch_once(url, part, timeout)
            return
        except _Transient as e:
            # Attempts that made progress do not count: a flaky link still finishes.
            failures = 1 if _size(part) > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"{url}: {e} (gave up after {retries} retries); check the network and the URL, "
                    f"then rerun: the download resumes from {part}"
                ) from None
            delay = min(backoff * 2 ** (failures - 1), MAX_DELAY)
            logger.warning("%s: %s; retrying in %.1f s (resuming at byte %d)", url, e, delay, _size(part))
            time.sleep(delay)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fetch_once(url: str, part: Path, timeout: float) -> None:
    """One HTTP request: continue `part` from its current size (or start over)."""
    offset = _size(part)
    headers = {"User-Agent": f"pasero/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the part file is not a prefix of the file anymore
            part.unlink()
            raise _Transient("server refused to resume; starting over") from None
        if e.code in (408, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; check the URL in the config") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (OSError, TimeoutError)) and not isinstance(e.reason, FileNotFoundError):
            raise _Transient(str(e.reason)) from None
        raise DownloadError(f"{url}: {e.reason}; check the URL in the config") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Transient(str(e) or type(e).__name__) from None
    with response:
        resumed = offset > 0 and getattr(response, "status", 200) == 206
        if offset and not resumed:
            logger.info("%s: server does not resume downloads; starting over", url)
            offset = 0
        content_range = response.headers.get("Content-Range", "")
        if resumed and not content_range.startswith(f"bytes {offset}-"):
            part.unlink()
            raise _Transient(f"server resumed at the wrong byte ({content_range!r}); starting over")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        _copy(response, part, "ab" if resumed else "wb", offset, total, url)
    if total is not None and _size(part) < total:
        raise _Transient(f"connection dropped at byte {_size(part)} of {total}")


def _copy(response, part: Path, mode: str, offset: int, total: int | None, url: str) -> None:
    progress = progress_bar(total, Path(urllib.parse.urlsplit(url).path).name, "B", initial=offset,
                            unit_scale=True, unit_divisor=1024)
    try:
        with open(part, mode) as f, progress:
            while chunk := response.read(CHUNK_SIZE):
                f.write(chunk)
                progress.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:
        if isinstance(e, OSError) and e.errno is not None and not isinstance(e, (ConnectionError, TimeoutError)):
            raise  # a local error (disk full, permissions): retrying would not help
        raise _Transient(f"connection dropped ({e or type(e).__name__})") from None


# --- extraction ---------------------------------------------------------------------------

def _is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(ARCHIVE_SUFFIXES) or tarfile.is_tarfile(path) or zipfile.is_zipfile(path)


def extract(archive: Path, target: Path) -> Path:
    """Unpack a tar or zip archive into `target`, which appears only once complete.

    Members escaping `target` (absolute names, `..`, links pointing outside) and device
    files are refused; a truncated or corrupt archive is a DownloadError.
    """
    archive, target = Path(archive), Path(target)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        if archive.name.lower().endswith(".zip") or (
            not archive.name.lower().endswith(ARCHIVE_SUFFIXES) and zipfile.is_zipfile(archive)
        ):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # another process finished first otherwise
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("extracted %s into %s", archive, target)
    return target


def _corrupt(archive: Path, error: BaseException) -> DownloadError:
    return DownloadError(
        f"{archive}: truncated or corrupt archive ({error or type(error).__name__}); "
        "delete it and rerun to download it again"
    )


def _extract_tar(archive: Path, root: Path) -> None:
    real_root = os.path.realpath(root)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:  # streaming: checks each member before writing it
                _check_tar_member(archive, member, real_root)
                if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                    logger.warning("%s: skipping special file %s", archive, member.name)
                    continue
                tar.extract(member, root, filter="data")
    except tarfile.FilterError as e:
        raise DownloadError(f"{archive}: {e}; refusing an unsafe archive") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as e:
        raise _corrupt(archive, e) from None


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _check_tar_member(archive: Path, member: tarfile.TarInfo, root: str) -> None:
    path = os.path.join(root, member.name)
    if os.path.isabs(member.name) or not _inside(root, path):
        raise DownloadError(f"{archive}: member {member.name!r} would be written outside {root}; "
                            "refusing an unsafe archive")
    if member.issym() or member.islnk():
        base = os.path.dirname(path) if member.issym() else root
        link = os.path.join(base, member.linkname)
        if os.path.isabs(member.linkname) or not _inside(root, link):
            kind = "symlink" if member.issym() else "hard link"
            raise DownloadError(
                f"{archive}: {kind} {member.name!r} -> {member.linkname!r} points outside the archive; "
                "refusing an unsafe archive"
            )


def _extract_zip(archive: Path, root: Path) -> None:
    real_root = os.path.realpath(root)
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename
                escapes = not _inside(real_root, os.path.join(real_root, name))
                if os.path.isabs(name) or name.startswith("\\") or escapes:
                    raise DownloadError(
                        f"{archive}: member {name!r} would be written outside {real_root}; refusing an unsafe archive"
                    )
                zf.extract(info, root)  # zip symlinks are written as plain files
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise _corrupt(archive, e) from None
