"""Binarized corpora in fairseq's memory-mapped indexed-dataset format (`.bin` + `.idx`).

`PREFIX.bin` holds the token ids of all sentences back to back; `PREFIX.idx` is:

    magic    b"MMIDIDX\\x00\\x00"   (9 bytes)
    version  uint64 = 1           (little-endian, like every number below)
    dtype    uint8 code: 1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 double,
             8 uint16, 9 uint32, 10 uint64
    len      uint64, the number of sentences
    sizes    int32[len], tokens per sentence
    pointers int64[len], byte offset of each sentence in the .bin file

This is exactly what fairseq's MMapIndexedDatasetBuilder writes, so fairseq reads our data
and we read fairseq's. (Megatron-LM's variant of the format, which adds a document index
after `len`, is a different format and is refused.)
Both files are memory-mapped: opening a corpus costs no memory, whatever its size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pasero.errors import DataError, DiskFullError, is_disk_full
from pasero.files import temp_beside

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {
    np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
    np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.uint16): 8,
    np.dtype(np.uint32): 9, np.dtype(np.uint64): 10,
}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
CODE_DTYPES[7] = np.dtype(np.float64)  # fairseq's "double" is float64 as well
_HEADER = struct.Struct("<9sQBQ")  # magic, version, dtype code, len


def index_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.idx")


def data_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}.bin")


def dataset_exists(prefix: str | os.PathLike) -> bool:
    return index_path(prefix).is_file() and data_path(prefix).is_file()


def best_dtype(vocab_size: int) -> np.dtype:
    """The smallest id type fairseq uses: uint16 below 65,500 symbols, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


class IndexedDataset:
    """Read-only, memory-mapped access to a binarized corpus: `ds[i]` is sentence i's ids."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = str(prefix)
        if not dataset_exists(prefix):
            raise DataError(f"{prefix}: no binarized data ({prefix}.idx and {prefix}.bin); run pasero-binarize")
        self._open()

    def _open(self) -> None:
        idx = index_path(self.prefix)
        buffer = _memmap(idx)
        if len(buffer) < _HEADER.size:
            raise DataError(f"{idx}: truncated index file; binarize the data again")
        magic, version, code, length = _HEADER.unpack_from(buffer)
        if magic != MAGIC or version != VERSION or code not in CODE_DTYPES:
            raise DataError(f"{idx}: not a fairseq mmap index (magic, version or dtype); binarize again")
        self.dtype = CODE_DTYPES[code]
        expected = _HEADER.size + 12 * length
        if len(buffer) != expected:
            raise DataError(f"{idx}: index size does not match its {length} sentences; binarize again")
        self.sizes = np.frombuffer(buffer, dtype=np.int32, count=length, offset=_HEADER.size)
        self.pointers = np.frombuffer(buffer, dtype=np.int64, count=length, offset=_HEADER.size + 4 * length)
        self._data = _memmap(data_path(self.prefix)).view(np.uint8)
        needed = int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize if length else 0
        if len(self._data) < needed:
            raise DataError(f"{data_path(self.prefix)}: truncated data file; binarize again")

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> np.ndarray:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} out of range ({len(self)} sentences)")
        start = int(self.pointers[i])
        return self._data[start:start + int(self.sizes[i]) * self.dtype.itemsize].view(self.dtype)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def num_tokens(self) -> int:
        return int(self.sizes.sum(dtype=np.int64))

    # Data loader workers receive the prefix and map the files again.
    def __getstate__(self) -> str:
        return self.prefix

    def __setstate__(self, prefix: str) -> None:
        self.prefix = prefix
        self._open()


class IndexedDatasetBuilder:
    """Writes a dataset sentence by sentence; files get their final names in `finalize()`."""

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype | type = np.uint16):
        self.prefix = str(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            raise ValueError(f"unsupported dtype {self.dtype}")
        self._sizes: list[np.ndarray] = []
        Path(self.prefix).parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp_data = temp_beside(data_path(self.prefix))
        self._tmp_index: str | None = None
        self._file = os.fdopen(fd, "wb")

    def add(self, ids: np.ndarray | Sequence[int]) -> None:
        """Append one sentence."""
        self.add_many(np.asarray(ids), [len(ids)])

    def add_many(self, ids: np.ndarray, sizes: Sequence[int] | np.ndarray) -> None:
        """Append several sentences at once: their concatenated ids and their lengths."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(self.dtype).max) and self.dtype.kind in "ui":
            raise ValueError(f"ids out of range for {self.dtype}")
        self._file.write(ids.astype(self.dtype, copy=False).tobytes())
        self._sizes.append(np.asarray(sizes, dtype=np.int32))

    def merge(self, prefix: str | os.PathLike) -> None:
        """Append a whole dataset of the same dtype (fast: copies the .bin bytes)."""
        other = IndexedDataset(prefix)
        if other.dtype != self.dtype:
            raise ValueError(f"cannot merge {other.dtype} data into a {self.dtype} dataset")
        self._sizes.append(np.array(other.sizes, dtype=np.int32))
        with open(data_path(prefix), "rb") as f:
            shutil.copyfileobj(f, self._file, 1 << 22)

    def finalize(self) -> None:
        """Write the index and give both files their final names (.idx last)."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, dtype=np.int32)
        pointers = np.zeros(len(sizes), dtype=np.int64)
        np.cumsum(sizes[:-1], dtype=np.int64, out=pointers[1:])
        pointers *= self.dtype.itemsize
        idx = index_path(self.prefix)
        fd, tmp_idx = temp_beside(idx)
        self._tmp_index = tmp_idx
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(MAGIC, VERSION, DTYPE_CODES[self.dtype], len(sizes)))
            f.write(sizes.astype("<i4").tobytes())
            f.write(pointers.astype("<i8").tobytes())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(idx)  # never pair a stale index with new data
        os.replace(self._tmp_data, data_path(self.prefix))
        os.replace(tmp_idx, idx)

    def discard(self) -> None:
        """Drop everything written so far (on error)."""
        self._file.close()
        for path in filter(None, (self._tmp_data, self._tmp_index)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __enter__(self) -> IndexedDatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        failed_here = False
        if exc is None:
            try:
                self.finalize()
                return
            except BaseException as e:
                exc, failed_here = e, True
        self.discard()
        if is_disk_full(exc):
            raise DiskFullError(f"{self.prefix}.bin/.idx") from exc
        if failed_here:
            raise exc


def _memmap(path: Path) -> np.ndarray:
    """Map a file read-only (an empty file gives an empty array: mmap refuses those)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")

