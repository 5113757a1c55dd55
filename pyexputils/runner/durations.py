"""Measured run times and peak memory, per setting and per array, kept in the state folder.

Per experiment, a NumPy ``.npz`` (:meth:`pyexputils.runner.statedir.StateDir.durations`) of fixed size per
measured setting (``index % settings``; a setting never measured costs nothing), whatever the number of runs
and attempts, and a small ``.log.npz`` beside it (the per-array records, and the runs folded since the
table was written: a watch round reads only that one, see :class:`Durations`):

- per setting: completed runs ``n``, the ``sum`` and ``sumsq`` of their seconds, the ``max``, the last
  :data:`RING` run times (for the p95), the largest peak memory (MB; the runner's ``maxrss_mb``), and the
  TIMEOUTs: how many and the longest time a run was cut off at (a lower bound of its time); 80 bytes a
  measured setting (types: :data:`_DTYPES`);
- per array (tag): its requested time, CPUs and memory (as submitted), and over its ended tasks the seconds
  they ran, runs, TIMEOUTs and the largest peak memory of a run (x ``parallel``: the runs a task holds at
  once, against the task's memory): what ``status --efficiency`` shows. At most
  :data:`MAX_ARRAYS` arrays are kept (the oldest ended ones go first).

:meth:`Durations.refresh` folds the runner's status files (``status/<tag>/<task>.jsonl``) of the arrays not
closed yet: a task file once its last line is a ``task_end`` (its last run ended: a requeued task's file
waits for the run after the requeue; looked at from the end of the file, not read through, while the task
runs), or whatever it holds once its job has left the queue (the array is then closed and never read again). ``submit``/``watch`` save it (they hold the ledger's
lock); ``status`` and ``--dry-run`` fold in memory only. A change in the number of settings starts afresh.

The table is held in memory while runs are merged into it; once its file holds it (written, or read and
nothing added), it is let go, and what planning and the policy read of it is kept (:class:`_Figures`: per
setting its mean, sd, p95 and peak memory, 41 bytes; made once, the table emptied a column at a time on the
way). Asked for again (runs added, ``n``/``ring``), it is read again.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from pyexputils.runner.plan import RunTime, TimeTable, indexRanges
from pyexputils.runner.planfit import Measured, RunTimes
from pyexputils.runner.policy import Measure
from pyexputils.runner.resources import parseMemMB, parseMinutes
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.status import lastRunEnded, unwanted

RING = 8  # run times kept per setting (the latest)
MAX_ARRAYS = 1000
VERSION = 3  # of the files (2: the same log, the table's counts and figures in wider types; 1: a dense table, no log)
_READ = (2, VERSION)  # versions whose files are read as they are (a version-2 table narrowed: _Table.of)
_FOLDED = frozenset({"task_start", "end", "task_end"})  # what _foldTask reads (its start lines are not decoded)
LOG_MIN = 256  # runs folded since the table was written, kept beside it, before it is rewritten
BLOCK = 1 << 18  # bytes of a status file read at once (a task of any size is folded in bounded memory)

# Every line of a block of a status file is one of: an ``end`` line as the runner's StatusWriter writes it
# (compact JSON, its fields in this order; see runner/task.py ``_finish``: its time, index, cause, seconds and
# peak memory taken without decoding it); a line StatusWriter began with a kind not folded (``start``, ...:
# left, as readEvents leaves it); any other line (last group), decoded with json. Strict: an end line of any
# other shape (spaces, a negative or non-finite number, an escape in a string, another field) is decoded, so
# a line matched gives what json would give.
_INT = r"-?(?:0|[1-9]\d*)"
_NUM = r"(?:0|[1-9]\d{0,17})(?:\.\d+)?(?:[eE][-+]?\d{1,3})?"
_STR = r'"[^"\\\x00-\x1f]*"'
_HEADS = rf'(?:"(?:host|job|task|attempt)":(?:{_STR}|{_INT}|null),)*'  # StatusWriter's common fields
_REST = (rf'"time":({_NUM}),"index":(0|[1-9]\d{{0,17}}),"cause":"([A-Z_]+)","exit":(?:{_INT}|null),"signal":(?:{_INT}|null),'
         rf'"seconds":({_NUM})(?:,"maxrss_mb":({_NUM}))?(?:,"missing":\[(?:{_STR}(?:,{_STR})*)?\])?(?:,"killed":true)?\}}')  # fmt: skip
_OTHER = r'|\{"event":"(?!(?:task_start|end|task_end)")[^"\n]*"[^\n]*|([^\n]*))$'


_INDICES = '"indices":'
_NOT_INDEX = re.compile(r"[^0-9,]|,,|,0\d")  # in a list of indices: not a digit or comma, an empty item, a leading zero


def _indexList(line: str, at: int) -> int:
    """Where a list of indices as json.dumps writes it compactly (``[0,10,20]``) that begins at ``at`` ends
    (-1: not such a list). Searched in place (no copy of a long line; a regular expression's repeated group
    would keep a frame per index)."""
    close = line.find("]", at)
    if close < 0 or line[at : at + 1] != "[":
        return -1
    if close > at + 1 and (line[at + 1] == "," or line[close - 1] == "," or (line[at + 1] == "0" and line[at + 2] not in ",]")
                           or _NOT_INDEX.search(line, at + 1, close)):  # fmt: skip
        return -1
    return close + 1


def _lines(heads: str) -> re.Pattern[str]:
    return re.compile(rf'^(?:\{{"event":"end",{heads}{_REST}{_OTHER}', re.M)


_LINE = _lines(_HEADS)
_HEAD_OK = re.compile(_HEADS)
_BY_HEAD: dict[str, re.Pattern[str]] = {}  # the common fields of a writer's end lines, as written -> _LINE for them only (3x faster)


def _pattern(text: str) -> re.Pattern[str]:
    """:data:`_LINE`, or the same for the common fields of the first end line of ``text`` only (a line of
    other fields is then an other line, tried with :data:`_LINE` alone)."""
    at = text.find('{"event":"end",')
    head = text[at + 15 : text.find('"time":', at)] if at >= 0 else ""
    if at < 0 or "\n" in head or not _HEAD_OK.fullmatch(head):
        return _LINE
    if head not in _BY_HEAD:
        if len(_BY_HEAD) >= 64:
            _BY_HEAD.clear()
        _BY_HEAD[head] = _lines(re.escape(head))
    return _BY_HEAD[head]


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


_STATS = ("n", "sum", "sumsq", "max", "mem", "timeouts", "censored", "ring")
# Their types (version 3; version 2 had every count int64 and every figure but the ring float64): counts
# int32; the sums float64; a run time that is not summed (the longest, the longest cut-off) float32, as the
# ring's samples (the p95 they enter is made of float32 samples); the peak memory float64 (handed to the
# policy as it was measured).
_DTYPES: dict[str, type[np.generic]] = {"n": np.int32, "sum": np.float64, "sumsq": np.float64, "max": np.float32, "mem": np.float64,
                                        "timeouts": np.int32, "censored": np.float32, "ring": np.float32}  # fmt: skip
_CODE = {"COMPLETED": 1, "TIMEOUT": 2}  # what a sample is (0: its memory only)


@dataclass
class _Table:
    """The per-setting measurements, only of the settings measured (``ids``, sorted; types :data:`_DTYPES`)."""

    ids: np.ndarray  # int64
    n: np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray
    max: np.ndarray
    mem: np.ndarray  # 0: not known
    timeouts: np.ndarray
    censored: np.ndarray
    ring: np.ndarray  # (len(ids), RING)

    @classmethod
    def of(cls, ids: Any, columns: Mapping[str, Any]) -> "_Table":
        """From a file's arrays, in this version's types (a count or figure of an older file as this version
        keeps it; each read into an array of its own)."""
        with np.errstate(over="ignore"):  # a float64 beyond float32's range: inf, as merging it makes it
            return cls(np.asarray(ids).astype(np.int64, copy=False), *(np.asarray(columns[k]).astype(_DTYPES[k], copy=False) for k in _STATS))

    @classmethod
    def empty(cls) -> "_Table":
        return cls(np.zeros(0, np.int64), *(np.zeros((0, RING) if k == "ring" else 0, _DTYPES[k]) for k in _STATS))

    @classmethod
    def dense(cls, z: Any) -> "_Table":
        """From a version-1 file: arrays over every setting."""
        n, timeouts, mem = z["n"], z["timeouts"], z["mem"]
        ids = np.flatnonzero((n > 0) | (timeouts > 0) | (mem > 0))
        return cls.of(ids, {k: np.asarray(z[k])[ids] for k in _STATS})

    def drop(self, *names: str) -> None:
        """Let those columns go (the table is being let go: see :meth:`_Figures.of`)."""
        for k in names:
            setattr(self, k, np.zeros(0, _DTYPES[k]))

    def grow(self, settings: np.ndarray) -> None:
        """Rows for the settings (sorted, distinct) not here yet."""
        new = settings[~np.isin(settings, self.ids)]
        if not len(new):
            return
        at = np.searchsorted(self.ids, new)
        self.ids = np.insert(self.ids, at, new)
        for k in _STATS:
            setattr(self, k, np.insert(getattr(self, k), at, 0, axis=0))


@dataclass(frozen=True)
class _Figures:
    """What planning and the policy read of a table (:meth:`Durations.measured`, :meth:`Durations.measure`),
    made from it once; kept when the table itself is let go (its file holds it: read again if asked)."""

    ids: np.ndarray  # the table's settings
    mem: np.ndarray  # their largest peak memory (0: not known)
    done: np.ndarray  # bool: they completed runs
    measured: Measured | None

    @classmethod
    def of(cls, t: _Table, settings: int, letGo: bool = False) -> "_Figures":
        """With ``letGo``, ``t`` is emptied on the way (each column dropped once used, the ring's samples
        sorted in place): what they need, without a copy of the table's largest parts."""
        done = t.n > 0
        ids, mem = t.ids, t.mem
        return cls(ids, mem, done, _measured(t, settings, done, letGo))


def _measured(t: _Table, settings: int, some: np.ndarray, letGo: bool) -> Measured | None:
    """Mean, standard deviation and p95 (seconds) of every measured setting (0 where nothing completed;
    only TIMEOUTs: twice the longest cut-off, the policy's doubling), and over all; in bulk, in place where
    the result is the same."""
    seen = some | (t.timeouts > 0)
    if letGo:
        t.drop("max", "timeouts", "mem")
    if not seen.any():
        return None
    total = int(t.n.sum())
    mu = float(t.sum.sum()) / total if total else 0.0
    sigma = math.sqrt(max(0.0, float(t.sumsq.sum()) / total - mu * mu)) if total else 0.0
    n = np.maximum(t.n, 1)
    mean = t.sum / n
    sd = t.sumsq / n
    sd -= mean * mean
    del n
    if letGo:
        t.drop("sum", "sumsq")
    np.sqrt(np.maximum(0.0, sd, out=sd), out=sd)
    p95 = np.zeros(len(t.ids))
    filled = np.minimum(t.n, RING)
    for c in np.unique(filled[some]).tolist():  # over the first c of the ring (all once full)
        rows = np.flatnonzero(filled == c)
        for a in range(0, len(rows), 1 << 14):  # in float64 a chunk of settings at a time
            part = rows[a : a + (1 << 14)]
            p95[part] = np.quantile(t.ring[part, :c].astype(np.float64), 0.95, axis=1)
    del filled
    overall: RunTime | None = None
    if total:
        full = bool((t.n >= RING).all())  # every ring full (the usual case): all of it, without a mask
        samples = t.ring.ravel() if full else t.ring[np.arange(RING)[None, :] < t.n[:, None]]
        overall = RunTime(mu, sigma, max(mu, float(np.quantile(samples, 0.95, overwrite_input=letGo or not full))))
        del samples
    if letGo:
        t.drop("ring")
    np.maximum(p95, mean, out=p95)
    np.maximum(p95, t.censored, out=p95)
    p95 *= some
    mean *= some
    sd *= some
    if bool(seen.all()) and bool(some.all()):  # every setting completed runs: the statistics as they are
        table = TimeTable(t.ids.astype(np.int64, copy=False), mean, sd, p95)
    else:
        timedOut = t.n[seen] == 0  # only TIMEOUTs: at least twice the longest cut-off (the policy's doubling)
        x = 2.0 * t.censored[seen].astype(np.float64)
        table = TimeTable(t.ids[seen].astype(np.int64), np.where(timedOut, x, mean[seen]), np.where(timedOut, 0.0, sd[seen]),
                          np.where(timedOut, x, p95[seen]))  # fmt: skip
    return Measured(settings, RunTimes(table), overall)


@dataclass(frozen=True)
class _Runs:
    """Ended runs, in order: setting, code (:data:`_CODE`), seconds, peak memory MB (nan: not known)."""

    setting: np.ndarray  # int64
    code: np.ndarray  # int8
    seconds: np.ndarray  # float64
    mem: np.ndarray  # float64

    @classmethod
    def of(cls, runs: Sequence[tuple[int, int, float, float]]) -> "_Runs":
        return cls(np.array([x[0] for x in runs], np.int64), np.array([x[1] for x in runs], np.int8),
                   np.array([x[2] for x in runs], np.float64), np.array([x[3] for x in runs], np.float64))  # fmt: skip

    @classmethod
    def join(cls, parts: Sequence["_Runs"]) -> "_Runs":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.of([])
        return cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("setting", "code", "seconds", "mem")))


def _blocks(path: str) -> Iterator[str]:
    """The whole lines of ``path``, :data:`BLOCK` bytes or so at a time, as readEvents reads them (UTF-8,
    errors replaced, universal newlines; the part after the last newline is torn and left)."""
    try:
        f = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return
    with f:
        pieces: list[bytes] = []  # of a line not ended yet (a long one: a task_start's index list)
        while data := f.read(BLOCK):
            cut = data.rfind(b"\n") + 1
            if not cut:
                pieces.append(data)
                continue
            whole = b"".join([*pieces, data[:cut]]) if pieces else data[:cut]
            pieces = [data[cut:]]
            text = _text(whole)
            del whole
            yield text
    rest = b"".join(pieces)
    if b"\r" in rest:  # a last line ended by a lone \r (a newline too)
        tail = _text(rest)
        if tail.rfind("\n") >= 0:
            yield tail[: tail.rfind("\n") + 1]


def _text(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _later(last: float | None, t: float) -> float:
    return t if last is None else max(last, t)


class _TaskFold:
    """What one task's lines add to its array's record, and its runs (see :meth:`Durations._foldTask`)."""

    def __init__(self, rec: dict[str, Any], settings: int) -> None:
        self.rec, self.settings = rec, settings
        self.start: float | None = None
        self.last: float | None = None
        self.slow: list[tuple[int, int, float, float]] = []  # runs of decoded lines, not yet given

    def block(self, text: str) -> Iterator[_Runs]:
        """The runs of a block of whole lines, in order: each stretch of end lines of the runner's shape at once."""
        found = _pattern(text).findall(text)
        others = [k for k, f in enumerate(found) if f[5]]
        at = 0
        for k in [*others, len(found)]:
            ends = [f for f in found[at:k] if f[1]]
            if ends:
                yield self.ends(ends)
            if k < len(found):
                self.other(found[k][5])
            at = k + 1

    def ends(self, found: list[tuple[str, ...]]) -> _Runs:
        """End lines of the runner's shape (their time, index, cause, seconds, memory as written), at once."""
        before = self.flush()
        self.last = _later(self.last, float(np.array([f[0] for f in found], np.float64).max()))
        seconds = np.array([f[3] for f in found], np.float64)
        index = np.array([f[1] for f in found], np.int64)
        cause = np.array([f[2] for f in found])
        mem = np.array([f[4] or "nan" for f in found], np.float64)  # written: never nan
        ok = np.isfinite(seconds)
        if not ok.all():
            index, cause, seconds, mem = index[ok], cause[ok], seconds[ok], mem[ok]
        known = ~np.isnan(mem)
        rec = self.rec
        rec["runs"] += len(seconds)
        if len(seconds):
            rec["run_seconds"] = float(np.cumsum(np.r_[rec["run_seconds"], seconds])[-1])  # added in turn, as one by one
        if known.any():
            rec["mem_max_mb"] = max(rec["mem_max_mb"], float(mem[known].max()))
        completed, timeout = cause == "COMPLETED", cause == "TIMEOUT"
        rec["completed"] += int(completed.sum())
        rec["timeouts"] += int(timeout.sum())
        code = np.where(completed, 1, np.where(timeout, 2, 0)).astype(np.int8)
        keep = (code > 0) | known
        runs = _Runs(index[keep] % self.settings, code[keep], seconds[keep], mem[keep])
        return runs if before is None else _Runs.join([before, runs])

    def flush(self) -> _Runs | None:
        """The runs of decoded lines not given yet."""
        slow, self.slow = self.slow, []
        return _Runs.of(slow) if slow else None

    def other(self, line: str) -> None:
        """A line not matched at once: an end line of the runner's shape with other common fields, or decoded."""
        m = _LINE.match(line)
        if m is None or not m.group(2):
            self.decoded(line)
            return
        time, index, cause, seconds, mem = m.groups()[:5]
        self.event({"event": "end", "time": float(time), "index": int(index), "cause": cause, "seconds": float(seconds),
                    **({"maxrss_mb": float(mem)} if mem else {})})  # fmt: skip

    def decoded(self, line: str) -> None:
        """A line not of the runner's end shape: as readEvents would give it."""
        if unwanted(line, _FOLDED):
            return
        at = line.find(_INDICES) if line.startswith('{"event":"task_start",') else -1
        end = _indexList(line, at + len(_INDICES)) if at >= 0 else -1
        if end >= 0:  # its every index, not needed: not decoded
            line = f"{line[:at]}{_INDICES}0{line[end:]}"
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            return
        if isinstance(e, dict) and e.get("event") in _FOLDED:
            self.event(e)

    def event(self, e: Mapping[str, Any]) -> None:
        """One decoded event (the per-line fold)."""
        rec = self.rec
        t = e.get("time")
        if isinstance(t, (int, float)):
            self.last = _later(self.last, float(t))
        kind = e.get("event")
        if kind == "task_start":
            if self.start is None and isinstance(t, (int, float)):
                self.start = float(t)
            if isinstance(e.get("parallel"), int):
                rec["parallel"] = max(int(rec.get("parallel", 1)), e["parallel"])
            return
        if kind != "end" or not isinstance(e.get("index"), int):
            return
        seconds = e.get("seconds")
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            return
        rec["runs"] += 1
        rec["run_seconds"] += float(seconds)
        mem = e.get("maxrss_mb")
        if isinstance(mem, (int, float)):
            rec["mem_max_mb"] = max(rec["mem_max_mb"], float(mem))
        code = _CODE.get(str(e.get("cause")), 0)
        if code or isinstance(mem, (int, float)):
            self.slow.append((int(e["index"]) % self.settings, code, float(seconds), float(mem) if isinstance(mem, (int, float)) else math.nan))
        if e.get("cause") == "TIMEOUT":
            rec["timeouts"] += 1
        elif e.get("cause") == "COMPLETED":
            rec["completed"] += 1


class Durations:
    """The measurements of one experiment (see the module docstring).

    Two files: the per-setting table (``path``: only the settings measured) and a small one beside it
    (``logPath``) with the per-array records and the runs folded since the table was last written. A look
    (``status``, a ``watch`` round) reads the small one only; the table is read when something asks for a
    setting's figures (planning, an escalation, ``n``/``ring``), and rewritten once the runs folded since
    outnumber ``max(LOG_MIN, settings / 8)``."""

    def __init__(self, path: str, experiment: str, settings: int) -> None:
        self.path = path
        self.logPath = path[: -len(".npz")] + ".log.npz" if path.endswith(".npz") else path + ".log.npz"
        self.experiment = experiment
        self.settings = settings
        self.arrays: dict[str, dict[str, Any]] = {}  # tag -> its record
        self.changed = False
        self._fig: _Figures | None = None  # what readers read of the table (made once, until runs are added)
        self._t: _Table | None = None  # the table, once read (with the log merged in)
        self._gen = 0  # the table file's generation (the log applies to it)
        self._log: list[_Runs] = []  # runs not in the table file, in order, a chunk at a time
        self._logged = 0  # runs in _log
        self._ahead = False  # the table in memory holds runs its file lacks

    # --- the files -----------------------------------------------------------------------------------
    @classmethod
    def load(cls, state: StateDir, experiment: str, settings: int) -> "Durations":
        """The measurements of ``experiment`` (empty when there are none, or the settings changed). Reads the
        per-array records and the runs folded lately, not the per-setting table."""
        d = cls(state.durations(experiment), experiment, settings)
        try:
            with np.load(d.logPath, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") not in _READ or meta.get("settings") != settings:
                    return d
                d.arrays, d._gen = meta.get("arrays", {}), int(meta.get("gen", 0))
                if len(z["ls"]):
                    d._append(_Runs(z["ls"], z["lc"], z["lt"], z["lm"]))
            return d
        except FileNotFoundError:
            pass
        except (OSError, KeyError, ValueError, zlib.error):
            return cls(d.path, experiment, settings)
        try:  # a version-1 file: its records in the table's file
            with np.load(d.path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("version") == 1 and meta.get("settings") == settings:
                    d.arrays = meta.get("arrays", {})
        except (OSError, KeyError, ValueError, zlib.error):
            pass
        return d

    def _read(self) -> _Table:
        """The table file (empty when absent, unreadable, of other settings or of another generation)."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                if meta.get("settings") != self.settings:
                    return _Table.empty()
                if meta.get("version") == 1:
                    return _Table.dense(z) if z["n"].size == self.settings else _Table.empty()
                if meta.get("version") not in _READ:
                    return _Table.empty()
                if int(meta.get("gen", 0)) != self._gen:  # written after the log (a compaction cut short): the log is in it
                    self._log, self._logged = [], 0
                return _Table.of(z["ids"], z)
        except (OSError, KeyError, ValueError, zlib.error):
            return _Table.empty()

    def _table_(self) -> _Table:
        """The table with every folded run in it (read on the first call)."""
        if self._t is None:
            self._t = self._read()
        if self._log:
            self._merge(self._t, _Runs.join(self._log))
            self._log, self._logged = [], 0
            self._ahead = True
            self._fig = None
        return self._t

    def save(self) -> None:
        """Write atomically (the caller holds the ledger's lock): the small file, and the table when the runs
        folded since it was written are many (or it was read anyway)."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if self._ahead or self._long():
            t = self._table_()
            self._gen += 1
            meta = {"version": VERSION, "experiment": self.experiment, "settings": self.settings, "gen": self._gen}
            _write(self.path, meta=np.array(json.dumps(meta)), ids=t.ids, **{k: getattr(t, k) for k in _STATS})
            self._ahead = False
            self._figures()  # what readers need of it (the table let go: read again if asked)
            self._t = None
        log = _Runs.join(self._log)
        meta = {"version": VERSION, "experiment": self.experiment, "settings": self.settings, "gen": self._gen, "arrays": self.arrays}
        _write(self.logPath, meta=np.array(json.dumps(meta)), ls=log.setting, lc=log.code, lt=log.seconds, lm=log.mem)
        self.changed = False

    def _long(self) -> bool:
        """The log holds too many runs to stay beside the table."""
        return self._logged > max(LOG_MIN, self.settings // 8)

    def _append(self, runs: "_Runs") -> None:
        """Runs (in order) after those folded."""
        if len(runs.setting):
            self._log.append(runs)
            self._logged += len(runs.setting)

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
                path = os.path.join(folder, name)
                if not ended and not lastRunEnded(path):  # its last line, read from the end
                    continue
                self._foldTask(rec, path)  # read again rather than held: a task's file can be big
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

    def _foldTask(self, rec: dict[str, Any], path: str) -> None:
        """One task's file (in one pass, :data:`BLOCK` bytes at a time): its runs into the log, the table
        merged in as soon as the log is long (as :meth:`save` would: memory bounded by the table)."""
        fold = _TaskFold(rec, self.settings)
        for text in _blocks(path):
            for runs in fold.block(text):
                self._take(runs)
        self._take(fold.flush())
        if fold.start is not None and fold.last is not None:
            rec["elapsed"] += fold.last - fold.start
        rec["tasks"] += 1

    def _take(self, runs: "_Runs | None") -> None:
        if runs is None or not len(runs.setting):
            return
        self._append(runs)
        self.changed = True
        self._fig = None
        if self._long():  # (a table read holds the rest until asked: _table_)
            self._table_()

    def add(self, index: int, cause: str, seconds: float, memMB: float | None = None) -> None:
        """One ended run of ``index``: a COMPLETED one's time is a sample, a TIMEOUT's a lower bound."""
        code = _CODE.get(cause, 0)
        if code or memMB is not None:
            self._append(_Runs.of([(index % self.settings, code, float(seconds), math.nan if memMB is None else float(memMB))]))
        if self._t is not None:
            self._table_()
        self.changed = True
        self._fig = None

    @staticmethod
    def _merge(t: _Table, log: "_Runs") -> None:
        """The runs of ``log`` (in order) into ``t``, with array operations: ``np.add.at``/``np.maximum.at``
        apply each run in turn (the sums are those of adding one run after the other), and of a setting's
        completed runs only the last :data:`RING` reach its ring, each in the slot it would have had."""
        t.grow(np.unique(log.setting))
        k = np.searchsorted(t.ids, log.setting)
        known = ~np.isnan(log.mem)
        np.maximum.at(t.mem, k[known], log.mem[known])
        done = log.code == 1
        kd, sd = k[done], log.seconds[done]
        with np.errstate(over="ignore"):  # a time beyond float32's range: inf in the float32 figures (ring, max, censored)
            if len(kd):
                order = np.argsort(kd, kind="stable")  # by setting, each setting's runs in order
                ks = kd[order]
                first = np.r_[True, ks[1:] != ks[:-1]]
                starts = np.flatnonzero(first)
                group = np.cumsum(first) - 1
                j = np.arange(len(ks)) - starts[group]  # the run's place among its setting's runs here
                count = np.diff(np.r_[starts, len(ks)])[group]
                last = j >= count - RING
                kl = ks[last]
                t.ring[kl, (t.n[kl] + j[last]) % RING] = sd[order][last]
                # values in the column's type (ufunc.at casting them is ~30x slower): a float32 maximum is the
                # maximum's float32, rounding being monotonic
                np.add.at(t.n, kd, np.ones(len(kd), t.n.dtype))
                np.add.at(t.sum, kd, sd)
                np.add.at(t.sumsq, kd, sd * sd)
                np.maximum.at(t.max, kd, sd.astype(t.max.dtype))
            cut = log.code == 2
            np.add.at(t.timeouts, k[cut], np.ones(int(cut.sum()), t.timeouts.dtype))
            np.maximum.at(t.censored, k[cut], log.seconds[cut].astype(t.censored.dtype))

    def _dense(self, name: str) -> np.ndarray:
        t = self._table_()
        got = getattr(t, name)
        out = np.zeros((self.settings, *got.shape[1:]), dtype=got.dtype)
        out[t.ids] = got
        return out

    @property
    def n(self) -> np.ndarray:
        """Completed runs per setting (dense: made on demand)."""
        return self._dense("n")

    @property
    def ring(self) -> np.ndarray:
        """The last :data:`RING` run times per setting (dense: made on demand)."""
        return self._dense("ring")

    def _prune(self) -> None:
        if len(self.arrays) > MAX_ARRAYS:
            closed = [t for t, r in self.arrays.items() if r["closed"]]
            for t in closed[: len(self.arrays) - MAX_ARRAYS]:
                del self.arrays[t]

    # --- what planning, the policy and status read -------------------------------------------------
    def _figures(self) -> "_Figures":
        """What :meth:`measured` and :meth:`measure` give, made from the table once (until runs are added)."""
        if self._fig is None:
            t = self._table_()
            letGo = not self._ahead  # its file holds it: let go (read again if asked), emptied as the figures are made
            if letGo:
                self._t = None
            self._fig = _Figures.of(t, self.settings, letGo)
        return self._fig

    def measured(self) -> Measured | None:
        """Per setting (as arrays: :class:`~pyexputils.runner.planfit.RunTimes`) and over all, for
        :mod:`pyexputils.runner.planfit`; None when nothing is known."""
        return self._figures().measured

    def measure(self, index: int) -> Measure | None:
        """What the policy escalates from after a TIMEOUT / OUT_OF_MEMORY of ``index``: its setting's p95
        run time and largest peak memory, where known."""
        f = self._figures()
        s = index % self.settings
        k = int(np.searchsorted(f.ids, s))
        if k >= len(f.ids) or f.ids[k] != s:
            return None
        p95: float | None = None
        if f.done[k] and f.measured is not None:  # completed runs: its p95 (the table's row of it)
            table = f.measured.table()
            p95 = float(table.p95[k if table.keys is f.ids else int(np.searchsorted(table.keys, s))])
        mem = float(f.mem[k]) or None
        if p95 is None and mem is None:
            return None
        return Measure(p95, mem)

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


def _write(path: str, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` to ``path``, atomically."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
