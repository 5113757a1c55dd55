"""Read ``.npy`` files fast: one read per file, each distinct header parsed once.

``np.load`` parses every file's header with ``ast``: for thousands of small result files that is most of
the time. ``readNpy`` reads the whole file in one call into a writable buffer, looks the header text up in a small cache
(result files of one sweep share a few headers), and wraps the bytes without copying. Anything
unusual (pickled objects, a short file, an unknown version) goes to ``np.load``, which raises the
usual errors for damaged files.
"""
from __future__ import annotations

import ast
import os
from typing import Any

import numpy as np
from numpy.lib import format as npformat

_MAGIC = b"\x93NUMPY"
_headers: dict[bytes, tuple[np.dtype[Any], tuple[int, ...], bool, int]] = {}
_HEADER_CACHE_LIMIT = 1024


def readNpy(path: str) -> Any:
    """The array stored in ``path``, writable (raises OSError or ValueError when it cannot be read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        data = bytearray(size)  # writable: the array handed out may be modified in place
        done = os.readv(fd, [data]) if size else 0
        while 0 < done < size:  # a short read (network file systems): go on where it stopped
            n = os.readv(fd, [memoryview(data)[done:]])
            if not n:
                break
            done += n
    finally:
        os.close(fd)
    if done < size:
        raise ValueError(f"{path}: read {done} of {size} bytes (the file shrank while being read)")
    parsed = _parse(data)
    if parsed is None:
        return np.load(path, allow_pickle=True)
    dtype, shape, fortran, offset = parsed
    count = 1
    for n in shape:
        count *= n
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: truncated .npy file: {len(data) - offset} bytes of data, expected {count * dtype.itemsize}")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


def _parse(data: bytearray) -> tuple[np.dtype[Any], tuple[int, ...], bool, int] | None:
    """(dtype, shape, fortran order, data offset) of a plain .npy header; None for anything else."""
    if data[:6] != _MAGIC or len(data) < 10:
        return None
    major = data[6]
    if major == 1:
        start, length = 10, int.from_bytes(data[8:10], "little")
    elif major in (2, 3):
        start, length = 12, int.from_bytes(data[8:12], "little")
    else:
        return None
    header = bytes(data[start : start + length])
    parsed = _headers.get(header)
    if parsed is None:
        try:
            d = ast.literal_eval(header.decode("latin1"))
            dtype = npformat.descr_to_dtype(d["descr"])
            shape, fortran = tuple(int(n) for n in d["shape"]), bool(d["fortran_order"])
        except Exception:
            return None
        if dtype.hasobject:
            return None
        parsed = (dtype, shape, fortran, start + length)
        if len(_headers) < _HEADER_CACHE_LIMIT:
            _headers[header] = parsed
    return parsed
