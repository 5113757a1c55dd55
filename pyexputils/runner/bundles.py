"""Compact index sets and array tasks, for sweeps of 10^7 indices (pure).

- :class:`IndexSet`: sorted, distinct indices. Held as ranges of consecutive indices (a fresh sweep is one
  range, whatever its size) or, when ranges would not be smaller, as one int64 array (8 bytes an index). It is
  a ``Sequence[int]``; :meth:`IndexSet.array` and :meth:`IndexSet.ranges` are for big consumers.
- :class:`Bundles`: an :class:`IndexSet` cut into array tasks of ``per`` consecutive members (the last task
  may hold fewer): what :func:`pyexputils.runner.plan.plan` makes. It is a ``Sequence[Sequence[int]]``
  (``tasks[t]`` is task ``t``'s list of indices), equal to the list of lists it stands for; it gives the
  ledger its attempt ranges (:meth:`Bundles.attemptRanges`) and the manifest its compact form
  (:meth:`Bundles.toJson`) without a Python object per index.
"""
from __future__ import annotations

import base64
from typing import Any, Iterable, Iterator, Sequence, overload

import numpy as np
import numpy.typing as npt

from pyexputils.runner.packed import Packed, packChunks

Array = npt.NDArray[np.int64]
CHUNK = 1 << 16  # indices looked at a time where a pass would otherwise allocate per index
PACK_RANGES = 4  # a ledger row of one attempt spanning more ranges of consecutive indices is packed
AttemptRow = tuple[int, int, int, int, int, "bytes | None"]  # lo, n, task, per, attempt, packed members


def _runs(idx: Array) -> tuple[Array, Array]:
    """(first index, length) of each run of consecutive values of a sorted array, in chunks."""
    total = _breaks(idx) + 1 if len(idx) else 0
    at = np.empty(total, dtype=np.int64)  # the position of each run's first value
    k = 0
    for a in range(0, len(idx), CHUNK):
        part = idx[max(0, a - 1) : a + CHUNK]
        brk = np.flatnonzero(np.diff(part) != 1) + 1 + max(0, a - 1)
        if a == 0:
            at[0] = 0
            k = 1
        at[k : k + len(brk)] = brk
        k += len(brk)
    n = np.empty(total, dtype=np.int64)
    if total:
        np.subtract(at[1:], at[:-1], out=n[:-1])
        n[-1] = len(idx) - at[-1]
    return idx[at], n


def _breaks(idx: Array) -> int:
    """How many times a sorted array steps by more than one (its runs, less one), in chunks."""
    return sum(int(np.count_nonzero(np.diff(idx[a : a + CHUNK + 1]) != 1)) for a in range(0, max(0, len(idx) - 1), CHUNK))


def _sortedUnique(idx: Array) -> bool:
    return all(bool(np.all(np.diff(idx[a : a + CHUNK + 1]) > 0)) for a in range(0, max(0, len(idx) - 1), CHUNK))


class IndexSet(Sequence[int]):
    """Sorted, distinct indices (see the module docstring). Immutable; build with :meth:`of`."""

    __slots__ = ("_lo", "_n", "_at", "_idx", "_len")

    def __init__(self, lo: Array | None, n: Array | None, idx: Array | None) -> None:
        self._idx = idx  # the indices, when held as an array
        self._lo = lo  # else: the first index of each range ...
        self._n = n  # ... its length ...
        self._at: Array | None = None if n is None else (np.cumsum(n) - n).astype(np.int64)  # ... its position
        self._len = len(idx) if idx is not None else int(n.sum()) if n is not None else 0

    @classmethod
    def of(cls, indices: Iterable[int] | "IndexSet" | Array) -> "IndexSet":
        """``indices`` (sorted and distinct, as a plan's requests are; sorted here when they are not)."""
        if isinstance(indices, IndexSet):
            return indices
        if isinstance(indices, range) and indices.step == 1:
            return cls.fromRanges([indices.start], [len(indices)])
        idx = indices if isinstance(indices, np.ndarray) else np.fromiter(indices, dtype=np.int64)
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if not _sortedUnique(idx):
            idx = np.unique(idx)
        if 3 * (_breaks(idx) + 1) > len(idx):  # ranges (24 bytes each) would not be smaller
            return cls(None, None, idx)
        lo, n = _runs(idx)
        return cls(lo, n, None)

    @classmethod
    def fromMask(cls, mask: npt.NDArray[np.bool_]) -> "IndexSet":
        """The positions where ``mask`` is true (a byte an index in; ranges out, or an array when they are not smaller)."""
        m = mask.view(np.int8)
        starts: list[Array] = []
        ends: list[Array] = []
        for a in range(0, len(m), CHUNK):
            part = m[a : a + CHUNK]
            d = np.diff(part, prepend=m[a - 1 : a] if a else np.zeros(1, dtype=np.int8))  # +1: a range starts, -1: one ended
            starts.append(np.flatnonzero(d == 1) + a)
            ends.append(np.flatnonzero(d == -1) + a)
        lo = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, dtype=np.int64)
        hi = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, dtype=np.int64)
        if len(hi) < len(lo):
            hi = np.append(hi, len(m))
        n = hi - lo
        if 3 * len(lo) <= int(n.sum()):
            return cls(lo, n, None)
        return cls(None, None, np.flatnonzero(mask).astype(np.int64))

    @classmethod
    def fromRanges(cls, lo: Sequence[int] | Array, n: Sequence[int] | Array) -> "IndexSet":
        """Sorted, disjoint ranges ``lo[k] … lo[k] + n[k] − 1`` (empty ones dropped)."""
        loA, nA = np.asarray(lo, dtype=np.int64).ravel(), np.asarray(n, dtype=np.int64).ravel()
        keep = nA > 0
        return cls(loA[keep].copy(), nA[keep].copy(), None)

    # --- Sequence[int] --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, k: int) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> "IndexSet": ...
    def __getitem__(self, k: int | slice) -> "int | IndexSet":
        if isinstance(k, slice):
            a, b, step = k.indices(self._len)
            if step != 1:
                return IndexSet.of(self.array()[a:b:step])
            return self.between(a, b)
        if k < 0:
            k += self._len
        if not 0 <= k < self._len:
            raise IndexError(k)
        return int(self.between(k, k + 1).array()[0])

    def __iter__(self) -> Iterator[int]:
        for a in range(0, self._len, CHUNK):
            yield from self.between(a, a + CHUNK).array().tolist()

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (int, np.integer)):
            return False
        r = self.rank(np.array([value, int(value) + 1], dtype=np.int64))
        return bool(r[1] > r[0])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IndexSet):
            return self._len == other._len and all(np.array_equal(x, y) for x, y in zip(self.ranges(), other.ranges()))
        if isinstance(other, (list, tuple, range)):
            return self._len == len(other) and self.array().tolist() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __array__(self, dtype: Any = None, copy: Any = None) -> Array:
        """``np.asarray(s)``: :meth:`array` (not one ``s[k]`` per index)."""
        a = self.array()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __repr__(self) -> str:
        lo, n = self.ranges()
        shown = ",".join(f"{a}" if m == 1 else f"{a}-{a + m - 1}" for a, m in zip(lo[:5].tolist(), n[:5].tolist()))
        return f"IndexSet({shown}{',…' if len(lo) > 5 else ''}; {self._len} indices)"

    # --- big consumers -------------------------------------------------------------------------------
    @property
    def isRanges(self) -> bool:
        return self._idx is None

    def array(self) -> Array:
        """Every index, as one int64 array (read-only when it is the set's own)."""
        if self._idx is not None:
            return self._idx
        assert self._lo is not None and self._n is not None and self._at is not None
        if len(self._lo) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.repeat(self._lo - self._at, self._n) + np.arange(self._len, dtype=np.int64)

    def ranges(self) -> tuple[Array, Array]:
        """(first index, length) of each run of consecutive indices."""
        if self._idx is not None:
            return _runs(self._idx)
        assert self._lo is not None and self._n is not None
        return self._lo, self._n

    def rank(self, values: Array | Sequence[int]) -> Array:
        """How many members are below each of ``values`` (the position each would take)."""
        v = np.asarray(values, dtype=np.int64)
        if self._idx is not None:
            return np.searchsorted(self._idx, v).astype(np.int64)
        assert self._lo is not None and self._n is not None and self._at is not None
        if len(self._lo) == 0:
            return np.zeros(v.shape, dtype=np.int64)
        r = np.searchsorted(self._lo, v, side="right") - 1
        rc = np.maximum(r, 0)
        pos = self._at[rc] + np.clip(v - self._lo[rc], 0, self._n[rc])
        return np.where(r < 0, 0, pos).astype(np.int64)

    def between(self, a: int, b: int) -> "IndexSet":
        """The members at positions ``a … b − 1``."""
        a, b = max(0, a), min(self._len, b)
        if b <= a:
            return IndexSet(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), None)
        if self._idx is not None:
            return IndexSet(None, None, self._idx[a:b])
        assert self._lo is not None and self._n is not None and self._at is not None
        r0 = int(np.searchsorted(self._at, a, side="right")) - 1
        r1 = int(np.searchsorted(self._at, b, side="left"))  # ranges r0 … r1 - 1
        lo = self._lo[r0:r1].copy()
        n = self._n[r0:r1].copy()
        cut = a - int(self._at[r0])
        lo[0] += cut
        n[0] -= cut
        n[-1] -= int(self._at[r1 - 1]) + int(self._n[r1 - 1]) - b
        return IndexSet(lo, n, None)

    @staticmethod
    def union(sets: Sequence["IndexSet"]) -> "IndexSet":
        if len(sets) == 1:
            return sets[0]
        return IndexSet.of(np.unique(np.concatenate([s.array() for s in sets])) if sets else np.zeros(0, dtype=np.int64))


class Bundles(Sequence[Sequence[int]]):
    """Array tasks: ``indices`` cut into tasks of ``per`` consecutive members, the last possibly shorter
    (see the module docstring)."""

    __slots__ = ("indices", "per")

    def __init__(self, indices: IndexSet, per: int) -> None:
        if per < 1:
            raise ValueError(f"per {per}: expected at least 1")
        self.indices = indices
        self.per = per

    @classmethod
    def of(cls, indices: Iterable[int] | IndexSet | Array, per: int) -> "Bundles":
        return cls(IndexSet.of(indices), per)

    @property
    def runs(self) -> int:
        """Indices over all tasks."""
        return len(self.indices)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.per)

    @overload
    def __getitem__(self, t: int) -> list[int]: ...
    @overload
    def __getitem__(self, t: slice) -> "Bundles": ...
    def __getitem__(self, t: int | slice) -> "list[int] | Bundles":
        if isinstance(t, slice):
            a, b, step = t.indices(len(self))
            if step != 1:
                raise ValueError("Bundles: slices of tasks are contiguous (step 1)")
            return Bundles(self.indices.between(a * self.per, b * self.per), self.per)
        if t < 0:
            t += len(self)
        if not 0 <= t < len(self):
            raise IndexError(t)
        return self.indices.between(t * self.per, (t + 1) * self.per).array().tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[list[int]]:
        for t in range(len(self)):
            yield self[t]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Bundles):  # the same indices, cut alike (one task each: whatever the size)
            return self.indices == other.indices and (self.per == other.per or (len(self) <= 1 and len(other) <= 1))
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(mine == list(theirs) for mine, theirs in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Bundles({self.indices!r} in tasks of {self.per})"

    def taskOf(self) -> Array:
        """The array task of each index (aligned with ``indices.array()``)."""
        return np.arange(len(self.indices), dtype=np.int64) // self.per

    def attemptRanges(self, attempts: int | npt.NDArray[np.integer[Any]]) -> Iterator[AttemptRow]:
        """The ledger's attempt rows ``(lo, n, task, per, attempt, members)`` of these tasks: the row's members
        are ``lo … lo + n − 1`` (``members`` None) or the :mod:`~pyexputils.runner.packed` set ``members`` (``lo``
        its first), its ``k``-th member in task ``task + k // per``. ``attempts``: one number for all, or one
        per index (aligned with ``indices``). A row never spans a change of attempt; a head that starts inside
        a task is a row of its own; a stretch of one attempt over more than ``PACK_RANGES`` ranges of
        consecutive indices (a fitted plan's class: every k-th setting) is packed, not a row per range."""
        total = len(self.indices)
        perIndex = not isinstance(attempts, (int, np.integer)) and np.ndim(attempts) == 1 and np.asarray(attempts).strides != (0,)
        if perIndex:
            att = np.asarray(attempts)
            changes = [np.flatnonzero(np.diff(att[a : a + CHUNK + 1]) != 0) + 1 + a for a in range(0, max(0, total - 1), CHUNK)]
            cuts = np.concatenate([np.zeros(1, dtype=np.int64), *changes]) if total else np.zeros(0, dtype=np.int64)
            values = att[cuts].tolist()
        else:
            cuts = np.zeros(1 if total else 0, dtype=np.int64)
            values = [int(attempts if isinstance(attempts, (int, np.integer)) else np.asarray(attempts).flat[0])] if total else []
        ends = np.append(cuts[1:], total)
        for s, e, a in zip(cuts.tolist(), ends.tolist(), values):
            yield from self._segment(s, e, a)

    def _segment(self, s: int, e: int, attempt: int) -> Iterator[AttemptRow]:
        """The rows of positions ``s … e − 1`` (one attempt)."""
        part = self.indices.between(s, e)
        few: tuple[Array, Array] | None = None
        if part.isRanges:
            few = part.ranges() if len(part.ranges()[0]) <= PACK_RANGES else None
        elif _breaks(part.array()) < PACK_RANGES:
            few = _runs(part.array())
        if few is not None:  # a few ranges: each as it is
            lo, n = few
            at = s
            for first, count in zip(lo.tolist(), n.tolist()):
                yield from self._pieces(at, at + count, attempt, first, None)
                at += count
            return
        yield from self._pieces(s, e, attempt, int(part.between(0, 1).array()[0]), part)

    def _pieces(self, s: int, e: int, attempt: int, first: int, part: IndexSet | None) -> Iterator[AttemptRow]:
        """Positions ``s … e − 1``: consecutive indices from ``first`` (``part`` None), else ``part``'s, packed."""
        p = self.per
        off = s % p
        cuts = [s, min(e, s + p - off), e] if off else [s, e]
        for a, b in zip(cuts, cuts[1:]):
            if b <= a:
                continue
            per = b - a if a % p else p
            if part is None:
                yield first + (a - s), b - a, a // p, per, attempt, None
                continue
            mine = part.between(a - s, b - s)
            lo0 = int(mine.between(0, 1).array()[0])
            if mine.isRanges and len(mine.ranges()[0]) == 1:
                yield lo0, b - a, a // p, per, attempt, None
            else:
                blob = packChunks(mine.between(x, x + CHUNK).array() for x in range(0, b - a, CHUNK))
                yield lo0, b - a, a // p, per, attempt, blob

    # --- the manifest's compact form ---------------------------------------------------------------------
    def toJson(self) -> dict[str, Any]:
        """``{"per": p, "ranges": [lo, n, lo, n, …]}``, or ``{"per": p, "packed": "<base64>"}`` (manifest version
        3: the indices as a :mod:`~pyexputils.runner.packed` set) when ranges are not smaller."""
        if self.indices.isRanges:
            lo, n = self.indices.ranges()
            flat = np.empty(2 * len(lo), dtype=np.int64)
            flat[0::2], flat[1::2] = lo, n
            return {"per": self.per, "ranges": flat.tolist()}
        idx = self.indices.array()
        blob = packChunks(idx[a : a + CHUNK] for a in range(0, len(idx), CHUNK))
        return {"per": self.per, "packed": base64.b64encode(blob).decode("ascii")}

    @classmethod
    def fromJson(cls, d: dict[str, Any]) -> "Bundles":
        per = int(d["per"])
        if "ranges" in d:
            flat = np.asarray(d["ranges"], dtype=np.int64)
            if flat.size % 2:
                raise ValueError("ranges: expected pairs of first index and length")
            return cls(IndexSet.fromRanges(flat[0::2], flat[1::2]), per)
        if "packed" in d:
            return cls(IndexSet.of(Packed(base64.b64decode(d["packed"])).array()), per)
        return cls(IndexSet.of(np.asarray(d["indices"], dtype=np.int64)), per)  # version 2


def splitBySetting(indices: IndexSet, code: npt.NDArray[np.integer[Any]], groups: int) -> list[IndexSet]:
    """``indices`` by the code of their setting (``code[index % len(code)]``, each in ``0 … groups − 1``): the
    members of each code, in passes a chunk at a time, each part filled in place (8 bytes an index at most,
    ranges where smaller; the indices as they came when every one has the same code)."""
    settings = len(code)
    sizes = np.zeros(groups, dtype=np.int64)
    for a in range(0, len(indices), CHUNK):
        sizes += np.bincount(code[indices.between(a, a + CHUNK).array() % settings], minlength=groups)[:groups]
    if int(np.count_nonzero(sizes)) <= 1:  # one group: as they came (ranges stay ranges)
        return [indices if n else indices[:0] for n in sizes.tolist()]
    parts = [np.empty(n, dtype=np.int64) for n in sizes.tolist()]
    filled = [0] * groups
    for a in range(0, len(indices), CHUNK):
        chunk = indices.between(a, a + CHUNK).array()
        of = code[chunk % settings]
        for k, part in enumerate(parts):
            mine = chunk[of == k]
            part[filled[k] : filled[k] + len(mine)] = mine
            filled[k] += len(mine)
    out: list[IndexSet] = []
    while parts:  # each array let go once it is held
        out.append(IndexSet.of(parts.pop(0)))
    return out


def countRuns(tasks: Sequence[Sequence[int]]) -> int:
    """Indices over all ``tasks`` (without a list per task for :class:`Bundles`)."""
    return tasks.runs if isinstance(tasks, Bundles) else sum(len(t) for t in tasks)


def allIndices(tasks: Sequence[Sequence[int]]) -> Array:
    """Every index of ``tasks``, in task order, as one array."""
    if isinstance(tasks, Bundles):
        return tasks.indices.array()
    return np.fromiter((i for t in tasks for i in t), dtype=np.int64, count=countRuns(tasks))


def taskArray(tasks: Sequence[Sequence[int]]) -> Array:
    """The array task of each index of :func:`allIndices`."""
    if isinstance(tasks, Bundles):
        return tasks.taskOf()
    return np.repeat(np.arange(len(tasks), dtype=np.int64), [len(t) for t in tasks])
