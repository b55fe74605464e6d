"""Read a prepared TFDS dataset (a `data_dir`, local or a bucket) into numpy, without TensorFlow.

TFDS stores a prepared dataset as <data_dir>/<name>/<version>/ with dataset_info.json, features.json and
shards in one of three formats:
  array_record / parquet: read through `builder.as_data_source()`, which TFDS implements without TF;
  tfrecord (what `tfds.load` writes by default, so most existing copies): TFDS reads it only through
    tf.data, so we read the TFRecord framing ourselves (u64 length, u32 masked CRC32C of the length, the
    record, u32 masked CRC32C of the record; both checksums verified) and decode each tf.train.Example
    with TFDS's own NumPy parser (`features.deserialize_example_np`, protobuf + Pillow).
TFDS writes examples in the order of md5(split name + key) of their generator keys, not in generation
order; `canonical_order` undoes that for builders whose keys are 0..n-1 (MNIST's are the IDX indices).
"""
from __future__ import annotations

import hashlib
import struct

import numpy as np

from iirsnn_jax.data.common import CorruptFileError


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord(path, verify: bool = True) -> list[bytes]:
    """All records of one TFRecord file; CorruptFileError names the file when it is truncated or corrupt."""
    from etils import epath

    data = epath.Path(path).read_bytes()
    records, pos = [], 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise CorruptFileError(path, f"truncated record header at byte {pos}")
        header = data[pos:pos + 8]
        (length,), (length_crc,) = struct.unpack("<Q", header), struct.unpack("<I", data[pos + 8:pos + 12])
        if verify and masked_crc32c(header) != length_crc:
            raise CorruptFileError(path, f"bad length checksum at byte {pos}")
        end = pos + 12 + length
        if end + 4 > len(data):
            raise CorruptFileError(path, f"truncated: record at byte {pos} needs {length} bytes")
        record = data[pos + 12:end]
        if verify and masked_crc32c(record) != struct.unpack("<I", data[end:end + 4])[0]:
            raise CorruptFileError(path, f"bad record checksum at byte {pos}")
        records.append(record)
        pos = end + 4
    return records


def write_tfrecord(path, records) -> None:
    """The inverse of read_tfrecord (tests write small TFDS datasets in TF's default format with it)."""
    with open(path, "wb") as f:
        for r in records:
            header = struct.pack("<Q", len(r))
            f.write(header + struct.pack("<I", masked_crc32c(header)) + r + struct.pack("<I", masked_crc32c(r)))


def canonical_order(split: str, n: int) -> np.ndarray:
    """position[i] of the example with key i in a TFDS split written with keys 0..n-1 (md5 shuffle)."""
    salt = hashlib.md5(split.encode())
    hashes = []
    for i in range(n):
        h = salt.copy()
        h.update(str(i).encode())
        hashes.append(h.digest())  # big-endian bytes sort as the 128-bit integers TFDS sorts
    order = sorted(range(n), key=hashes.__getitem__)  # order[j] = key at position j
    position = np.empty(n, np.int64)
    position[np.asarray(order, np.int64)] = np.arange(n)
    return position


def read_split(builder_dir, split: str) -> tuple[list[dict], object]:
    """(examples as numpy dicts in file order, DatasetInfo) of one split of a prepared TFDS dataset."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(builder_dir))
    info = builder.info
    if split not in info.splits:
        raise CorruptFileError(builder_dir, f"no split {split!r} (has {list(info.splits)})")
    fmt = getattr(info.file_format, "value", info.file_format) or "tfrecord"
    if fmt in ("array_record", "parquet"):
        source = builder.as_data_source(split=split)
        return [source[i] for i in range(len(source))], info
    if fmt != "tfrecord":
        raise CorruptFileError(builder_dir, f"unsupported TFDS file format {fmt!r}")
    examples = []
    for path in info.splits[split].filepaths:
        for record in read_tfrecord(path):
            try:
                examples.append(info.features.deserialize_example_np(record))
            except Exception as e:  # protobuf / image decoding: a corrupt record
                raise CorruptFileError(path, f"cannot decode a record ({e})") from e
    expected = info.splits[split].num_examples
    if len(examples) != expected:
        raise CorruptFileError(builder_dir, f"split {split!r} has {len(examples)} examples, the dataset info "
                               f"says {expected}")
    return examples, info
