"""Fit bundles to the walltime from measured run times (pure).

Given what earlier runs of the same settings took (:class:`Measured`, kept by
:mod:`pyexputils.runner.durations`), a request of an experiment's indices is split and sized:

- **classes**: settings whose measured p95 run time lies within :data:`CLASS_RATIO` of each other share a
  class; each class goes to arrays of its own (a 1x run is not asked the time of an 8x one). Settings with no
  measurement of their own take the experiment's overall one.
- **runs per task**: an explicit ``runs_per_task`` stays (made smaller only when its task would not fit
  MaxTime). ``auto`` starts from the bundle that keeps the experiment at ``max_tasks`` array tasks, and
  tries fewer, fuller tasks (bundles evened out: sizes within one), within the partition's MaxTime: it
  takes the most tasks whose predicted use of what they ask (used / requested core-time: whole minutes of
  a short run are mostly idle) reaches :data:`EFFICIENCY`, or, when no number of tasks does, is within
  :data:`TOLERANCE` of the best any reaches.
- **task time**: the smallest whole number of minutes such that the p95 of every task's predicted time
  (:func:`pyexputils.runner.plan.predictTask`) is at most :data:`SHARE` of it, capped by MaxTime (when a
  single run's p95 does not fit, the plan says so).

Without a measurement for any of a request's settings the request is returned as it came (today's plan).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterator, Mapping, Sequence

import numpy as np

from pyexputils.runner.bundles import CHUNK, IndexSet, splitBySetting
from pyexputils.runner.plan import PlanOptions, Request, RunTime, SettingTimes, TimeTable, predictSame, predictTasks

SHARE = 0.8  # p95 of a task's predicted time <= this share of its limit
EFFICIENCY = 0.7  # grow auto bundles until the tasks are predicted to use this share of what they ask
TOLERANCE = 0.03  # ... or, when no bundle size gets there, come this close to the best one
CLASS_RATIO = 1.5  # settings whose p95 differ by more go to different arrays
SCAN_LIMIT = 100_000  # bundle sizes tried at most per class


class RunTimes(Mapping[int, RunTime]):
    """A :class:`~pyexputils.runner.plan.TimeTable` read as ``{setting: RunTime}``: a RunTime is made only for
    a setting asked about (planning 10^6 measured settings holds arrays, not a dict of them)."""

    __slots__ = ("table",)

    def __init__(self, table: TimeTable) -> None:
        self.table = table

    def _row(self, setting: object) -> int:
        if not isinstance(setting, (int, np.integer)):
            return -1
        k = int(np.searchsorted(self.table.keys, setting))
        return k if k < len(self.table.keys) and self.table.keys[k] == setting else -1

    def __getitem__(self, setting: int) -> RunTime:
        k = self._row(setting)
        if k < 0:
            raise KeyError(setting)
        t = self.table
        return RunTime(float(t.mean[k]), float(t.sd[k]), float(t.p95[k]))

    def __contains__(self, setting: object) -> bool:
        return self._row(setting) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self.table.keys.tolist())

    def __len__(self) -> int:
        return len(self.table.keys)


@dataclass(frozen=True)
class Measured:
    """What is known of one experiment's run times: per setting (``index % settings``) and over all."""

    settings: int
    perSetting: Mapping[int, RunTime] = field(default_factory=dict)  # a RunTimes (arrays) from Durations
    overall: RunTime | None = None

    def of(self, setting: int) -> RunTime | None:
        return self.perSetting.get(setting, self.overall)

    def table(self) -> TimeTable:
        """Per setting, as arrays."""
        return self.perSetting.table if isinstance(self.perSetting, RunTimes) else TimeTable.of(self.perSetting)


def taskMinutes(p95: float, share: float = SHARE) -> int:
    """Whole minutes that hold ``p95`` seconds within ``share`` of the limit (at least 1)."""
    return max(1, math.ceil(p95 / share / 60 - 1e-9))


def fitBundle(rt: RunTime, n: int, parallel: int, start: int, maxTime: int | None, grow: bool) -> int:
    """Runs per task for ``n`` runs of time ``rt``: ``start`` (the bundle planned without measurements),
    shrunk until a task fits ``maxTime``; with ``grow``, evened out over the most tasks that are predicted
    to use :data:`EFFICIENCY` of what they ask (or nearly the best share any number of tasks reaches)."""

    def minutes(b: int) -> int:
        return taskMinutes(predictSame(rt, b, parallel)[1])

    def fits(b: int) -> bool:
        return maxTime is None or minutes(b) <= maxTime

    b = max(1, min(start, n))
    if not fits(b):
        lo, hi = 1, b  # the largest bundle that fits (1 when none does)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo
    if not grow:
        return b
    tasks = math.ceil(n / b)

    def efficiency(t: int) -> float:
        return n * rt.mean / (parallel * t * minutes(math.ceil(n / t)) * 60)

    tried: list[tuple[int, float]] = []  # (tasks, efficiency), from the most tasks down
    for t in range(tasks, max(0, tasks - SCAN_LIMIT), -1):
        if not fits(math.ceil(n / t)):
            break
        tried.append((t, efficiency(t)))
    if not tried:
        return math.ceil(n / tasks)
    best = max(e for _, e in tried)
    want = EFFICIENCY if best >= EFFICIENCY else best - TOLERANCE
    t = next(t for t, e in tried if e >= want)  # the most tasks (the shortest wait) that does about as well
    return math.ceil(n / t)


def classes(indices: Sequence[int], m: Measured) -> tuple[list[tuple[RunTime, IndexSet]], IndexSet]:
    """``indices`` of measured settings split into classes of similar run time (slowest last), each with a
    summary RunTime (count-weighted mean and variance, the slowest p95); and the indices of settings with no
    measurement of their own (planned as without measurements)."""
    iset = IndexSet.of(indices)
    if len(iset) == 0 or m.settings < 1:
        return [], iset
    S = m.settings
    counts = np.zeros(S, dtype=np.int32)  # indices per setting (a pass over the indices a chunk at a time)
    for a in range(0, len(iset), CHUNK):
        np.add.at(counts, iset.between(a, a + CHUNK).array() % S, 1)
    t = m.table()
    rows = np.flatnonzero((t.keys < S) & (counts[np.minimum(t.keys, S - 1)] > 0))  # measured settings asked for
    order = rows[np.argsort(t.p95[rows], kind="stable")]  # by p95 (ties: by setting)
    del rows
    s = t.keys[order]
    c = counts[s].astype(np.float64)
    del counts
    p95 = t.p95[order]
    starts: list[int] = []  # a class: from its fastest setting up to CLASS_RATIO x that setting's p95
    k = 0
    while k < len(p95):
        starts.append(k)
        k = max(k + 1, int(np.searchsorted(p95, CLASS_RATIO * max(float(p95[k]), 1e-9), side="right")))
    summaries: list[RunTime] = []
    if starts:
        at = np.asarray(starts, dtype=np.int64)
        total = np.add.reduceat(c, at)
        mean = np.add.reduceat(c * t.mean[order], at) / total
        var = np.add.reduceat(c * t.sd[order] ** 2, at) / total  # tasks mix the settings (as predictTask does)
        top = np.maximum.reduceat(p95, at)
        summaries = [RunTime(float(a), math.sqrt(float(b)), float(x)) for a, b, x in zip(mean, var, top)]
    del c, p95, order
    code = np.full(S, len(starts), dtype=np.int16)  # the class of each setting; len(starts): not measured
    sizes = np.asarray([*starts[1:], len(s)], dtype=np.int64) - np.asarray(starts, dtype=np.int64)
    code[s] = np.repeat(np.arange(len(starts), dtype=np.int16), sizes)
    members = splitBySetting(iset, code, len(starts) + 1)
    return list(zip(summaries, members[:-1])), members[-1]


def _worst(times: Sequence[RunTime], b: int, parallel: int) -> float:
    return float(predictTasks(times, b, parallel)[1].max())


def _autoStart(o: PlanOptions, total: int) -> int:
    b = max(1, math.ceil(total / o.max_tasks))
    return math.ceil(b / o.parallel) * o.parallel if b > 1 else b


def describe(rt: RunTime) -> str:
    """``~12 s/run`` / ``~3.5 min/run`` / ``~2.0 h/run``."""
    if rt.mean < 90:
        return f"~{rt.mean:.0f} s/run"
    if rt.mean < 90 * 60:
        return f"~{rt.mean / 60:.1f} min/run"
    return f"~{rt.mean / 3600:.1f} h/run"


def fit(requests: Sequence[Request], measured: Mapping[str, Measured], maxTime: int | None) -> tuple[list[Request], list[str]]:
    """Each request whose key has measurements (``measured[key]``), split into classes and fitted (see the
    module docstring); the others unchanged. Returns the requests and notes."""
    out: list[Request] = []
    notes: list[str] = []
    for r in requests:
        m = measured.get(r.key)
        split, rest = classes(r.indices, m) if m is not None else ([], IndexSet.of(r.indices))
        if m is None or not split:
            out.append(r)
            continue
        o = r.options
        table = m.table()
        if rest:
            out.append(Request(r.key, rest, replace(o, label=", ".join(x for x in (o.label, "not measured") if x))))
        for rt, idx in split:
            n = len(idx)
            fixed = o.runs_per_task is not None
            start = o.runs_per_task if o.runs_per_task is not None else _autoStart(o, len(r.indices))
            b = fitBundle(rt, n, o.parallel, start, maxTime, grow=not fixed)
            times = SettingTimes(idx, m.settings, table)  # every setting of a class is measured
            worst = _worst(times, b, o.parallel)
            while maxTime is not None and taskMinutes(worst) > maxTime and b > 1:  # its slowest members
                b = max(1, b - max(1, b // 10))
                worst = _worst(times, b, o.parallel)
            minutes = taskMinutes(worst)
            if maxTime is not None and minutes > maxTime:
                notes.append(f"{r.key.rsplit('#', 1)[0]}: runs of {describe(rt)} are predicted to take {worst / 60:.1f} min "
                             f"at p95: over {SHARE:.0%} of the partition's MaxTime ({maxTime} min)")  # fmt: skip
                minutes = maxTime
            label = ", ".join(x for x in (o.label, describe(rt)) if x)
            out.append(Request(r.key, idx, replace(o, runs_per_task=b, task_minutes=minutes, label=label), times))
    return out, notes
