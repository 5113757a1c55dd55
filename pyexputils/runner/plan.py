"""Plan: missing indices + resources + cluster limits -> array jobs of bundles of indices (pure).

Keys of the ``slurm`` block that shape a plan (parsed and checked by :mod:`pyexputils.runner.options`):

- ``runs_per_task`` (``"auto"``): indices per array task, run one after another (``parallel`` at a time)
  by one runner. ``auto`` bundles only as much as needed (:func:`autoBundle`): the smallest bundle that
  keeps each experiment at ``max_tasks`` array tasks or fewer (default 1000), the whole submission at
  :data:`TASKS_PER_SLOT` task per task slot or fewer (a slot: the partition's CPUs over a task's CPUs, or
  the local workers; more tasks than that cannot run at once, and each one costs the scheduler a launch
  and the runner a start) and within the queue's free slots, without a task's time exceeding the
  partition's MaxTime.
- ``parallel`` (1): indices run at once inside one task. The task asks for ``cpus_per_task x parallel``
  CPUs (and, when ``mem`` is given per node, ``mem x parallel``; ``mem_per_cpu`` scales by itself).
- ``time``: the limit of **one run** (minutes, ``M:S``, ``H:M:S``, ``D-H:M:S`` or ``hours(n)``). A task
  asks for ``ceil(runs_per_task / parallel) x time``, in whole minutes, capped by the partition's MaxTime
  (when the cap bites, the plan notes it: the runner then stops at the limit and the watcher resubmits
  what was cut off).
- ``throttle``: at most this many tasks of one array at once (``--array=0-N%throttle``).
- ``max_tasks`` (1000): the ``auto`` bundling target per experiment.
- ``signal_seconds``: how long before a task's limit the runner gets USR1 (default: a tenth of the time,
  30 s to 5 min).
- ``max_array_size``, ``max_job_count``, ``max_submit_jobs``, ``max_time``: override the cluster's limits.

With measured run times (:mod:`pyexputils.runner.planfit`) a request comes already fitted: its
``runs_per_task`` fixed, its task's time (``task_minutes``) chosen, and ``times`` (one :class:`RunTime` per
index) to predict each task by; the arrays then carry their predicted time and core-minutes.

Arrays are numbered from 0 and hold at most MaxArraySize tasks (the highest task id is MaxArraySize - 1).
The total of array tasks never exceeds the free queue slots (``min(MaxSubmitJobs, MaxJobCount)`` minus the
jobs already queued); indices that do not fit are *deferred*: reported, left for the next submit/watch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, overload

import numpy as np
import numpy.typing as npt

from pyexputils.runner.backend import Limits
from pyexputils.runner.bundles import CHUNK, Bundles, IndexSet, countRuns

DEFAULT_MAX_TASKS = 1000
TASKS_PER_SLOT = 1  # auto: at most this many tasks per task slot (one wave: every task starts at once)
Z95 = 1.645  # the normal 95th percentile, in standard deviations


@dataclass(frozen=True)
class RunTime:
    """The measured time of one run (seconds): mean, standard deviation and 95th percentile."""

    mean: float
    sd: float
    p95: float


def predictTask(runs: Sequence[RunTime], parallel: int = 1) -> tuple[float, float]:
    """(mean, p95) seconds of one task that runs ``runs``, ``parallel`` at a time: ``ceil(n / parallel)``
    rounds of the average run; the p95 adds the spread (normal approximation) and is never below the slowest
    run's p95 plus the other rounds' mean."""
    n = len(runs)
    if n == 0:
        return 0.0, 0.0
    rounds = math.ceil(n / max(1, parallel))
    avg = sum(r.mean for r in runs) / n
    var = sum(r.sd * r.sd for r in runs) / n
    mean = rounds * avg
    p95 = max(mean + Z95 * math.sqrt(rounds * var), (rounds - 1) * avg + max(r.p95 for r in runs))
    return mean, p95


def predictSame(rt: RunTime, n: int, parallel: int = 1) -> tuple[float, float]:
    """:func:`predictTask` of ``n`` runs of time ``rt`` (without building the list)."""
    if n <= 0:
        return 0.0, 0.0
    rounds = math.ceil(n / max(1, parallel))
    mean = rounds * rt.mean
    return mean, max(mean + Z95 * math.sqrt(rounds) * rt.sd, (rounds - 1) * rt.mean + rt.p95)


@dataclass(frozen=True)
class TimeTable:
    """RunTimes by setting, as arrays: ``keys`` (sorted settings) and their mean, sd and p95."""

    keys: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    sd: npt.NDArray[np.float64]
    p95: npt.NDArray[np.float64]

    @classmethod
    def of(cls, table: Mapping[int, RunTime]) -> "TimeTable":
        keys = sorted(table)
        rows = np.array([(table[k].mean, table[k].sd, table[k].p95) for k in keys], dtype=np.float64).reshape(-1, 3)
        return cls(np.array(keys, dtype=np.int64), rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy())


class SettingTimes(Sequence[RunTime]):
    """The predicted run time of each of ``indices``: its setting's (``index % settings``) in ``table``, which
    must hold every such setting. A ``Sequence[RunTime]`` (``times[k]``) without a RunTime per index: the table
    is kept as arrays, and :func:`predictTasks` predicts whole arrays of tasks with them."""

    __slots__ = ("indices", "settings", "table")

    def __init__(self, indices: IndexSet, settings: int, table: "Mapping[int, RunTime] | TimeTable") -> None:
        self.indices = indices
        self.settings = settings
        self.table = table if isinstance(table, TimeTable) else TimeTable.of(table)

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, k: int) -> RunTime: ...
    @overload
    def __getitem__(self, k: slice) -> "SettingTimes": ...
    def __getitem__(self, k: int | slice) -> "RunTime | SettingTimes":
        if isinstance(k, slice):
            return SettingTimes(self.indices[k], self.settings, self.table)
        mean, sd, p95 = self.arrays(k % len(self) if k < 0 else k, (k % len(self) if k < 0 else k) + 1)
        if not len(mean):
            raise IndexError(k)
        return RunTime(float(mean[0]), float(sd[0]), float(p95[0]))

    def arrays(self, a: int, b: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(mean, sd, p95) of the members at positions ``a … b − 1``."""
        t = self.table
        row = np.searchsorted(t.keys, self.indices.between(a, b).array() % self.settings)
        return t.mean[row], t.sd[row], t.p95[row]


def predictTasks(times: Sequence[RunTime], per: int, parallel: int = 1) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:func:`predictTask` of every task of ``times`` cut in tasks of ``per`` (the last possibly shorter):
    (means, p95s) arrays; with :class:`SettingTimes`, in arrays a chunk of tasks at a time."""
    if not isinstance(times, SettingTimes):
        preds = [predictTask(times[j : j + per], parallel) for j in range(0, len(times), per)]
        return np.array([m for m, _ in preds], dtype=np.float64), np.array([p for _, p in preds], dtype=np.float64)
    means: list[npt.NDArray[np.float64]] = []
    p95s: list[npt.NDArray[np.float64]] = []
    step = max(1, CHUNK // per) * per
    for a in range(0, len(times), step):
        mean, sd, p95 = times.arrays(a, a + step)
        starts = np.arange(0, len(mean), per)
        n = np.diff(np.append(starts, len(mean))).astype(np.float64)
        rounds = np.ceil(n / max(1, parallel))
        avg = np.add.reduceat(mean, starts) / n
        var = np.add.reduceat(sd * sd, starts) / n
        m = rounds * avg
        means.append(m)
        p95s.append(np.maximum(m + Z95 * np.sqrt(rounds * var), (rounds - 1) * avg + np.maximum.reduceat(p95, starts)))
    if not means:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(means), np.concatenate(p95s)


@dataclass(frozen=True)
class PlanOptions:
    """The planning part of one experiment's resolved ``slurm`` block."""

    runs_per_task: int | None = None  # None: auto
    parallel: int = 1
    time_minutes: int | None = None  # per run; None: the partition's default (not scaled)
    cpus_per_task: int = 1  # per run
    mem_mb: int | None = None  # ``mem`` per run (per node), scaled by parallel
    throttle: int | None = None
    max_tasks: int = DEFAULT_MAX_TASKS
    sbatch: Mapping[str, Any] = field(default_factory=dict)  # the other sbatch options, as given
    signal_seconds: int | None = None  # the runner's warning before the task's limit (default: render's)
    grace_s: float | None = None  # seconds between the runner's SIGTERM to a run and its SIGKILL
    task_minutes: int | None = None  # fitted: the whole task's time (over ``time_minutes`` x bundle)
    label: str = ""  # what sets this request apart from others of its experiment (``hidden=1024``, ``~12 s/run``)


@dataclass(frozen=True)
class Request:
    """What one experiment needs: its missing indices (sorted, unique) and its options."""

    key: str  # the experiment (its path); several requests may share one
    indices: Sequence[int]
    options: PlanOptions
    times: Sequence[RunTime] | None = None  # fitted: the predicted time of each index (aligned with indices; SettingTimes)


@dataclass(frozen=True)
class ArrayPlan:
    """One array job: ``tasks[t]`` are the indices of array task ``t`` (compact: :class:`Bundles`)."""

    key: str
    tasks: Sequence[Sequence[int]]
    runs_per_task: int
    parallel: int
    time_minutes: int | None  # of one task (its whole bundle)
    cpus_per_task: int  # of one task (cpus per run x parallel)
    mem_mb: int | None  # of one task when ``mem`` was given
    throttle: int | None
    sbatch: Mapping[str, Any]  # the user's other sbatch options
    label: str = ""
    predicted_s: float | None = None  # fitted: p95 seconds of its slowest task
    predicted_core_minutes: float | None = None  # fitted: CPU-minutes its tasks are predicted to use

    @property
    def size(self) -> int:
        return len(self.tasks)

    @property
    def runs(self) -> int:
        return countRuns(self.tasks)

    def coreMinutes(self) -> int:
        """CPU-minutes requested (tasks x cpus x time); 0 when no time was given."""
        return self.size * self.cpus_per_task * (self.time_minutes or 0)


@dataclass(frozen=True)
class Plan:
    arrays: list[ArrayPlan]
    deferred: dict[str, IndexSet]  # indices that did not fit the queue, per experiment
    notes: list[str]  # the limits that shaped the plan, in words

    @property
    def tasks(self) -> int:
        return sum(a.size for a in self.arrays)

    @property
    def runs(self) -> int:
        return sum(a.runs for a in self.arrays)


def freeSlots(limits: Limits, queued: int) -> int | None:
    """Jobs (array tasks) that may still be queued: the tighter of MaxSubmitJobs and MaxJobCount, less ``queued``."""
    caps = [c for c in (limits.max_submit_jobs, limits.max_job_count) if c is not None]
    return max(0, min(caps) - queued) if caps else None


def taskSlots(o: PlanOptions, limits: Limits) -> int | None:
    """How many tasks of these options can run at once: the backend's slots, else the partition's CPUs over
    a task's CPUs; None when unknown."""
    if limits.task_slots is not None:
        return max(1, limits.task_slots)
    if limits.cpus is None:
        return None
    return max(1, limits.cpus // max(1, o.cpus_per_task * o.parallel))


def autoBundle(o: PlanOptions, n: int, limits: Limits, share: float = 1.0) -> int:
    """The ``auto`` bundle of ``n`` indices: the smallest that keeps the tasks at ``max_tasks`` and at
    ``TASKS_PER_SLOT`` per slot (of which this request gets ``share``), in whole rounds of ``parallel``."""
    most = o.max_tasks
    slots = taskSlots(o, limits)
    if slots is not None:
        most = min(most, max(1, math.floor(TASKS_PER_SLOT * slots * share)))
    b = max(1, math.ceil(n / most))
    return math.ceil(b / o.parallel) * o.parallel if b > 1 else b


def _maxBundle(o: PlanOptions, maxTime: int | None) -> int | None:
    """The largest bundle whose task time fits the partition's MaxTime (None: no bound)."""
    if o.time_minutes is None or maxTime is None:
        return None
    return max(1, maxTime // o.time_minutes) * o.parallel


def _taskTime(o: PlanOptions, bundle: int, maxTime: int | None) -> int | None:
    if o.task_minutes is not None:
        return o.task_minutes if maxTime is None else min(o.task_minutes, maxTime)
    if o.time_minutes is None:
        return None
    t = math.ceil(bundle / o.parallel) * o.time_minutes
    return min(t, maxTime) if maxTime is not None else t


def plan(requests: Sequence[Request], limits: Limits, queued: int = 0) -> Plan:
    """Pack every request's indices into arrays that respect ``limits`` (see the module docstring)."""
    notes: list[str] = []
    maxTime = limits.max_time_minutes
    maxArray = limits.max_array_size
    slots = freeSlots(limits, queued)
    live = [r for r in requests if len(r.indices) > 0]

    # 1. bundle sizes: explicit, or auto (max_tasks, task slots shared by size), bounded by MaxTime for auto
    bundles: dict[int, int] = {}
    autoRuns = sum(len(r.indices) for r in live if r.options.runs_per_task is None)
    for i, r in enumerate(live):
        o = r.options
        n = len(r.indices)
        cap = _maxBundle(o, maxTime)
        if o.runs_per_task is not None:
            b = o.runs_per_task
        else:
            b = autoBundle(o, n, limits, n / autoRuns)
            if cap is not None and b > cap:
                b = cap
        bundles[i] = min(b, n)

    # 2. the queue: grow auto bundles until the tasks fit the free slots
    def total() -> int:
        return sum(math.ceil(len(r.indices) / bundles[i]) for i, r in enumerate(live))

    if slots is not None and total() > slots:
        auto = [i for i, r in enumerate(live) if r.options.runs_per_task is None]
        if auto and slots > 0:
            fixed = sum(math.ceil(len(live[i].indices) / bundles[i]) for i in range(len(live)) if i not in auto)
            room = max(len(auto), slots - fixed)
            autoRuns = sum(len(live[i].indices) for i in auto)
            for i in auto:
                r = live[i]
                share = max(1, room * len(r.indices) // autoRuns)
                b = max(bundles[i], math.ceil(len(r.indices) / share))
                cap = _maxBundle(r.options, maxTime)
                bundles[i] = min(b if cap is None else min(b, cap), len(r.indices))
            notes.append(f"queue: {slots} free job slots (of {_capText(limits)}, {queued} queued): bundled to fit")

    # 3. cut into tasks, defer what does not fit, split into arrays of <= MaxArraySize tasks
    arrays: list[ArrayPlan] = []
    deferred: dict[str, list[IndexSet]] = {}
    left = slots
    for i, r in enumerate(live):
        o = r.options
        b = bundles[i]
        idx = IndexSet.of(r.indices)
        ntasks = math.ceil(len(idx) / b)
        if left is not None and ntasks > left:
            keep = left * b
            deferred.setdefault(r.key, []).append(idx[keep:])
            idx = idx[:keep]
            ntasks = left
        if left is not None:
            left -= ntasks
        if not len(idx):
            continue
        tasks = Bundles(idx, b)
        time = _taskTime(o, b, maxTime)
        if o.task_minutes is None and o.time_minutes is not None and maxTime is not None and math.ceil(b / o.parallel) * o.time_minutes > maxTime:
            notes.append(f"{r.key}: task time capped at the partition's MaxTime ({maxTime} min)")
        per = maxArray if maxArray is not None else len(tasks)
        nArrays = math.ceil(len(tasks) / per)
        if nArrays > 1:
            notes.append(f"{r.key}: {len(tasks)} tasks split into {nArrays} arrays (MaxArraySize {maxArray})")
        size = math.ceil(len(tasks) / nArrays)  # balanced
        times = r.times
        for k in range(0, len(tasks), size):
            predicted: tuple[float, float] | None = None
            if times is not None:
                means, p95s = predictTasks(times[k * b : min(len(idx), (k + size) * b)], b, o.parallel)
                predicted = (float(p95s.max()), float(means.sum()) * o.cpus_per_task * o.parallel / 60)
            arrays.append(
                ArrayPlan(
                    key=r.key,
                    tasks=tasks[k : k + size],
                    runs_per_task=b,
                    parallel=o.parallel,
                    time_minutes=time,
                    cpus_per_task=o.cpus_per_task * o.parallel,
                    mem_mb=None if o.mem_mb is None else o.mem_mb * o.parallel,
                    throttle=o.throttle,
                    sbatch=o.sbatch,
                    label=o.label,
                    predicted_s=None if predicted is None else predicted[0],
                    predicted_core_minutes=None if predicted is None else predicted[1],
                )
            )
    if deferred:
        n = sum(len(x) for v in deferred.values() for x in v)
        notes.append(f"queue: {n} indices deferred (no free job slots: {_capText(limits)}, {queued} queued)")
    return Plan(arrays=arrays, deferred={k: IndexSet.union(v) for k, v in deferred.items()}, notes=notes)


def _capText(limits: Limits) -> str:
    parts = []
    if limits.max_submit_jobs is not None:
        parts.append(f"MaxSubmitJobs {limits.max_submit_jobs}")
    if limits.max_job_count is not None:
        parts.append(f"MaxJobCount {limits.max_job_count}")
    return ", ".join(parts)


def indexRanges(indices: Sequence[int]) -> str:
    """Sorted indices as ranges: ``0-99,140``."""
    out: list[str] = []
    it = iter(sorted(indices))
    start = prev = next(it, None)
    if start is None:
        return ""
    for i in it:
        if i == prev + 1:  # type: ignore[operator]
            prev = i
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    out.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(out)
