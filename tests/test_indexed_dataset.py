"""fairseq's mmap indexed-dataset format, byte for byte, and memory-mapped reading."""

import os
import pickle
import struct

import numpy as np
import pytest

from pasero.errors import DataError
from pasero.indexed_dataset import IndexedDataset, IndexedDatasetBuilder, best_dtype, dataset_exists

SENTENCES = [[5, 6, 2], [7, 2], [2], [65000, 4, 2]]


def expected_index(sizes, dtype_code, itemsize):
    """fairseq MMapIndexedDataset.Index layout: magic, <Q version, <B dtype, <Q len, sizes, pointers."""
    pointers = np.concatenate([[0], np.cumsum(sizes)[:-1]]) * itemsize
    return (b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", dtype_code)
            + struct.pack("<Q", len(sizes)) + struct.pack(f"<{len(sizes)}i", *sizes)
            + struct.pack(f"<{len(sizes)}q", *pointers.tolist()))


def build(prefix, sentences, dtype=np.uint16):
    builder = IndexedDatasetBuilder(prefix, dtype)
    for ids in sentences:
        builder.add(np.array(ids))
    builder.finalize()


def test_files_are_byte_identical_to_fairseq_format(tmp_path):
    build(tmp_path / "train.de", SENTENCES)
    sizes = [len(s) for s in SENTENCES]
    assert (tmp_path / "train.de.idx").read_bytes() == expected_index(sizes, 8, 2)  # 8 = uint16
    flat = [i for s in SENTENCES for i in s]
    assert (tmp_path / "train.de.bin").read_bytes() == struct.pack(f"<{len(flat)}H", *flat)
    assert sorted(os.listdir(tmp_path)) == ["train.de.bin", "train.de.idx"]  # no temporary files left


def test_int32_for_large_vocabularies(tmp_path):
    assert best_dtype(65499) == np.uint16 and best_dtype(65500) == np.int32
    build(tmp_path / "big", [[70000, 2], [3, 2]], dtype=best_dtype(80000))
    assert (tmp_path / "big.idx").read_bytes() == expected_index([2, 2], 4, 4)  # 4 = int32
    assert IndexedDataset(tmp_path / "big")[0].tolist() == [70000, 2]


def test_reads_back_memory_mapped_with_identical_ids(tmp_path):
    build(tmp_path / "data", SENTENCES)
    ds = IndexedDataset(tmp_path / "data")
    assert len(ds) == 4 and ds.dtype == np.uint16
    assert [ds[i].tolist() for i in range(len(ds))] == SENTENCES
    assert ds.sizes.tolist() == [3, 2, 1, 3] and ds.sizes.dtype == np.int32
    assert ds[-1].tolist() == SENTENCES[-1] and ds.num_tokens == 9
    assert isinstance(ds._data, np.memmap) and not ds[0].flags.owndata  # views of the mapped file
    assert not ds[0].flags.writeable
    with pytest.raises(IndexError):
        ds[4]
    clone = pickle.loads(pickle.dumps(ds))  # data loader workers re-map the files
    assert [x.tolist() for x in clone] == SENTENCES


def test_reads_a_hand_built_fairseq_dataset(tmp_path):
    sizes = [2, 3]
    (tmp_path / "fs.idx").write_bytes(expected_index(sizes, 5, 8))  # int64, fairseq's builder default
    (tmp_path / "fs.bin").write_bytes(struct.pack("<5q", 10, 2, 11, 12, 2))
    ds = IndexedDataset(tmp_path / "fs")
    assert ds.dtype == np.int64 and [x.tolist() for x in ds] == [[10, 2], [11, 12, 2]]


def test_merge_and_empty_datasets(tmp_path):
    build(tmp_path / "a", SENTENCES[:2])
    build(tmp_path / "empty", [])
    assert len(IndexedDataset(tmp_path / "empty")) == 0
    builder = IndexedDatasetBuilder(tmp_path / "ab", np.uint16)
    builder.merge(tmp_path / "a")
    builder.merge(tmp_path / "empty")
    builder.add_many(np.array([1, 2, 3, 2]), [2, 2])
    builder.finalize()
    assert [x.tolist() for x in IndexedDataset(tmp_path / "ab")] == SENTENCES[:2] + [[1, 2], [3, 2]]


def test_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetBuilder(tmp_path / "x", np.uint16) as builder:
            builder.add([4, 2])
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == [] and not dataset_exists(tmp_path / "x")
    with pytest.raises(ValueError):
        IndexedDatasetBuilder(tmp_path / "y", np.uint16).add([70000])


def test_corrupt_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="run pasero-binarize"):
        IndexedDataset(tmp_path / "missing")
    build(tmp_path / "d", SENTENCES)
    data = (tmp_path / "d.bin").read_bytes()
    (tmp_path / "d.bin").write_bytes(data[:-2])
    with pytest.raises(DataError, match="truncated data"):
        IndexedDataset(tmp_path / "d")
    (tmp_path / "d.bin").write_bytes(data)
    (tmp_path / "d.idx").write_bytes(b"TNTIDX\x00\x00" + (tmp_path / "d.idx").read_bytes()[8:])
    with pytest.raises(DataError, match="not a fairseq mmap index"):
        IndexedDataset(tmp_path / "d")
