"""The IDX file format of MNIST and Fashion-MNIST (gzipped or not)."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ganforge.registry import ConfigError

# IDX type codes -> numpy dtypes (big-endian, as the format stores them).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode the bytes of an IDX file: magic (0, 0, type, ndim), ndim big-endian sizes, the data."""
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decompress whatever the file is called
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ConfigError(f"{name}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise ConfigError(f"{name}: truncated or corrupt IDX file ({len(raw)} bytes, expected {expected})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a numpy array of its stored shape."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"IDX file not found: {path}")
    return parse_idx(path.read_bytes(), str(path))
