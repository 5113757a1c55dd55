"""The runner's status files read back (:mod:`pyexputils.runner.status`) as the latest outcome per index, in
bounded memory: index ranges that ended alike, not an object per index. A file whose last line is a
``task_end`` with the run's own account (``outcomes``: :func:`pyexputils.runner.status.summary`) is read from
that line and the lines before its run (earlier runs of the task), not its run's lines. Imports NumPy, so it is
apart from :mod:`pyexputils.runner.status`, which the in-job runner imports."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import numpy as np
import numpy.typing as npt

from pyexputils.runner.status import BATCH, IndexOutcome, Summary, readEvents, readSummary

BLOCK = 4096  # ranges per block: painting rebuilds only the blocks it reaches
Kind = tuple[str, Any, Any, Any, Any, Any, bool, "str | None"]  # state, exit, signal, host, job, attempt, started, seen
_I64 = npt.NDArray[np.int64]
_ENDS = frozenset({"start", "end", "skip", "stop", "scheduler"})


class Outcomes:
    """The latest outcome per index of one or more status files (a later file, or a later line, wins), as
    sorted disjoint index ranges that ended alike, each with a kind (state, exit, signal, host, job,
    attempt, started, scheduler state): a task whose runs all completed is one range, whatever its size.
    Read in bounded memory: :data:`BATCH` lines at a time, folded into the ranges; an
    :class:`IndexOutcome` is built only for an index asked about (:meth:`get`). A run's account on its
    ``task_end`` line stands for the run's lines (they say the same: tests/test_outcomes.py)."""

    def __init__(self) -> None:
        self.kinds: list[Kind] = []
        self._ids: dict[Kind, int] = {}
        z = np.zeros(0, dtype=np.int64)
        self._blocks: list[tuple[_I64, _I64, _I64]] = []  # painted ranges (lo, hi, kind), in index order
        self.lo, self.hi, self.kind = z, z, z  # after read(): every block joined

    @classmethod
    def read(cls, paths: Iterable[str]) -> "Outcomes":
        out = cls()
        for path in paths:
            out._fold(path)
        out._join()
        return out

    def _id(self, k: Kind) -> int:
        got = self._ids.get(k)
        if got is None:
            got = self._ids[k] = len(self.kinds)
            self.kinds.append(k)
        return got

    def _fold(self, path: str) -> None:
        said = readSummary(path)
        ranges = None if said is None else _summaryRanges(said)
        if said is None or ranges is None:
            self._foldEvents(readEvents(path, _ENDS))
            return
        seen = self._foldEvents(readEvents(path, _ENDS, end=said.offset))  # earlier runs' lines only
        job = None if said.job is None else str(said.job)
        ids = np.asarray([self._id((c, e, s, said.host, job, said.attempt, b, seen)) for (c, e, s, b), _ in said.groups], dtype=np.int64)
        lo, hi, group = ranges
        self._paint(lo, hi, ids[group])

    def _foldEvents(self, events: Iterable[dict[str, Any]]) -> str | None:
        """Events of one file in order, painted over the ranges; the state of its last ``scheduler`` event."""
        seen: str | None = None
        stopped = False  # a stop event was read: CANCELLED outcomes after it take the scheduler's answer
        cancelledSince: list[tuple[int, int]] = []  # ranges of those
        idx: list[int] = []
        kid: list[int] = []
        kindId = self._id

        def flush() -> None:
            if idx:
                runs = _runs(np.asarray(idx, dtype=np.int64), np.asarray(kid, dtype=np.int64))
                self._paint(*runs)
                if stopped:
                    c = np.asarray([self.kinds[k][0] == "CANCELLED" for k in runs[2].tolist()], dtype=bool)
                    cancelledSince.extend(zip(runs[0][c].tolist(), runs[1][c].tolist()))
                idx.clear()
                kid.clear()

        for ev in events:
            kind = ev.get("event")
            if kind == "scheduler":
                flush()
                seen = None if ev.get("state") is None else str(ev["state"])
                if cancelledSince:  # the stop's ends may come before the scheduler's answer
                    self._join()
                    self._remap(cancelledSince, lambda k: k if self.kinds[k][0] != "CANCELLED" else kindId((*self.kinds[k][:7], seen)))
                continue
            if kind == "stop":
                flush()
                stopped, cancelledSince = True, []
                continue
            if kind not in ("start", "end", "skip") or "index" not in ev:
                continue
            state = "RUNNING" if kind == "start" else str(ev.get("cause", "FAILED"))
            job = ev.get("job")
            idx.append(int(ev["index"]))
            kid.append(kindId((state, ev.get("exit"), ev.get("signal"), ev.get("host"), None if job is None else str(job),
                               ev.get("attempt"), kind != "skip", seen)))  # fmt: skip
            if len(idx) >= BATCH:
                flush()
        flush()
        return seen

    def _paint(self, lo: _I64, hi: _I64, kind: _I64) -> None:
        """Ranges (sorted, disjoint) painted over what is there: only the blocks they reach are rebuilt."""
        if not len(lo):
            return
        a, b = int(lo[0]), int(hi[-1])
        last = len(self._blocks)
        while last > 0 and self._blocks[last - 1][0][0] > b:
            last -= 1
        first = last
        while first > 0 and self._blocks[first - 1][1][-1] >= a:
            first -= 1
        parts = self._blocks[first:last]
        old = (_cat([p[0] for p in parts]), _cat([p[1] for p in parts]), _cat([p[2] for p in parts]))
        merged = _overlay(old, (lo, hi, kind))
        self._blocks[first:last] = [(merged[0][k : k + BLOCK], merged[1][k : k + BLOCK], merged[2][k : k + BLOCK]) for k in range(0, len(merged[0]), BLOCK)]

    def _remap(self, ranges: list[tuple[int, int]], fn: Callable[[int], int]) -> None:
        """Within ``ranges``, each range's kind ``k`` becomes ``fn(k)``."""
        sel = _merge(np.asarray([r[0] for r in ranges], dtype=np.int64), np.asarray([r[1] for r in ranges], dtype=np.int64))
        lo, hi, kind = _overlay((self.lo, self.hi, self.kind), (*sel, np.full(len(sel[0]), -2, dtype=np.int64)), keepOld=True)
        inside = kind < 0  # segments of the selection: -3 - k holds the old kind k
        mapped = {k: fn(k) for k in np.unique(-3 - kind[inside & (kind <= -3)]).tolist()}
        new = kind.copy()
        for k, m in mapped.items():
            new[kind == -3 - k] = m
        keep = new >= 0
        self._blocks = [_overlay((lo[:0], hi[:0], kind[:0]), (lo[keep], hi[keep], new[keep]))]
        self._join()

    def _join(self) -> None:
        b = self._blocks
        self.lo, self.hi, self.kind = _cat([x[0] for x in b]), _cat([x[1] for x in b]), _cat([x[2] for x in b])
        self._blocks = [(self.lo, self.hi, self.kind)] if len(self.lo) else []

    # --- reading it ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int((self.hi - self.lo).sum())

    def _at(self, i: int) -> int:
        k = int(np.searchsorted(self.lo, i, side="right")) - 1
        return int(self.kind[k]) if k >= 0 and i < self.hi[k] else -1

    def __contains__(self, i: object) -> bool:
        return isinstance(i, (int, np.integer)) and self._at(int(i)) >= 0

    def get(self, i: int) -> IndexOutcome | None:
        k = self._at(i)
        return None if k < 0 else self._outcome(i, k)

    def _outcome(self, i: int, k: int) -> IndexOutcome:
        state, exit, signal, host, job, attempt, started, seen = self.kinds[k]
        return IndexOutcome(i, state, exit, signal, host, job, attempt, None, started, seen)

    def kindsUsed(self) -> list[Kind]:
        return [self.kinds[k] for k in np.unique(self.kind).tolist()]

    def items(self) -> Iterator[tuple[int, IndexOutcome]]:
        for a, b, k in zip(self.lo.tolist(), self.hi.tolist(), self.kind.tolist()):
            for i in range(a, b):
                yield i, self._outcome(i, k)


def _summaryRanges(said: Summary) -> tuple[_I64, _I64, _I64] | None:
    """A run's account as sorted disjoint ranges ``[lo, hi)`` with the position of their group; None unless
    every group's ranges text is well formed and no index is in two groups."""
    parts = [spanArrays(text) for _, text in said.groups]
    if any(p is None for p in parts):
        return None
    lo = _cat([p[0] for p in parts if p is not None])
    hi = _cat([p[1] for p in parts if p is not None])
    group = _cat([np.full(len(p[0]), g, dtype=np.int64) for g, p in enumerate(parts) if p is not None])
    order = np.argsort(lo, kind="stable")
    lo, hi, group = lo[order], hi[order], group[order]
    if np.any(lo[1:] < hi[:-1]):
        return None
    return lo, hi, group


SPAN_CHUNK = 1 << 18  # characters of ranges text parsed at once (a few arrays of 8 bytes a character)


def spanArrays(text: str) -> tuple[_I64, _I64] | None:
    """Ranges text (``"0-99,140"``, :func:`pyexputils.runner.inspect.formatSpans`) as arrays ``lo = [0, 140]``,
    ``hi = [100, 141]`` (half open), parsed with array operations :data:`SPAN_CHUNK` characters at a time
    (nothing per range in Python); None unless well formed (a range is ``a`` or ``a-b`` with ``a <= b``)."""
    if not text:
        return _cat([]), _cat([])
    los, his = [], []
    at = 0
    while True:
        cut = text.find(",", at + SPAN_CHUNK) if len(text) - at > SPAN_CHUNK else -1  # a chunk ends before a comma
        got = _spans(text[at : len(text) if cut < 0 else cut])
        if got is None:
            return None
        los.append(got[0])
        his.append(got[1])
        if cut < 0:
            return _cat(los), _cat(his)
        at = cut + 1


_POW = 10 ** np.arange(19, dtype=np.int64)


def _spans(text: str) -> tuple[_I64, _I64] | None:
    try:
        b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    digit = (b >= 48) & (b <= 57)
    sep = np.flatnonzero(~digit)
    if not len(b) or not np.all(digit | (b == 44) | (b == 45)):
        return None
    bounds = np.concatenate([[-1], sep, [len(b)]])
    width = np.diff(bounds) - 1  # digits of each number
    if np.any(width < 1) or np.any(width > 18):
        return None
    first = bounds[:-1] + 1  # where each number begins
    pos = np.flatnonzero(digit)
    number = np.cumsum(~digit)[pos]  # which number each digit belongs to
    place = (first + width)[number] - pos - 1  # its power of ten
    nums = np.add.reduceat((b[pos].astype(np.int64) - 48) * _POW[place], first - np.arange(len(first)))
    dash = b[sep] == 45
    if np.any(dash[1:] & dash[:-1]):  # a-b-c
        return None
    start = np.ones(len(nums), dtype=bool)
    start[1:] = ~dash
    k = np.flatnonzero(start)
    paired = np.zeros(len(k), dtype=bool)
    inner = k < len(dash)
    paired[inner] = dash[k[inner]]
    lo = nums[k]
    hi = np.where(paired, nums[np.minimum(k + 1, len(nums) - 1)], lo)
    if np.any(hi < lo):
        return None
    return lo, hi + 1


def _runs(idx: _I64, kind: _I64) -> tuple[_I64, _I64, _I64]:
    """Per-index entries in order (a later one for an index wins) as sorted ranges of consecutive indices
    of one kind."""
    rev = idx[::-1]
    u, first = np.unique(rev, return_index=True)  # the last entry of each index
    k = kind[::-1][first]
    if not len(u):
        return u, u, k
    brk = np.flatnonzero((np.diff(u) != 1) | (np.diff(k) != 0)) + 1
    starts = np.append(0, brk)
    ends = np.append(brk, len(u))
    return u[starts], u[ends - 1] + 1, k[starts]


def _merge(lo: _I64, hi: _I64) -> tuple[_I64, _I64]:
    """Ranges (any order, overlapping) as sorted disjoint ones."""
    if not len(lo):
        return lo, hi
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    start = np.ones(len(lo), dtype=bool)
    start[1:] = lo[1:] > hi[:-1]
    first = np.flatnonzero(start)
    return lo[first], hi[np.append(first[1:], len(lo)) - 1]


def _overlay(old: tuple[_I64, _I64, _I64], new: tuple[_I64, _I64, _I64], keepOld: bool = False) -> tuple[_I64, _I64, _I64]:
    """Two sets of sorted disjoint ranges with kinds, ``new`` painted over ``old``; touching ranges of one
    kind joined. ``keepOld``: where ``new`` (kind -2) covers ``old`` kind ``k``, the segment gets ``-3 - k``."""
    pts = np.unique(np.concatenate([old[0], old[1], new[0], new[1]]))
    a, b = pts[:-1], pts[1:]

    def cover(r: tuple[_I64, _I64, _I64]) -> _I64:
        k = np.searchsorted(r[0], a, side="right") - 1
        ok = k >= 0
        ok[ok] = a[ok] < r[1][k[ok]]
        return np.where(ok, r[2][np.maximum(k, 0)] if len(r[2]) else -1, -1)

    o, n = cover(old), cover(new)
    kind = np.where(n != -1, n, o)
    if keepOld:
        kind = np.where((n == -2) & (o >= 0), -3 - o, kind)
    keep = kind != -1
    a, b, kind = a[keep], b[keep], kind[keep]
    if not len(a):
        return a, b, kind
    brk = np.flatnonzero((a[1:] != b[:-1]) | (kind[1:] != kind[:-1])) + 1
    starts = np.append(0, brk)
    return a[starts], b[np.append(brk, len(a)) - 1], kind[starts]




def _cat(xs: list[_I64]) -> _I64:
    return xs[0] if len(xs) == 1 else np.concatenate([np.zeros(0, dtype=np.int64), *xs])
