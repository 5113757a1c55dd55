"""Packed index sets: sorted, distinct indices as a few bytes, for the ledger (schema 4) and the manifest (v3).

A fitted plan with several run-time classes bundles every k-th setting (or blocks of settings) into one
array, so its indices are scattered: as ranges of consecutive indices they would be one range per index.
Packed, they are the gaps between members (``uint32``), zlib-compressed in blocks of ``BLOCK`` members:
a class of every 7th index packs to a few hundred bytes per 10^6 indices, an arbitrary set to about a byte
or two per member. The blocks are independent, so one member's position (its array task) costs decoding
one block (:meth:`Packed.rank`), and reading the whole set costs a block of memory at a time
(:meth:`Packed.chunks`), never an array of the whole set.

The format (little-endian)::

    b"PK1" | count u64 | last u64 | block u32 | blocks u32 | blocks x (first u64, bytes u32) | zlib blocks

Block ``k`` holds members ``k * block … (k + 1) * block − 1``: its first member in the header and the
gaps to the next ones (``uint32``) in its zlib stream.

This module reads the format in plain Python (:meth:`Packed.positionsList`: the in-job runner never imports
NumPy); the NumPy side (:func:`pack`, :meth:`Packed.block`, :meth:`Packed.rank`) imports it when called.
"""
from __future__ import annotations

import itertools
import struct
import zlib
from typing import TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MAGIC = b"PK1"
BLOCK = 1 << 16
_HEAD = struct.Struct("<QQII")
_ENTRY = struct.Struct("<QI")


class Packed:
    """One packed index set (see the module docstring). Immutable; ``bytes(p)`` is its blob."""

    __slots__ = ("blob", "count", "last", "blockSize", "firsts", "_offsets", "_cache")

    def __init__(self, blob: bytes) -> None:
        blob = bytes(blob)
        if blob[:3] != MAGIC or len(blob) < 3 + _HEAD.size:
            raise ValueError("not a packed index set")
        self.blob = blob
        self.count, self.last, self.blockSize, blocks = _HEAD.unpack_from(blob, 3)
        at = 3 + _HEAD.size
        self.firsts: list[int] = []
        self._offsets: list[int] = []
        pos = at + blocks * _ENTRY.size
        for k in range(blocks):
            first, size = _ENTRY.unpack_from(blob, at + k * _ENTRY.size)
            self.firsts.append(first)
            self._offsets.append(pos)
            pos += size
        self._offsets.append(pos)
        if pos != len(blob) or blocks != -(-self.count // self.blockSize if self.blockSize else 0):
            raise ValueError("packed index set: truncated or inconsistent")
        self._cache: tuple[int, Any] | None = None

    def __len__(self) -> int:
        return int(self.count)

    def __bytes__(self) -> bytes:
        return self.blob

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Packed) and other.blob == self.blob

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Packed({self.count} indices {self.first}…{self.last}, {len(self.blob)} bytes)"

    @property
    def first(self) -> int:
        return self.firsts[0] if self.firsts else 0

    def _gaps(self, k: int) -> bytes:
        return zlib.decompress(self.blob[self._offsets[k] : self._offsets[k + 1]])

    # --- plain Python (the in-job runner) -----------------------------------------------------------
    def blockList(self, k: int) -> list[int]:
        raw = self._gaps(k)
        gaps = struct.unpack(f"<{len(raw) // 4}I", raw)
        return list(itertools.accumulate(gaps, initial=self.firsts[k]))

    def positionsList(self, a: int, b: int) -> list[int]:
        """The members at positions ``a … b − 1``, as a list."""
        a, b = max(0, a), min(self.count, b)
        out: list[int] = []
        s = self.blockSize
        for k in range(a // s, -(-b // s) if b > a else a // s):
            part = self.blockList(k)
            out += part[max(0, a - k * s) : b - k * s]
        return out

    # --- NumPy ------------------------------------------------------------------------------------------
    def block(self, k: int) -> "npt.NDArray[np.int64]":
        """Members ``k * blockSize …`` of block ``k`` (int64; the last one decoded is kept)."""
        import numpy as np

        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]  # type: ignore[no-any-return]
        gaps = np.frombuffer(self._gaps(k), dtype="<u4")
        out = np.empty(len(gaps) + 1, dtype=np.int64)
        out[0] = self.firsts[k]
        np.cumsum(gaps, out=out[1:])
        out[1:] += self.firsts[k]
        out.flags.writeable = False
        self._cache = (k, out)
        return out

    def chunks(self) -> Iterator[tuple[int, "npt.NDArray[np.int64]"]]:
        """(position of its first member, members) of each block, in order."""
        for k in range(len(self.firsts)):
            yield k * self.blockSize, self.block(k)

    def positions(self, a: int, b: int) -> "npt.NDArray[np.int64]":
        """The members at positions ``a … b − 1``."""
        import numpy as np

        a, b = max(0, a), min(self.count, b)
        s = self.blockSize
        parts = [self.block(k)[max(0, a - k * s) : b - k * s] for k in range(a // s, -(-b // s))] if b > a else []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def array(self) -> "npt.NDArray[np.int64]":
        return self.positions(0, self.count)

    def rank(self, values: "npt.NDArray[np.int64]") -> "tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]":
        """(position, is a member) of each of ``values``: the position is where it is or would go. Decodes the
        blocks the values fall in, once each."""
        import numpy as np

        v = np.asarray(values, dtype=np.int64)
        pos = np.zeros(v.shape, dtype=np.int64)
        hit = np.zeros(v.shape, dtype=bool)
        if not self.count or not v.size:
            return pos, hit
        firsts = np.asarray(self.firsts, dtype=np.int64)
        blk = np.searchsorted(firsts, v, side="right") - 1
        pos[blk < 0] = 0
        for k in np.unique(blk[blk >= 0]).tolist():
            at = np.flatnonzero(blk == k)
            members = self.block(k)
            p = np.searchsorted(members, v[at])
            pos[at] = k * self.blockSize + p
            hit[at] = members[np.minimum(p, len(members) - 1)] == v[at]
        return pos, hit


def packChunks(chunks: Iterable["npt.NDArray[np.int64]"], block: int | None = None) -> bytes:
    """Pack sorted, distinct indices given as consecutive arrays (cut anywhere): the blob (``block``
    members a block; default ``BLOCK``)."""
    import numpy as np

    block = block or BLOCK

    entries: list[bytes] = []
    bodies: list[bytes] = []
    count = 0
    last = 0
    pending = np.zeros(0, dtype=np.int64)

    def flush(members: "npt.NDArray[np.int64]") -> None:
        gaps = np.diff(members)
        if len(gaps) and (int(gaps.min()) < 1 or int(gaps.max()) > 0xFFFFFFFF):
            raise ValueError("packed index set: indices must be sorted, distinct and less than 2^32 apart")
        body = zlib.compress(gaps.astype("<u4").tobytes(), 6)
        entries.append(_ENTRY.pack(int(members[0]), len(body)))
        bodies.append(body)

    for chunk in chunks:
        c = np.asarray(chunk, dtype=np.int64)
        if not len(c):
            continue
        if count and int(c[0]) <= last:
            raise ValueError("packed index set: indices must be sorted and distinct")
        count += len(c)
        last = int(c[-1])
        pending = np.concatenate([pending, c]) if len(pending) else c
        while len(pending) >= block:
            flush(pending[:block])
            pending = pending[block:]
    if len(pending):
        flush(pending)
    return MAGIC + _HEAD.pack(count, last, block, len(entries)) + b"".join(entries) + b"".join(bodies)


def pack(indices: "npt.NDArray[np.int64]", block: int | None = None) -> Packed:
    """Sorted, distinct indices, packed."""
    return Packed(packChunks([indices], block))
