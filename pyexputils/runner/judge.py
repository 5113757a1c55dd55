"""The one decision of an index's state (pure): done, queued, running, to submit, to retry, final or unknown.

:func:`judgeIndex` is the only place that decides it; ``submit``, ``watch``, ``status``, ``show``,
``missing`` and ``cancel`` all read its answer (through :meth:`pyexputils.runner.session.Session.standing`).

The done rule of the scheduler: an index whose latest recorded attempt is still live, or ended other than
COMPLETED, is not done, whatever its save folder holds (a run that checkpoints its results has the file long
before it finished); it shows as live, or as its cause with ``partial`` set when the folder is there. An
index with no recorded attempt follows the seed's rule (the save folder exists, with every ``require``
file): the rule of ``listMissingResults``, which analysis keeps.

For a whole sweep, :func:`judgeAll` gives the same answer as :func:`judgeIndex` on every index (the
reference: :func:`judgeEach`; tests/test_judge.py checks them against each other on random histories) at the
cost of a few NumPy operations per sweep: an index never submitted, live, or whose latest attempt
completed (recorded, or said by the runner's file) is judged by array operations; only the others (an
attempt that failed, or ended without a record of its own) go through :func:`judgeIndex` one by one.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, overload

import numpy as np
import numpy.typing as npt

from pyexputils.runner.causes import RUNNING_STATES, Cause, Evidence, Verdict, classify, isLive, normaliseState
from pyexputils.runner.ledger import LedgerView
from pyexputils.runner.policy import Measure, Policy, Resources, decide


class State(str, enum.Enum):
    """Where one index stands."""

    DONE = "DONE"  # its results, and no attempt says otherwise
    QUEUED = "QUEUED"  # in a live task that has not started
    RUNNING = "RUNNING"  # in a live task that runs
    MISSING = "MISSING"  # never submitted (or its results were removed after it completed): to submit
    RETRY = "RETRY"  # its latest attempt ended without results; the policy resubmits it
    FINAL = "FINAL"  # ended with a cause retrying cannot fix (or the policy's bounds were reached)
    UNKNOWN = "UNKNOWN"  # a live job may run it but nothing here says which indices: never submitted meanwhile

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PENDING_STATES = frozenset({State.MISSING, State.RETRY})  # what submit / watch send
ESCALATED = frozenset({Cause.TIMEOUT, Cause.OUT_OF_MEMORY})  # causes whose retry asks more
REMOVED = "its results were removed after it completed"


@dataclass(frozen=True)
class IndexStatus:
    """One index's standing."""

    index: int
    state: State
    cause: Cause | None = None  # how its latest attempt ended (None: live, or never submitted)
    attempts: int = 0  # attempts recorded so far
    exit: int | None = None
    partial: bool = False  # not done, but its save folder (with any require files) is on disk
    reason: str = ""  # why it is final, or what is unknown
    resources: Resources | None = None  # what its next attempt asks (MISSING, RETRY)
    tag: str | None = None  # the submission of its latest attempt
    task: int | None = None


@dataclass(frozen=True)
class Latest:
    """An index's latest recorded attempt, and what is known of it."""

    attempt: int
    tag: str
    task: int
    recorded: Verdict | None  # its verdict in the ledger, once resolved
    evidence: Evidence  # to classify it while unresolved
    history: Sequence[Verdict]  # verdicts of its earlier attempts since it last completed (or was retried)
    resources: Resources  # what it asked for
    measured: Callable[[], Measure | None] | None = None  # what runs of its setting measured (asked when escalating)


def judgeIndex(index: int, onDisk: bool, live: str | None, latest: Latest | None, base: Resources, policy: Policy) -> tuple[IndexStatus, Verdict | None]:  # fmt: skip
    """The state of one index, and the verdict of its latest attempt when it is newly known (to record).

    ``onDisk``: the seed's rule holds for its save folder; ``live``: the scheduler state of a live task that
    holds it (None when none does)."""
    if live is not None and isLive(live):
        state = State.RUNNING if normaliseState(live) in RUNNING_STATES else State.QUEUED
        attempts = 0 if latest is None else latest.attempt
        tag, task = (None, None) if latest is None else (latest.tag, latest.task)
        return IndexStatus(index, state, None, attempts, partial=onDisk, tag=tag, task=task), None
    if latest is None:
        if onDisk:
            return IndexStatus(index, State.DONE), None
        return IndexStatus(index, State.MISSING, resources=base), None
    v = latest.recorded or classify(latest.evidence)
    new = v if latest.recorded is None else None
    at = latest
    if new is not None and v.cause is Cause.VANISHED and latest.evidence.jobEnding:
        # gone without a trace while another task of its array is being stopped: a scancel of the whole
        # array shows on that task only once it has ended (KillWait); decided then, never resubmitted meanwhile
        return IndexStatus(index, State.UNKNOWN, None, at.attempt, tag=at.tag, task=at.task, partial=onDisk,
                           reason="it left the queue without a record while its array job is being stopped"), None  # fmt: skip

    def ended(state: State, cause: Cause, **kw: Any) -> IndexStatus:
        return IndexStatus(index, state, cause, at.attempt, v.exit, tag=at.tag, task=at.task, **kw)

    if v.cause is Cause.COMPLETED:
        if onDisk:
            return ended(State.DONE, Cause.COMPLETED), new
        return ended(State.MISSING, Cause.COMPLETED, reason=REMOVED, resources=base), new
    d = decide([*latest.history, v], latest.resources, policy, latest.measured() if latest.measured and v.cause in ESCALATED else None)
    if d.resources is None:
        return ended(State.FINAL, d.final or v.cause, partial=onDisk, reason=d.reason), new
    return ended(State.RETRY, v.cause, partial=onDisk, resources=d.resources), new


def sinceLast(verdicts: Mapping[int, Verdict], attempt: int, reset: int = 0) -> list[Verdict]:
    """The verdicts of the attempts before ``attempt`` since the index last completed, or was given a fresh
    budget by ``retry`` (``reset``: the attempt up to which it was), oldest first: what the policy counts."""
    if not verdicts or (len(verdicts) == 1 and attempt in verdicts):
        return []
    out: list[Verdict] = []
    for n in sorted(verdicts):
        if n >= attempt:
            break
        if n > reset:
            out = [] if verdicts[n].cause is Cause.COMPLETED else [*out, verdicts[n]]
    return out


STATES: list[State] = list(State)
CODE = {x: np.int8(k) for k, x in enumerate(STATES)}


Spans = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]  # sorted, disjoint, non-adjacent ranges [lo, hi)


def spans(ranges: Iterable[tuple[int, int]] | Spans) -> Spans:
    """Ranges ``[lo, hi)`` (any order, overlapping or touching) as sorted disjoint ones."""
    if isinstance(ranges, tuple) and len(ranges) == 2 and isinstance(ranges[0], np.ndarray):
        lo, hi = np.asarray(ranges[0], dtype=np.int64), np.asarray(ranges[1], dtype=np.int64)
    else:
        pairs = np.asarray([r for r in ranges if r[1] > r[0]], dtype=np.int64).reshape(-1, 2)
        lo, hi = pairs[:, 0], pairs[:, 1]
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    if len(lo) < 2:
        return lo.copy(), hi.copy()
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], np.maximum.accumulate(hi[order])
    start = np.ones(len(lo), dtype=bool)
    start[1:] = lo[1:] > hi[:-1]  # a gap before it: a new range starts
    first = np.flatnonzero(start)
    last = np.append(first[1:], len(lo)) - 1
    return lo[first], hi[last]


def indexSpans(indices: npt.NDArray[np.int64]) -> Spans:
    """Indices (any order, repeats allowed) as ranges."""
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if not len(idx):
        return idx, idx.copy()
    brk = np.flatnonzero(np.diff(idx) != 1) + 1
    return idx[np.append(0, brk)], idx[np.append(brk, len(idx)) - 1] + 1


def rangeMask(ranges: Spans, n: int) -> npt.NDArray[np.bool_]:
    """True at the indices below ``n`` in sorted disjoint ``ranges`` (a byte an index)."""
    lo, hi = np.minimum(ranges[0], n), np.minimum(ranges[1], n)
    if len(lo) <= 4096:
        out = np.zeros(n, dtype=bool)
        for a, b in zip(lo.tolist(), hi.tolist()):
            out[a:b] = True
        return out
    edge = np.zeros(n + 1, dtype=np.int8)
    np.add.at(edge, lo, 1)
    np.add.at(edge, hi, -1)
    return np.cumsum(edge[:n], dtype=np.int8).view(np.bool_)


def completedRuns(indices: npt.NDArray[np.int64], ids: npt.NDArray[np.int16]) -> tuple[Spans, npt.NDArray[np.int16]]:
    """Indices (sorted, distinct) and a verdict id each as ranges of consecutive indices of one id: what
    :attr:`Facts.completed` and :attr:`Facts.completedId` hold."""
    idx, vid = np.asarray(indices, dtype=np.int64), np.asarray(ids, dtype=np.int16)
    if not len(idx):
        return (idx, idx.copy()), vid
    brk = np.flatnonzero((np.diff(idx) != 1) | (np.diff(vid) != 0)) + 1
    first, last = np.append(0, brk), np.append(brk, len(idx)) - 1
    return (idx[first], idx[last] + 1), vid[first]


CHUNK = 1 << 14  # indices per pass where a pass makes index arrays: its temporaries stay small


class LiveIndices(Mapping[int, str]):
    """The indices held by live tasks, as ranges (nothing per index), and those of them a running task holds:
    read as ``{index: "RUNNING" | "PENDING"}``. Judging writes them into per-index arrays a range at a time
    (:meth:`fill`). Tasks of packed ledger rows (a fitted plan's class: every k-th index) hold scattered
    indices: those come as masks (a byte an index, not a range per index), and then everything is held there."""

    def __init__(self, held: Spans | None = None, running: Spans | None = None,
                 heldMask: npt.NDArray[np.bool_] | None = None, runMask: npt.NDArray[np.bool_] | None = None) -> None:  # fmt: skip
        z = np.zeros(0, dtype=np.int64)
        run = (z, z) if running is None else running
        self.held = spans((np.concatenate([(z if held is None else held[0]), run[0]]),
                           np.concatenate([(z if held is None else held[1]), run[1]])))  # fmt: skip
        self.running = spans(run)
        self.heldMask: npt.NDArray[np.bool_] | None = None
        self.runMask: npt.NDArray[np.bool_] | None = None
        if heldMask is not None or runMask is not None:  # one form: the ranges go into the masks
            top = max(len(heldMask) if heldMask is not None else 0, len(runMask) if runMask is not None else 0,
                      int(self.held[1][-1]) if len(self.held[1]) else 0)  # fmt: skip
            self.heldMask, self.runMask = self._mask(top, heldMask, self.held), self._mask(top, runMask, self.running)
            self.heldMask |= self.runMask
            self.held, self.running = (z, z), (z, z)

    @staticmethod
    def _mask(top: int, mask: npt.NDArray[np.bool_] | None, s: Spans) -> npt.NDArray[np.bool_]:
        out = np.zeros(top, dtype=bool)
        if mask is not None:
            out[: len(mask)] = mask
        for a, b in zip(s[0].tolist(), s[1].tolist()):
            out[a:b] = True
        return out

    @classmethod
    def fromIndices(cls, indices: npt.NDArray[np.int64], running: npt.NDArray[np.bool_]) -> "LiveIndices":
        """From index arrays: the indices, and whether a running task holds each."""
        idx = np.asarray(indices, dtype=np.int64)
        return cls(indexSpans(idx), indexSpans(idx[np.asarray(running, dtype=bool)]))

    @classmethod
    def merge(cls, parts: Sequence["LiveIndices"]) -> "LiveIndices":
        """Several parts; an index held by a running task and a pending one is running."""
        if len(parts) == 1:
            return parts[0]
        z = np.zeros(0, dtype=np.int64)

        def cat(xs: Iterable[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
            return np.concatenate([z, *xs])

        held = (cat(p.held[0] for p in parts), cat(p.held[1] for p in parts))
        running = (cat(p.running[0] for p in parts), cat(p.running[1] for p in parts))
        masked = [p for p in parts if p.heldMask is not None]
        if not masked:
            return cls(held, running)
        first = max(masked, key=lambda p: len(p.heldMask) if p.heldMask is not None else 0)
        hm, rm = first.heldMask, first.runMask  # the parts are let go: the largest takes the others in place
        assert hm is not None and rm is not None
        for p in masked:
            if p is not first:
                assert p.heldMask is not None and p.runMask is not None
                hm[: len(p.heldMask)] |= p.heldMask
                rm[: len(p.runMask)] |= p.runMask
        return cls(held, running, hm, rm)

    def clip(self, n: int) -> "LiveIndices":
        """Only the indices below ``n``."""
        if self.heldMask is not None and self.runMask is not None:
            return self if len(self.heldMask) <= n else LiveIndices(None, None, self.heldMask[:n], self.runMask[:n])
        if not len(self.held[0]) or self.held[1][-1] <= n:
            return self
        def cut(s: Spans) -> Spans:
            return s[0][s[0] < n], np.minimum(s[1][s[0] < n], n)

        return LiveIndices(cut(self.held), cut(self.running))

    def fill(self, arr: npt.NDArray[Any], value: Any, running: bool = False) -> None:
        """``arr[i] = value`` at every live index (with ``running``: every index a running task holds)."""
        lo, hi = self.running if running else self.held
        for a, b in zip(lo.tolist(), hi.tolist()):
            arr[a:b] = value
        mask = self.runMask if running else self.heldMask
        if mask is not None:
            m = mask[: len(arr)]
            arr[: len(m)][m] = value

    def count(self, mask: npt.NDArray[np.bool_], unless: npt.NDArray[np.bool_] | None = None) -> int:
        """The live indices where ``mask`` holds (and ``unless`` does not)."""
        if self.heldMask is not None:
            total = 0
            for a in range(0, min(len(mask), len(self.heldMask)), 1 << 16):
                sl = slice(a, min(len(mask), len(self.heldMask), a + (1 << 16)))
                got = mask[sl] & self.heldMask[sl]
                total += int(np.count_nonzero(got if unless is None else got & ~unless[sl]))
            return total
        return sum(int(np.count_nonzero(mask[a:b] if unless is None else mask[a:b] & ~unless[a:b]))
                   for a, b in zip(self.held[0].tolist(), self.held[1].tolist()))  # fmt: skip

    @staticmethod
    def _in(s: Spans, key: int) -> bool:
        k = int(np.searchsorted(s[0], key, side="right")) - 1
        return k >= 0 and key < s[1][k]

    @staticmethod
    def _at(mask: npt.NDArray[np.bool_] | None, key: int) -> bool:
        return mask is not None and 0 <= key < len(mask) and bool(mask[key])

    def __getitem__(self, key: int) -> str:
        if not (self._in(self.held, key) or self._at(self.heldMask, key)):
            raise KeyError(key)
        return "RUNNING" if self._in(self.running, key) or self._at(self.runMask, key) else "PENDING"

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and (self._in(self.held, int(key)) or self._at(self.heldMask, int(key)))

    def __iter__(self) -> Iterator[int]:
        for a, b in zip(self.held[0].tolist(), self.held[1].tolist()):
            yield from range(a, b)
        if self.heldMask is not None:
            for a in range(0, len(self.heldMask), 1 << 16):
                yield from (np.flatnonzero(self.heldMask[a : a + (1 << 16)]) + a).tolist()

    def __len__(self) -> int:
        return int((self.held[1] - self.held[0]).sum()) + (int(np.count_nonzero(self.heldMask)) if self.heldMask is not None else 0)


@dataclass
class Facts:
    """Everything known about one sweep's indices ``0 … n − 1``, as arrays: what both :func:`judgeAll` and
    :func:`judgeEach` judge."""

    onDisk: npt.NDArray[np.bool_]  # the seed's rule, per index
    live: LiveIndices  # the indices live tasks hold
    view: LedgerView  # the ledger: latest attempts, recorded verdicts, resets
    base: Resources
    policy: Policy
    resources: Sequence[Resources]  # per-run resources asked by each submission of ``view.tags``
    evidence: Callable[[int], Evidence]  # of an index's unresolved latest attempt, not live
    # the runner's record says the index's unresolved latest attempt COMPLETED: sorted disjoint ranges
    # [lo, hi) of such indices, and each range's verdict (an index into ``completedTable``); must agree
    # with ``evidence`` (:func:`completedRuns` makes them of per-index arrays)
    completed: Spans = field(default_factory=lambda: (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    completedId: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    completedTable: Sequence[Verdict] = ()
    measure: Callable[[int], Measure | None] | None = None  # what runs of an index's setting measured (escalation)

    @property
    def n(self) -> int:
        return len(self.onDisk)

    def completedMask(self) -> npt.NDArray[np.bool_]:
        """True in the :attr:`completed` ranges (a byte an index)."""
        return rangeMask(self.completed, self.n)

    def completedVerdict(self, i: int) -> Verdict:
        """The runner's verdict of index ``i`` (in a :attr:`completed` range)."""
        k = int(np.searchsorted(self.completed[0], i, side="right")) - 1
        return self.completedTable[int(self.completedId[k])]

    def resetMask(self) -> npt.NDArray[np.bool_]:
        """Indices ``retry`` gave a fresh budget after their latest attempt: judged as never submitted."""
        if not self.view.resets:
            return np.broadcast_to(np.False_, (self.n,))  # read-only, nothing per index
        reset = np.zeros(self.n, dtype=bool)
        for i, a in self.view.resets.items():
            if 0 <= i < self.n and 0 < self.view.attempt[i] <= a:
                reset[i] = True
        return reset

    def latest(self, i: int, history: Mapping[int, Verdict]) -> Latest:
        """Index ``i``'s latest attempt (it has one, not reset), as :func:`judgeIndex` reads it."""
        v = self.view
        a, t, r = int(v.attempt[i]), v.tagOf(i), int(v.recorded[i])
        recorded = v.table[r] if r >= 0 else None
        ev = NO_EVIDENCE if recorded is not None else self.evidence(i)
        return Latest(a, v.tags[t], v.taskOf(i), recorded, ev, sinceLast(history, a, v.resets.get(i, 0)), self.resources[t],
                      None if self.measure is None else partial(self.measure, i))  # fmt: skip


NO_EVIDENCE = Evidence(None, None)


class NewVerdicts(Sequence[tuple[int, int, Verdict]]):
    """Newly known verdicts (index, attempt, verdict), sorted by index: those found by array operations
    (kept as ranges ``lo``, ``n``, attempt, verdict id: nothing per index) and those of :func:`judgeIndex`."""

    def __init__(self, lo: npt.NDArray[np.int64], n: npt.NDArray[np.int64], attempt: npt.NDArray[np.int64],
                 vid: npt.NDArray[np.int64], table: Sequence[Verdict], other: Sequence[tuple[int, int, Verdict]] = ()) -> None:  # fmt: skip
        self._lo, self._n, self._attempt, self._vid, self._table = lo, n, attempt, vid, table
        self._other = sorted(other)
        self._all: list[tuple[int, int, Verdict]] | None = None

    @classmethod
    def none(cls, other: Sequence[tuple[int, int, Verdict]] = ()) -> "NewVerdicts":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, (), other)

    def _list(self) -> list[tuple[int, int, Verdict]]:
        if self._all is None:
            fast = [(i, a, self._table[v]) for lo, n, a, v in zip(self._lo.tolist(), self._n.tolist(), self._attempt.tolist(), self._vid.tolist())
                    for i in range(lo, lo + n)]  # fmt: skip
            self._all = sorted(fast + self._other, key=lambda x: x[0]) if self._other else fast
        return self._all

    def __len__(self) -> int:
        return int(self._n.sum()) + len(self._other)

    @overload
    def __getitem__(self, k: int) -> tuple[int, int, Verdict]: ...
    @overload
    def __getitem__(self, k: slice) -> Sequence[tuple[int, int, Verdict]]: ...
    def __getitem__(self, k: int | slice) -> tuple[int, int, Verdict] | Sequence[tuple[int, int, Verdict]]:
        return self._list()[k]

    def __iter__(self) -> Iterator[tuple[int, int, Verdict]]:
        return iter(self._list())

    def failed(self) -> list[tuple[int, int, Verdict]]:
        """Those that did not complete (the array part holds only COMPLETED ones)."""
        return [x for x in self._other if x[2].cause is not Cause.COMPLETED]

    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                              Sequence[Verdict], Sequence[tuple[int, int, Verdict]]]:  # fmt: skip
        """(range starts, lengths, attempts, verdict ids into the table, the table) of those found by array
        operations, and the others: what the ledger writes without a Python object per index
        (:func:`~pyexputils.runner.ledger.verdictRows`)."""
        return self._lo, self._n, self._attempt, self._vid, self._table, self._other

    def ranges(self) -> list[tuple[int, int, int, Verdict]]:
        """As (lo, n, attempt, verdict) ranges of contiguous indices that ended alike."""
        from pyexputils.runner.ledger import verdictRanges

        fast = [(lo, n, a, self._table[v]) for lo, n, a, v in zip(self._lo.tolist(), self._n.tolist(), self._attempt.tolist(), self._vid.tolist())]  # fmt: skip
        return fast + verdictRanges(self._other)


def _fastRuns(fast: npt.NDArray[np.bool_], f: "Facts", other: Sequence[tuple[int, int, Verdict]]) -> NewVerdicts:
    """The indices of ``fast`` (each in a :attr:`Facts.completed` range) as ranges of consecutive indices with
    one attempt and one verdict, found :data:`CHUNK` indices at a time; and ``other``."""
    v, (clo, _) = f.view, f.completed
    parts: list[tuple[npt.NDArray[np.int64], ...]] = []
    for a in range(0, f.n, CHUNK):
        part = fast[a : a + CHUNK]
        if not part.any():
            continue
        idx = a + np.flatnonzero(part)
        att = v.attempt[idx].astype(np.int64)
        r = np.searchsorted(clo, idx, side="right") - 1
        brk = np.flatnonzero((np.diff(idx) != 1) | (np.diff(att) != 0) | (np.diff(r) != 0)) + 1
        first, end = np.append(0, brk), np.append(brk, len(idx))
        parts.append((idx[first], end - first, att[first], r[first]))
    if not parts:
        return NewVerdicts.none(other)
    lo, n, att, r = (np.concatenate([p[k] for p in parts]) for k in range(4))
    join = np.ones(len(lo), dtype=bool)  # runs cut at a chunk's edge: joined again
    join[1:] = (lo[1:] != lo[:-1] + n[:-1]) | (att[1:] != att[:-1]) | (r[1:] != r[:-1])
    first = np.flatnonzero(join)
    n = np.add.reduceat(n, first)
    return NewVerdicts(lo[first], n, att[first], f.completedId[r[first]].astype(np.int64), f.completedTable, other)


@dataclass
class Judged:
    """Every index of a sweep judged: a state code per index, the :class:`IndexStatus` of those judged one
    by one, and what the rest is rebuilt from on demand."""

    facts: Facts
    state: npt.NDArray[np.int8]  # CODE of each index's state
    slow: dict[int, IndexStatus]  # indices judged by judgeIndex
    verdicts: NewVerdicts
    reset: npt.NDArray[np.bool_]
    _slowKeys: npt.NDArray[np.int64] | None = None  # sorted indices of ``slow`` (made by latestTasks)

    def status(self, i: int) -> IndexStatus:
        got = self.slow.get(i)
        if got is not None:
            return got
        f, v = self.facts, self.facts.view
        state = STATES[int(self.state[i])]
        has = v.attempt[i] > 0 and not self.reset[i]
        disk = bool(f.onDisk[i]) and not self.reset[i]
        tag, task = (v.tags[v.tagOf(i)], v.taskOf(i)) if has else (None, None)
        attempts = int(v.attempt[i]) if has else 0
        if state in (State.QUEUED, State.RUNNING):
            return IndexStatus(i, state, None, attempts, partial=disk, tag=tag, task=task)
        if not has:
            return IndexStatus(i, State.DONE) if state is State.DONE else IndexStatus(i, State.MISSING, resources=f.base)
        r = int(v.recorded[i])
        exit = v.table[r].exit if r >= 0 else f.completedVerdict(i).exit
        if state is State.DONE:
            return IndexStatus(i, State.DONE, Cause.COMPLETED, attempts, exit, tag=tag, task=task)
        return IndexStatus(i, State.MISSING, Cause.COMPLETED, attempts, exit, reason=REMOVED, resources=f.base, tag=tag, task=task)

    def latestTasks(self, idx: npt.NDArray[np.int64]) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The ``tag`` and ``task`` of :meth:`status` for each of the sorted indices ``idx``, as arrays: tag names,
        an index into them per index and the task (-1 for both: none)."""
        v = self.facts.view
        names = list(v.tags)
        tag = np.full(len(idx), -1, dtype=np.int64)
        task = np.full(len(idx), -1, dtype=np.int64)
        has = (v.attempt[idx] > 0) & ~self.reset[idx]
        if has.any():
            tag[has] = v.tagOf(idx[has])
            task[has] = v.taskOf(idx[has])
        if self.slow and len(idx):
            if self._slowKeys is None or len(self._slowKeys) != len(self.slow):
                self._slowKeys = np.array(sorted(self.slow), dtype=np.int64)
            keys = self._slowKeys
            mine = keys[np.searchsorted(keys, idx[0]) : np.searchsorted(keys, idx[-1], side="right")]
            at = np.searchsorted(idx, mine)
            position = {name: k for k, name in enumerate(names)}
            for i, k in zip(mine.tolist(), at.tolist()):
                if int(idx[k]) != i:
                    continue
                x = self.slow[i]
                if x.tag is None or x.task is None:
                    tag[k] = task[k] = -1
                else:
                    tag[k] = position.setdefault(x.tag, len(position))
                    task[k] = x.task
            names = list(position)
        return names, tag, task

    def counts(self) -> Counter[State]:
        c = {x: int(np.count_nonzero(self.state == k)) for k, x in enumerate(STATES)}  # a byte an index at a time
        return Counter({x: m for x, m in c.items() if m})

    def causes(self, state: State) -> Counter[Cause]:
        out: Counter[Cause] = Counter(s.cause for s in self.slow.values() if s.state is state and s.cause is not None)
        if state in (State.DONE, State.MISSING):
            v = self.facts.view
            mask = (self.state == CODE[state]) & (v.attempt > 0) & ~self.reset
            if len(self.slow):
                mask[np.fromiter(self.slow, dtype=np.int64, count=len(self.slow))] = False
            n = int(mask.sum())
            if n:
                out[Cause.COMPLETED] += n
        return out

    def partial(self) -> int:
        f, live = self.facts, self.facts.live
        fast = live.count(f.onDisk, self.reset)
        fast -= sum(1 for i in self.slow if i in live and f.onDisk[i] and not self.reset[i])  # counted below
        return fast + sum(1 for s in self.slow.values() if s.partial)

    def mask(self, states: Sequence[State]) -> npt.NDArray[np.bool_]:
        """True at the indices in ``states`` (a byte an index)."""
        out = np.zeros(len(self.state), dtype=bool)
        for x in states:
            out |= self.state == CODE[x]
        return out

    def indices(self, states: Sequence[State]) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.mask(states))


def judgeAll(f: Facts) -> Judged:
    """Every index of the sweep, as :func:`judgeIndex` would judge it (see the module docstring)."""
    v = f.view
    reset = f.resetMask()
    state = np.full(f.n, CODE[State.MISSING], dtype=np.int8)
    np.copyto(state, CODE[State.DONE], where=f.onDisk)
    if f.view.resets:
        state[reset] = CODE[State.MISSING]
    f.live.fill(state, CODE[State.QUEUED])  # ranges: nothing per index
    f.live.fill(state, CODE[State.RUNNING], running=True)
    ended = v.attempt > 0  # masks of a byte an index; index arrays only of what is judged one by one
    if f.view.resets:
        ended &= ~reset
    f.live.fill(ended, False)
    rec = v.recorded
    completedIds = [k for k, x in enumerate(v.table) if x.cause is Cause.COMPLETED]
    # latest attempt recorded COMPLETED: done when on disk, else missing: the default above
    slowMask = ended & (rec >= 0)  # recorded other than COMPLETED
    for k in completedIds:
        slowMask &= rec != k  # (np.isin would widen the int16 codes to 8 bytes an index)
    unresolved = ended & (rec < 0)
    del ended
    fast = f.completedMask()  # the runner says COMPLETED: the same, and a verdict to record
    fast &= unresolved
    unresolved &= ~fast
    slowMask |= unresolved  # unresolved otherwise: judged one by one
    del unresolved
    slowIdx = np.flatnonzero(slowMask)
    del slowMask
    slow: dict[int, IndexStatus] = {}
    new: list[tuple[int, int, Verdict]] = []
    histories = v.histories(slowIdx) if len(slowIdx) else {}
    for i in slowIdx.tolist():
        status, verdict = judgeIndex(i, bool(f.onDisk[i]) and not reset[i], None, f.latest(i, histories.get(i, {})), f.base, f.policy)
        slow[i] = status
        state[i] = CODE[status.state]
        if verdict is not None:
            new.append((i, int(v.attempt[i]), verdict))
    return Judged(f, state, slow, _fastRuns(fast, f, new), reset)


def judgeEach(f: Facts) -> Judged:
    """The reference: :func:`judgeIndex` on every index, one by one (what :func:`judgeAll` must agree with)."""
    v = f.view
    reset = f.resetMask()
    slow: dict[int, IndexStatus] = {}
    new: list[tuple[int, int, Verdict]] = []
    state = np.zeros(f.n, dtype=np.int8)
    allHistory = v.histories(np.arange(f.n, dtype=np.int64))
    for i in range(f.n):
        has = v.attempt[i] > 0 and not reset[i]
        live = f.live.get(i)
        latest = f.latest(i, allHistory[i]) if has else None
        status, verdict = judgeIndex(i, bool(f.onDisk[i]) and not reset[i], live, latest, f.base, f.policy)
        slow[i] = status
        state[i] = CODE[status.state]
        if verdict is not None:
            new.append((i, int(v.attempt[i]), verdict))
    return Judged(f, state, slow, NewVerdicts.none(new), reset)
