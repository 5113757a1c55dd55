"""Save results atomically: a run killed mid-write never leaves a file that looks complete.

Each helper writes to a temporary name in the destination folder, flushes it to disk, then renames it
over the final name (``os.replace`` is atomic within one file system). Readers see the old file or the
new one, never half of one. Make the required file (config ``require``) the last one a run writes.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Callable, IO

import numpy as np

from pyexputils.models import FileSystemContext


def atomicWrite(path: str, data: bytes | str, *, fsync: bool = True) -> str:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, creating its folder; returns ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return _atomic(path, lambda f: f.write(payload), fsync)


def saveResult(where: FileSystemContext | str, filename: str, data: Any, *, fsync: bool = True) -> str:
    """Save ``data`` with ``np.save`` as ``filename`` in a save folder (a context or a path), atomically.

    ``filename`` should end in ``.npy`` (nothing is appended). Returns the path written.

    ```python
    saveResult(exp.buildSaveContext(idx), 'returns.npy', returns)
    ```
    """
    folder = where.resolve() if isinstance(where, FileSystemContext) else where
    array = np.asanyarray(data)
    return _atomic(os.path.join(folder, filename), lambda f: np.save(f, array, allow_pickle=array.dtype.hasobject), fsync)


def _atomic(path: str, write: Callable[[IO[bytes]], Any], fsync: bool) -> str:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would have made it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _readUmask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _readUmask()
