"""Measured run times and peak memory, per setting and per array, kept in the state folder.

One file per experiment (:meth:`pyexputils.runner.statedir.StateDir.durations`), a NumPy ``.npz`` of fixed
size per setting (``index % settings``), whatever the number of runs and attempts:

- per setting: completed runs ``n``, the ``sum`` and ``sumsq`` of their seconds, the ``max``, the last
  :data:`RING` run times (for the p95), the largest peak memory (MB; the runner's ``maxrss_mb``), and the
  TIMEOUTs: how many and the longest time a run was cut off at (a lower bound of its time);
- per array (tag): its requested time, CPUs and memory (as submitted), and over its ended tasks the seconds
  they ran, runs, TIMEOUTs and the largest peak memory of a run (x ``parallel``: the runs a task holds at
  once, against the task's memory): what ``status --efficiency`` shows. At most
  :data:`MAX_ARRAYS` arrays are kept (the oldest ended ones go first).

:meth:`Durations.refresh` folds the runner's status files (``status/<tag>/<task>.jsonl``) of the arrays not
closed yet: a task file once it says ``task_end``, or whatever it holds once its job has left the queue
(the array is then closed and never read again). ``submit``/``watch`` save it (they hold the ledger's
lock); ``status`` and ``--dry-run`` fold in memory only. A change in the number of settings starts afresh.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pyexputils.runner.plan import RunTime, indexRanges
from pyexputils.runner.planfit import Measured
from pyexputils.runner.policy import Measure
from pyexputils.runner.resources import parseMemMB, parseMinutes
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.status import readEvents

RING = 8  # run times kept per setting (the latest)
MAX_ARRAYS = 1000
VERSION = 1
_FIELDS = ("n", "sum", "sumsq", "max", "mem", "timeouts", "censored", "ring")


@dataclass(frozen=True)
class SubmissionInfo:
    """What :meth:`Durations.refresh` needs of one submission (from the ledger)."""

    tag: str
    job_id: str
    array_size: int
    options: Mapping[str, Any]  # its sbatch options as submitted (time, cpus_per_task, mem, mem_per_cpu)


def _ranges(text: str) -> set[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def requested(options: Mapping[str, Any]) -> dict[str, float | None]:
    """Time (minutes), CPUs and memory (MB) one task of an array asked for, from its sbatch options."""
    cpus = int(options.get("cpus_per_task", 1) or 1)
    try:
        minutes = parseMinutes(options["time"]) if options.get("time") else None
    except Exception:  # noqa: BLE001 - whatever a foreign record holds: not known
        minutes = None
    mem: float | None = None
    try:
        if options.get("mem"):
            mem = float(parseMemMB(options["mem"]))
        elif options.get("mem_per_cpu"):
            mem = float(parseMemMB(options["mem_per_cpu"])) * cpus
    except Exception:  # noqa: BLE001
        mem = None
    return {"minutes": None if minutes is None else float(minutes), "cpus": float(cpus), "mem_mb": mem}


class Durations:
    """The measurements of one experiment (see the module docstring)."""

    def __init__(self, path: str, experiment: str, settings: int) -> None:
        self.path = path
        self.experiment = experiment
        self.settings = settings
        self.arrays: dict[str, dict[str, Any]] = {}  # tag -> its record
        self.changed = False
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._empty = True  # the per-setting arrays are made when a run is added (a look at a sweep never
        self._allocate(0)  # measured costs nothing per setting)

    def _allocate(self, settings: int) -> None:
        self.n = np.zeros(settings, np.int64)
        self.sum = np.zeros(settings, np.float64)
        self.sumsq = np.zeros(settings, np.float64)
        self.max = np.zeros(settings, np.float64)
        self.mem = np.zeros(settings, np.float64)  # 0: not known
        self.timeouts = np.zeros(settings, np.int64)
        self.censored = np.zeros(settings, np.float64)
        self.ring = np.zeros((settings, RING), np.float32)
        self._empty = settings == 0

    # --- the file -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, state: StateDir, experiment: str, settings: int) -> "Durations":
        """The measurements of ``experiment`` (empty when there are none, or the settings changed)."""
        d = cls(state.durations(experiment), experiment, settings)
        try:
            with np.load(d.path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") != VERSION or meta.get("settings") != settings:
                    return d
                for name in _FIELDS:
                    setattr(d, name, z[name].copy())
                d._empty = d.n.size == 0
                d._cache = None
                d.arrays = meta.get("arrays", {})
        except (OSError, KeyError, ValueError, zlib.error):
            return cls(d.path, experiment, settings)  # none yet, or unreadable: measured afresh
        return d

    def save(self) -> None:
        """Write atomically (the caller holds the ledger's lock)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        meta = {"version": VERSION, "experiment": self.experiment, "settings": self.settings, "arrays": self.arrays}
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, meta=np.array(json.dumps(meta)), **{k: getattr(self, k) for k in _FIELDS})
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.changed = False

    # --- folding status files -----------------------------------------------------------------------
    def refresh(self, state: StateDir, submissions: Iterable[SubmissionInfo], live: set[str]) -> None:
        """Fold the status files of arrays not closed yet; ``live``: job ids still in the queue."""
        for sub in submissions:
            rec = self.arrays.get(sub.tag)
            if rec is None:
                rec = {"job": sub.job_id, "size": sub.array_size, **requested(sub.options), "folded": "", "closed": False,
                       "tasks": 0, "elapsed": 0.0, "runs": 0, "completed": 0, "timeouts": 0, "mem_max_mb": 0.0, "run_seconds": 0.0}  # fmt: skip
            if rec["closed"]:
                continue
            ended = sub.job_id not in live and sub.job_id != "unknown"
            folded = _ranges(rec["folded"])
            folder = state.statusOf(sub.tag)
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            new = False
            for name in names:
                stem = name.removesuffix(".jsonl")
                if not name.endswith(".jsonl") or not stem.isdigit() or int(stem) in folded:
                    continue
                events = list(readEvents(os.path.join(folder, name)))
                if not ended and not any(e.get("event") == "task_end" for e in events):
                    continue
                self._foldTask(rec, events)
                folded.add(int(stem))
                new = True
            if new:
                rec["folded"] = indexRanges(sorted(folded))
            if ended:
                rec["closed"] = True
            if new or ended or sub.tag not in self.arrays:
                self.arrays[sub.tag] = rec
                self.changed = True
        self._prune()

    def _foldTask(self, rec: dict[str, Any], events: Sequence[Mapping[str, Any]]) -> None:
        times = [float(e["time"]) for e in events if isinstance(e.get("time"), (int, float))]
        start = next((float(e["time"]) for e in events if e.get("event") == "task_start" and "time" in e), None)
        if start is not None and times:
            rec["elapsed"] += max(times) - start
        rec["tasks"] += 1
        for e in events:
            if e.get("event") == "task_start" and isinstance(e.get("parallel"), int):
                rec["parallel"] = max(int(rec.get("parallel", 1)), e["parallel"])
        for e in events:
            if e.get("event") != "end" or not isinstance(e.get("index"), int):
                continue
            seconds = e.get("seconds")
            if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
                continue
            rec["runs"] += 1
            rec["run_seconds"] += float(seconds)
            mem = e.get("maxrss_mb")
            if isinstance(mem, (int, float)):
                rec["mem_max_mb"] = max(rec["mem_max_mb"], float(mem))
            self.add(int(e["index"]), str(e.get("cause")), float(seconds), float(mem) if isinstance(mem, (int, float)) else None)
            if e.get("cause") == "TIMEOUT":
                rec["timeouts"] += 1
            elif e.get("cause") == "COMPLETED":
                rec["completed"] += 1

    def add(self, index: int, cause: str, seconds: float, memMB: float | None = None) -> None:
        """One ended run of ``index``: a COMPLETED one's time is a sample, a TIMEOUT's a lower bound."""
        if self._empty:
            self._allocate(self.settings)
        s = index % self.settings
        if memMB is not None:
            self.mem[s] = max(self.mem[s], memMB)
        if cause == "COMPLETED":
            self.ring[s, self.n[s] % RING] = seconds
            self.n[s] += 1
            self.sum[s] += seconds
            self.sumsq[s] += seconds * seconds
            self.max[s] = max(self.max[s], seconds)
        elif cause == "TIMEOUT":
            self.timeouts[s] += 1
            self.censored[s] = max(self.censored[s], seconds)
        self.changed = True
        self._cache = None

    def _prune(self) -> None:
        if len(self.arrays) > MAX_ARRAYS:
            closed = [t for t, r in self.arrays.items() if r["closed"]]
            for t in closed[: len(self.arrays) - MAX_ARRAYS]:
                del self.arrays[t]

    # --- what planning, the policy and status read -------------------------------------------------
    def _table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean, standard deviation and p95 (seconds) of every setting (0 where nothing completed), in bulk."""
        if self._cache is None:
            n = np.maximum(self.n, 1)
            mean = self.sum / n
            sd = np.sqrt(np.maximum(0.0, self.sumsq / n - mean * mean))
            ring = self.ring.astype(np.float64)
            ring[np.arange(RING)[None, :] >= self.n[:, None]] = np.nan
            p95 = np.zeros(self.settings)
            some = self.n > 0
            if some.any():
                p95[some] = np.nanquantile(ring[some], 0.95, axis=1)
            p95 = np.maximum(np.maximum(p95, mean), self.censored) * some
            self._cache = (mean * some, sd * some, p95)
        return self._cache

    def _runTime(self, s: int) -> RunTime | None:
        if self._empty or self.n[s] == 0:
            if self.timeouts[s]:
                t = 2.0 * float(self.censored[s])  # at least this long: the policy's doubling
                return RunTime(t, 0.0, t)
            return None
        mean, sd, p95 = self._table()
        return RunTime(float(mean[s]), float(sd[s]), float(p95[s]))

    def measured(self) -> Measured | None:
        """Per setting and over all, for :mod:`pyexputils.runner.planfit`; None when nothing is known."""
        if self._empty:
            return None
        seen = np.flatnonzero((self.n > 0) | (self.timeouts > 0))
        if seen.size == 0:
            return None
        per: dict[int, RunTime] = {}
        for s in seen.tolist():
            rt = self._runTime(s)
            if rt is not None:
                per[s] = rt
        n = int(self.n.sum())
        overall: RunTime | None = None
        if n:
            mean = float(self.sum.sum()) / n
            sd = math.sqrt(max(0.0, float(self.sumsq.sum()) / n - mean * mean))
            samples = self.ring[np.arange(RING)[None, :] < self.n[:, None]]
            overall = RunTime(mean, sd, max(mean, float(np.quantile(samples, 0.95))))
        return Measured(self.settings, per, overall)

    def measure(self, index: int) -> Measure | None:
        """What the policy escalates from after a TIMEOUT / OUT_OF_MEMORY of ``index``: its setting's p95
        run time and largest peak memory, where known."""
        if self._empty:
            return None
        s = index % self.settings
        rt = self._runTime(s) if self.n[s] else None
        mem = float(self.mem[s]) or None
        if rt is None and mem is None:
            return None
        return Measure(None if rt is None else rt.p95, mem)

    def efficiency(self) -> list[dict[str, Any]]:
        """Per array with an ended task, like seff: used / requested time and memory."""
        out = []
        for tag, r in self.arrays.items():
            if not r["tasks"]:
                continue
            asked = r["minutes"] * 60 * r["tasks"] if r["minutes"] else None
            out.append({
                "tag": tag, "job": r["job"], "tasks": r["size"], "tasks_ended": r["tasks"], "runs": r["runs"],
                "completed": r["completed"], "timeouts": r["timeouts"], "cpus": r["cpus"],
                "time_requested_min": r["minutes"], "task_seconds_used": round(r["elapsed"], 3),
                "core_hours_requested": None if asked is None else round(asked * r["cpus"] / 3600, 4),
                "core_hours_used": round(r["elapsed"] * r["cpus"] / 3600, 4),
                "time_efficiency": None if not asked else round(r["elapsed"] / asked, 4),
                "mem_requested_mb": r["mem_mb"], "mem_max_mb": r["mem_max_mb"] or None,
                "mem_efficiency": round(r["mem_max_mb"] * r.get("parallel", 1) / r["mem_mb"], 4) if r["mem_mb"] and r["mem_max_mb"] else None,
                "closed": r["closed"],
            })  # fmt: skip
        return out
