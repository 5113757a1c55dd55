"""The ledger: every submission and every index's attempts, in sqlite3 (``StateDir.ledger``).

Written by one process at a time: :meth:`Ledger.open` takes an exclusive ``flock`` on ``StateDir.lock`` and
holds it until :meth:`Ledger.close` (the whole ``submit``, the whole ``watch``); the lock dies with its
holder, even on SIGKILL. Readers (``status``, ``show``, ``cancel``) use :meth:`Ledger.read`: read-only, no
lock, no file created.

Schema version ``SCHEMA_VERSION`` (``PRAGMA user_version``); an older ledger (version 0: pyexputils 0.1)
is migrated in place by the next writer and read as it is by a reader; a newer one is refused with a clear
message. Rows are read and written by column name. Tables:

- ``submissions``: one row per array job: ``tag`` (key), ``job_id``, ``backend``, ``experiment`` (absolute
  path), ``array_size``, ``resources`` (JSON of the sbatch options), ``attempt`` (the highest attempt
  number of its indices), ``time``, ``manifest`` (path), ``adopted`` (found in the queue, not recorded at
  submit: the submitter died between sbatch and the ledger), ``cancelled`` (by ``pyexputils cancel``),
  ``provenance`` (JSON: git commit and whether the tree was dirty, the command line, pyexputils' version).
- ``attempt_ranges``: which indices each submission holds, as ranges (schema 3; schema 2 had one row per
  index): ``experiment``, ``tag``, the row's ``n`` members: indices ``lo`` … ``lo + n - 1``, or (schema 4)
  the packed index set ``members`` (:mod:`pyexputils.runner.packed`; ``lo`` its first), its ``k``-th member
  in array task ``task + k // per``, ``attempt`` (1 for an index's first submission, then +1). A whole array
  of contiguous indices bundled evenly is one row, whatever its size; so is an array of a fitted plan's
  run-time class (every k-th setting, or blocks of them): its indices packed, not a row per index.
- ``verdict_ranges``: how attempts ended (``cause``, ``started``, ``exit``), written once they have ended
  (:mod:`pyexputils.runner.causes`), for the row's members (as above: ``lo`` … ``lo + n - 1`` or the packed
  ``members``) at attempt ``attempt``: indices that ended alike in one write are one row (packed when they
  are scattered: a class ending). An attempt without one is unresolved; of two rows for the same (index,
  attempt), the later counts.
- ``run_resources``: the per-run time (minutes) and memory a submission asked for (what the policy
  escalates after TIMEOUT / OUT_OF_MEMORY).
- ``sweeps``: the runs of each experiment, remembered from its latest submit.
- ``resets``: ``pyexputils retry``: the verdicts of an index up to ``attempt`` no longer count for the policy.
"""
from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence, overload, runtime_checkable

import numpy as np
import numpy.typing as npt

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.bundles import PACK_RANGES, AttemptRow, Bundles, IndexSet
from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.packed import Packed, packChunks
from pyexputils.runner.policy import Resources
from pyexputils.runner.statedir import StateDir

SCHEMA_VERSION = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    tag TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    experiment TEXT NOT NULL,
    array_size INTEGER NOT NULL,
    resources TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    time REAL NOT NULL,
    manifest TEXT NOT NULL,
    adopted INTEGER NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    provenance TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS submissions_job ON submissions (job_id);
CREATE INDEX IF NOT EXISTS submissions_exp ON submissions (experiment);
CREATE TABLE IF NOT EXISTS attempt_ranges (
    experiment TEXT NOT NULL,
    tag TEXT NOT NULL,
    lo INTEGER NOT NULL,
    n INTEGER NOT NULL,
    task INTEGER NOT NULL,
    per INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    members BLOB
);
CREATE INDEX IF NOT EXISTS attempt_ranges_tag ON attempt_ranges (tag);
CREATE INDEX IF NOT EXISTS attempt_ranges_exp ON attempt_ranges (experiment);
CREATE TABLE IF NOT EXISTS verdict_ranges (
    experiment TEXT NOT NULL,
    lo INTEGER NOT NULL,
    n INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    cause TEXT NOT NULL,
    started INTEGER NOT NULL,
    exit INTEGER,
    time REAL NOT NULL,
    members BLOB
);
CREATE INDEX IF NOT EXISTS verdict_ranges_exp ON verdict_ranges (experiment);
CREATE TABLE IF NOT EXISTS run_resources (
    tag TEXT PRIMARY KEY,
    minutes INTEGER,
    mem_mb INTEGER,
    mem_key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    experiment TEXT PRIMARY KEY,
    runs INTEGER NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS resets (
    experiment TEXT NOT NULL,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (experiment, idx)
);
"""
MIGRATIONS = {  # from version N to N + 1 (0: pyexputils 0.1's ledger, before versions)
    0: "ALTER TABLE submissions ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}';",
    1: "",  # sweeps and resets: created by SCHEMA
    2: "",  # per-index attempts and verdicts to ranges: _toRanges
    3: "",  # packed members of attempt and verdict rows: _addMembers, and a plan's scattered rows packed: _compact
}
LOCK_WAIT_S = 30.0
BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


class LedgerError(PyExpUtilsError):
    """The ledger cannot be used (corrupt, newer, unwritable, the disk full): the message names the path."""


class LedgerBusy(LedgerError):
    """Another pyexputils process holds the ledger's lock."""


@dataclass(frozen=True)
class Submission:
    tag: str
    job_id: str
    backend: str
    experiment: str
    array_size: int
    resources: dict[str, Any]
    attempt: int
    time: float
    manifest: str
    adopted: bool = False
    cancelled: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attempt:
    """The latest attempt at one index."""

    idx: int
    tag: str
    task: int
    attempt: int
    job_id: str
    time: float
    manifest: str


@contextlib.contextmanager
def guarded(path: str) -> Iterator[None]:
    """sqlite3 and OS errors as one-line :class:`LedgerError` naming ``path`` and what to do."""
    try:
        yield
    except LedgerError:
        raise
    except sqlite3.DatabaseError as e:
        text = str(e)
        if "disk is full" in text or "disk I/O" in text:
            raise LedgerError(f"{path}: {text}: free space on that file system and run the command again (nothing was lost)") from None
        if "readonly" in text or "read-only" in text:
            raise LedgerError(f"{path}: {text}: the ledger must be writable by you") from None
        if isinstance(e, sqlite3.OperationalError) and "locked" in text:
            raise LedgerBusy(f"{path}: {text}: another process is writing it; try again") from None
        raise LedgerError(f"{path}: not a usable ledger ({text}); move it aside (results on disk are kept) and submit again") from None
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise LedgerError(f"{path}: no space left on device: free space and run the command again") from None
        raise LedgerError(f"{path}: {e.strerror or e}") from None


class Ledger:
    """See the module docstring. Use as a context manager."""

    def __init__(self, state: StateDir, db: sqlite3.Connection, lockFd: int | None, writable: bool) -> None:
        self.state = state
        self.path = state.ledger
        self.db = db
        self.db.row_factory = sqlite3.Row
        self._lock = lockFd
        self.writable = writable
        with guarded(self.path):
            self.version = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self._tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if self.version > SCHEMA_VERSION:
            self.db.close()
            raise LedgerError(f"{self.path}: written by a newer pyexputils (ledger schema {self.version}, this one "
                              f"knows {SCHEMA_VERSION}): upgrade pyexputils")  # fmt: skip

    # --- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, state: StateDir | str, wait: float = LOCK_WAIT_S, onWait: Callable[[str], None] | None = None) -> "Ledger":
        """Open (creating) the ledger for writing: wait up to ``wait`` s for its lock (``onWait`` is told once,
        with who holds it); migrate an older schema."""
        state = state if isinstance(state, StateDir) else StateDir(state)
        with guarded(state.path):
            state.make()
        fd = lockFile(state.lock, wait, onWait)
        try:
            with guarded(state.ledger):
                db = sqlite3.connect(state.ledger, timeout=30.0)
            ledger = cls(state, db, fd, writable=True)
        except BaseException:
            os.close(fd)
            raise
        try:
            ledger._migrate()
        except BaseException:
            ledger.close()
            raise
        return ledger

    @classmethod
    def read(cls, state: StateDir | str) -> "Ledger | None":
        """The ledger, read-only and without the lock; None when there is none yet."""
        state = state if isinstance(state, StateDir) else StateDir(state)
        if not os.path.isfile(state.ledger):
            return None
        with guarded(state.ledger):
            db = sqlite3.connect(f"file:{state.ledger}?mode=ro", uri=True, timeout=30.0)
        return cls(state, db, None, writable=False)

    def _migrate(self) -> None:
        with guarded(self.path), self.db:
            fresh = "submissions" not in self._tables
            if not fresh:
                for version in range(self.version, SCHEMA_VERSION):
                    if version == 2:
                        self.db.executescript(SCHEMA)
                        _toRanges(self.db)
                    elif version == 3:
                        _addMembers(self.db)
                        _compact(self.db)
                    elif MIGRATIONS[version]:
                        self.db.executescript(MIGRATIONS[version])
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.version = SCHEMA_VERSION
        self._tables |= {"submissions", "attempt_ranges", "verdict_ranges", "run_resources", "sweeps", "resets"}

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with guarded(self.path):
            return self.db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if not self.writable:
            raise LedgerError(f"{self.path}: opened read-only")
        with guarded(self.path), self.db:
            yield self.db

    # --- writing ---------------------------------------------------------------------------------------
    def nextAttempts(self, experiment: str, indices: Iterable[int]) -> dict[int, int]:
        """The attempt number each index would get now (1 + its highest so far)."""
        wanted = np.unique(np.fromiter(indices, dtype=np.int64))
        best = np.zeros(len(wanted), dtype=np.int64)
        for lo, n, _, _, attempt, _, members in self._attemptRows(experiment):
            if members is None:
                a, b = np.searchsorted(wanted, [lo, lo + n])
                if b > a:
                    np.maximum(best[a:b], attempt, out=best[a:b])
                continue
            for _, chunk in members.chunks():
                pos = np.minimum(np.searchsorted(wanted, chunk), max(0, len(wanted) - 1))
                at = pos[wanted[pos] == chunk] if len(wanted) else pos[:0]
                best[at] = np.maximum(best[at], attempt)
        return dict(zip(wanted.tolist(), (best + 1).tolist()))

    def nextAttemptArray(self, experiment: str, indices: IndexSet) -> npt.NDArray[np.int32]:
        """:meth:`nextAttempts` aligned with ``indices`` (read-only; without history, ones that take no memory)."""
        rows = self._attemptRows(experiment)
        if not rows or not len(indices):
            return np.broadcast_to(np.int32(1), (len(indices),))
        best: npt.NDArray[np.int32] | None = None
        plain = [r for r in rows if r[6] is None]
        if plain:
            lo, n, attempt = (np.fromiter((r[k] for r in plain), dtype=np.int64, count=len(plain)) for k in (0, 1, 4))
            a, b = indices.rank(lo), indices.rank(lo + n)  # the positions each row covers
            hit = np.flatnonzero(b > a)
            if len(hit):
                best = np.zeros(len(indices), dtype=np.int32)
                for x, y, t in zip(a[hit].tolist(), b[hit].tolist(), attempt[hit].tolist()):
                    np.maximum(best[x:y], t, out=best[x:y])
        for _, _, _, _, attempt_, _, members in rows:
            if members is None:
                continue
            for _, chunk in members.chunks():
                r = indices.rank(chunk)
                at = r[indices.rank(chunk + 1) > r]  # the members among ``indices``: their positions
                if len(at):
                    if best is None:
                        best = np.zeros(len(indices), dtype=np.int32)
                    best[at] = np.maximum(best[at], attempt_)
        if best is None:
            return np.broadcast_to(np.int32(1), (len(indices),))
        best += 1
        return best

    def record(self, sub: Submission, tasks: Sequence[Sequence[int]], attempts: Mapping[int, int] | npt.NDArray[np.int32] | None = None) -> None:  # fmt: skip
        """Record one submitted array job and its indices (one transaction). ``tasks`` as :class:`Bundles`
        (a plan's) go to ranges without a Python object per index, their ``attempts`` an array aligned with
        their indices (:meth:`nextAttemptArray`)."""
        ranges: Iterable[Range | AttemptRow]
        if isinstance(tasks, Bundles):
            att: int | npt.NDArray[np.int32]
            if isinstance(attempts, np.ndarray):
                att = attempts
            elif attempts is not None:  # by index (rare: given by hand)
                att = np.fromiter((attempts.get(i, 1) for i in tasks.indices), dtype=np.int32, count=tasks.runs) if attempts else 1
            else:
                att = self.nextAttemptArray(sub.experiment, tasks.indices)
            ranges = tasks.attemptRanges(att)
        else:
            if attempts is None:
                attempts = self.nextAttempts(sub.experiment, (i for t in tasks for i in t))
            assert not isinstance(attempts, np.ndarray), "attempts as an array go with Bundles"
            ranges = taskRanges(tasks, attempts)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO submissions (tag, job_id, backend, experiment, array_size, resources, attempt, "
                "time, manifest, adopted, cancelled, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (sub.tag, sub.job_id, sub.backend, sub.experiment, sub.array_size, json.dumps(sub.resources, default=str),
                 sub.attempt, sub.time, sub.manifest, int(sub.adopted), int(sub.cancelled),
                 json.dumps(sub.provenance, default=str)),
            )  # fmt: skip
            db.execute("DELETE FROM attempt_ranges WHERE tag = ?", (sub.tag,))
            db.executemany(
                "INSERT INTO attempt_ranges (experiment, tag, lo, n, task, per, attempt, members) VALUES (?,?,?,?,?,?,?,?)",
                ((sub.experiment, sub.tag, *r[:5], r[5] if len(r) > 5 else None) for r in ranges),
            )

    def adopt(self, manifest: Manifest, manifestFile: str, jobId: str, backend: str) -> Submission:
        """Record a job found in the queue (or by its status files) that the ledger lacks, from its manifest."""
        sub = Submission(
            tag=manifest.tag, job_id=jobId, backend=backend, experiment=manifest.experiment,
            array_size=len(manifest.tasks), resources={}, attempt=manifest.attempt,
            time=os.path.getmtime(manifestFile), manifest=manifestFile, adopted=True,
        )  # fmt: skip
        self.record(sub, manifest.tasks)
        return sub

    def markCancelled(self, jobIds: Sequence[str]) -> None:
        with self._write() as db:
            db.executemany("UPDATE submissions SET cancelled = 1 WHERE job_id = ?", ((j,) for j in jobIds))

    def setResources(self, tag: str, res: Resources) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO run_resources (tag, minutes, mem_mb, mem_key) VALUES (?,?,?,?)",
                       (tag, res.minutes, res.mem_mb, res.mem_key))  # fmt: skip

    def addVerdicts(self, experiment: str, verdicts: Sequence[tuple[int, int, Verdict]]) -> None:
        """Record how attempts ended: (index, attempt, verdict) triples, one transaction; indices that ended
        alike are one row (a range, or packed when they are scattered). A sequence with ``arrays()`` (the
        session's new verdicts) gives most of them as arrays, without a Python object per index."""
        now = time.time()
        if isinstance(verdicts, HasArrays):
            los, ns, att, vid, table, other = verdicts.arrays()
            rows = verdictRows(los, ns, att, vid, table) + [(lo, n, a, v, None) for lo, n, a, v in verdictRanges(other)]
        else:
            rows = [(lo, n, a, v, None) for lo, n, a, v in verdictRanges(verdicts)]
        with self._write() as db:
            db.executemany(
                "INSERT INTO verdict_ranges (experiment, lo, n, attempt, cause, started, exit, time, members) VALUES (?,?,?,?,?,?,?,?,?)",
                ((experiment, lo, n, a, str(v.cause), int(v.started), v.exit, now, m) for lo, n, a, v, m in rows),
            )

    def setRuns(self, experiment: str, runs: int) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO sweeps (experiment, runs, time) VALUES (?,?,?)", (experiment, runs, time.time()))

    def reset(self, experiment: str, attempts: dict[int, int]) -> None:
        """``retry``: the verdicts of each index up to its given attempt stop counting for the policy."""
        now = time.time()
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO resets (experiment, idx, attempt, time) VALUES (?,?,?,?)",
                           ((experiment, i, a, now) for i, a in attempts.items()))  # fmt: skip

    # --- reading ---------------------------------------------------------------------------------------
    def _attemptRows(self, experiment: str | None = None, tag: str | None = None) -> list[Row]:
        """(lo, n, task, per, attempt, tag, members) of ``experiment``'s (or ``tag``'s) attempts, oldest row
        first (a schema-2 ledger read before its migration: one range per index; before schema 4, no members)."""
        where, args = ("experiment = ?", (experiment,)) if tag is None else ("tag = ?", (tag,))
        members = "members" if self.version >= 4 else "NULL"
        if self.version >= 3:
            q = f"SELECT lo, n, task, per, attempt, tag, {members} FROM attempt_ranges WHERE {where} ORDER BY rowid"
        else:
            q = f"SELECT idx, 1, task, 1, attempt, tag, NULL FROM attempts WHERE {where} ORDER BY rowid"
        with guarded(self.path):
            return [r if r[6] is None else (*r[:6], Packed(r[6])) for r in self.db.execute(q, args)]

    def _verdictRows(self, experiment: str | None) -> list[VerdictRow]:
        """(lo, n, attempt, cause, started, exit, members) of ``experiment``'s verdicts (all with None), oldest first."""
        where, args = ("WHERE experiment = ?", (experiment,)) if experiment is not None else ("", ())
        members = "members" if self.version >= 4 else "NULL"
        if self.version >= 3:
            q = f"SELECT lo, n, attempt, cause, started, exit, {members} FROM verdict_ranges {where} ORDER BY rowid"
        else:
            q = f"SELECT idx, 1, attempt, cause, started, exit, NULL FROM verdicts {where} ORDER BY rowid"
        with guarded(self.path):
            return [r if r[6] is None else (*r[:6], Packed(r[6])) for r in self.db.execute(q, args)]

    def submissions(self, experiment: str | None = None) -> list[Submission]:
        q = "SELECT * FROM submissions" + (" WHERE experiment = ?" if experiment else "") + " ORDER BY time"
        return [_submission(r) for r in self._rows(q, (experiment,) if experiment else ())]

    def byTag(self, tag: str) -> Submission | None:
        rows = self._rows("SELECT * FROM submissions WHERE tag = ?", (tag,))
        return _submission(rows[0]) if rows else None

    def tags(self) -> set[str]:
        return {r["tag"] for r in self._rows("SELECT tag FROM submissions")}

    def taskRangesOf(self, tag: str) -> tuple[str, list["TaskRange"]] | None:
        """(experiment, its attempt rows (lo, n, task, per, members)) of one submission: the row's ``k``-th member
        in array task ``task + k // per``; None when the ledger lacks it."""
        sub = self._rows("SELECT experiment FROM submissions WHERE tag = ?", (tag,))
        if not sub:
            return None
        return sub[0]["experiment"], [(lo, n, task, per, m) for lo, n, task, per, _, _, m in self._attemptRows(tag=tag)]

    def taskIndices(self, tag: str) -> tuple[str, npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
        """(experiment, indices, their array tasks) of one submission, as arrays; None when the ledger lacks it."""
        sub = self._rows("SELECT experiment FROM submissions WHERE tag = ?", (tag,))
        if not sub:
            return None
        idx, task = _expand(self._attemptRows(tag=tag))
        return sub[0]["experiment"], idx, task

    def tasksOf(self, tag: str) -> tuple[str, dict[int, list[int]]] | None:
        """(experiment, {array task: its indices}) of one submission; None when the ledger lacks it."""
        found = self.taskIndices(tag)
        if found is None:
            return None
        experiment, idx, task = found
        order = np.lexsort((idx, task))
        out: dict[int, list[int]] = {}
        for t, i in zip(task[order].tolist(), idx[order].tolist()):
            out.setdefault(t, []).append(i)
        return experiment, out

    def view(self, experiment: str, n: int) -> "LedgerView":
        """What the ledger knows of ``experiment``'s indices ``0 … n − 1``, as arrays (see :class:`LedgerView`)."""
        return LedgerView.build(self, experiment, n)

    def latest(self, experiment: str) -> dict[int, Attempt]:
        """The latest attempt of every index of ``experiment`` that was ever submitted."""
        rows = self._attemptRows(experiment)
        if not rows:
            return {}
        v = self.view(experiment, max(lastOf(r[0], r[1], r[6]) + 1 for r in rows))
        subs = {s.tag: s for s in self.submissions(experiment)}
        out: dict[int, Attempt] = {}
        for i in np.flatnonzero(v.attempt).tolist():
            tag = v.tags[v.tagOf(i)]
            s = subs.get(tag)
            if s is not None:
                out[i] = Attempt(i, tag, v.taskOf(i), int(v.attempt[i]), s.job_id, s.time, s.manifest)
        return out

    def attempts(self, experiment: str | None = None) -> list[tuple[int, int, str]]:
        """Every recorded attempt (index, attempt, tag), sorted (of ``experiment``, or of all)."""
        if experiment is None:
            names = [r["experiment"] for r in self._rows("SELECT DISTINCT experiment FROM submissions")]
            return sorted(x for e in names for x in self.attempts(e))
        out: list[tuple[int, int, str]] = []
        for lo, n, _, _, attempt, tag, members in self._attemptRows(experiment):
            out += [(i, attempt, tag) for i in membersOf(lo, n, members).tolist()]
        return sorted(out)

    def runResources(self) -> dict[str, Resources]:
        """The per-run resources of every submission that recorded them, by tag."""
        rows = self._rows("SELECT tag, minutes, mem_mb, mem_key FROM run_resources")
        return {r["tag"]: Resources(r["minutes"], r["mem_mb"], r["mem_key"]) for r in rows}

    def verdicts(self, experiment: str) -> dict[int, dict[int, Verdict]]:
        """Every recorded verdict of ``experiment``: index -> attempt -> verdict."""
        out: dict[int, dict[int, Verdict]] = {}
        for lo, n, attempt, cause, started, exit, members in self._verdictRows(experiment):
            v = Verdict(Cause(cause), bool(started), exit)
            for i in membersOf(lo, n, members).tolist():
                out.setdefault(i, {})[attempt] = v
        return {i: dict(sorted(byAttempt.items())) for i, byAttempt in sorted(out.items())}

    def resets(self, experiment: str) -> dict[int, int]:
        """index -> the attempt up to which ``retry`` cleared its history."""
        if "resets" not in self._tables:
            return {}
        return {r["idx"]: r["attempt"] for r in self._rows("SELECT idx, attempt FROM resets WHERE experiment = ?", (experiment,))}

    def runs(self, experiment: str) -> int | None:
        """The runs of ``experiment`` at its latest submit (None: never submitted)."""
        if "sweeps" not in self._tables:
            return None
        rows = self._rows("SELECT runs FROM sweeps WHERE experiment = ?", (experiment,))
        return int(rows[0]["runs"]) if rows else None

    def causeCounts(self, experiments: Sequence[str] | None = None) -> dict[str, int]:
        """Verdicts recorded so far, by cause (of ``experiments``, or all)."""
        table, n = ("verdict_ranges", "SUM(n)") if self.version >= 3 else ("verdicts", "COUNT(*)")
        if experiments is None:
            rows = self._rows(f"SELECT cause, {n} AS n FROM {table} GROUP BY cause")
        else:
            marks = ",".join("?" * len(experiments))
            rows = self._rows(f"SELECT cause, {n} AS n FROM {table} WHERE experiment IN ({marks}) GROUP BY cause", experiments)
        return {r["cause"]: r["n"] for r in rows}

    def lastBackend(self) -> str | None:
        """The backend of the latest submission."""
        rows = self._rows("SELECT backend FROM submissions ORDER BY time DESC LIMIT 1")
        return str(rows[0]["backend"]) if rows else None

    def unresolvedJobs(self, backend: str | None = None) -> list[str]:
        """Job ids (of ``backend``'s submissions) with an attempt that has no verdict yet (the jobs worth
        asking sacct about). Costs what the ledger's ranges number, not the indices."""
        q = "SELECT tag, job_id, experiment FROM submissions" + (" WHERE backend = ?" if backend else "")
        subs = self._rows(q, (backend,) if backend else ())
        jobs: set[str] = set()
        byExp: dict[str, dict[str, str]] = {}
        for r in subs:
            if r["job_id"] and r["job_id"] != "unknown":
                byExp.setdefault(r["experiment"], {})[r["tag"]] = r["job_id"]
        for experiment, tagJobs in byExp.items():
            covered = _Coverage(self._verdictRows(experiment))
            for lo, n, _, _, attempt, tag, members in self._attemptRows(experiment):
                job = tagJobs.get(tag)
                if job is not None and job not in jobs and not covered.covers(attempt, lo, n, members):
                    jobs.add(job)
        return sorted(jobs)

    def cancelledTags(self) -> set[str]:
        """Tags of submissions the user cancelled with ``pyexputils cancel`` (also while a watch held the lock)."""
        tags = {r["tag"] for r in self._rows("SELECT tag FROM submissions WHERE cancelled = 1")}
        noted = readCancelled(self.state)
        if noted:
            tags |= {r["tag"] for r in self._rows("SELECT tag, job_id FROM submissions") if r["job_id"] in noted}
        return tags

    def attemptsOf(self, experiment: str, idx: int) -> list[Attempt]:
        """Every recorded attempt at one index, oldest first (``logs --attempt K``)."""
        subs = {x.tag: x for x in self.submissions(experiment)}
        found: dict[int, Attempt] = {}
        for lo, n, task, per, attempt, tag, members in self._attemptRows(experiment):
            s = subs.get(tag)
            k = rankIn(lo, n, members, idx)
            if s is not None and k is not None:  # of two rows for one attempt, the later
                found[attempt] = Attempt(idx, tag, task + k // per, attempt, s.job_id, s.time, s.manifest)
        return [found[a] for a in sorted(found)]

    def size(self) -> int:
        """The ledger file's size in bytes."""
        return os.path.getsize(self.path)


Range = tuple[int, int, int, int, int]  # lo, n, task, per, attempt: indices lo + k in task task + k // per
TaskRange = tuple[int, int, int, int, "Packed | None"]  # lo, n, task, per, packed members (None: lo … lo + n − 1)
Row = tuple[int, int, int, int, int, str, "Packed | None"]  # an attempt row: lo, n, task, per, attempt, tag, members
VerdictRow = tuple[int, int, int, str, int, "int | None", "Packed | None"]  # lo, n, attempt, cause, started, exit, members


def membersOf(lo: int, n: int, members: Packed | None) -> npt.NDArray[np.int64]:
    """A row's indices, as one array (small rows and tests; big consumers go a block at a time)."""
    return np.arange(lo, lo + n, dtype=np.int64) if members is None else members.array()


def lastOf(lo: int, n: int, members: Packed | None) -> int:
    """A row's last index."""
    return lo + n - 1 if members is None else int(members.last)


def rankIn(lo: int, n: int, members: Packed | None, idx: int) -> int | None:
    """The position of ``idx`` among a row's members (None: not one)."""
    if members is None:
        return idx - lo if lo <= idx < lo + n else None
    if not members.first <= idx <= members.last:
        return None
    pos, hit = members.rank(np.array([idx], dtype=np.int64))
    return int(pos[0]) if hit[0] else None


def chunksOf(lo: int, n: int, members: Packed | None) -> Iterator[tuple[int, npt.NDArray[np.int64]]]:
    """(position of the first, indices) of a row's members, a block at a time."""
    if members is not None:
        yield from members.chunks()
        return
    for a in range(0, n, 1 << 16):
        yield a, np.arange(lo + a, lo + min(n, a + (1 << 16)), dtype=np.int64)


@runtime_checkable
class HasArrays(Protocol):
    def arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64],
                              Sequence[Verdict], Sequence[tuple[int, int, Verdict]]]: ...  # fmt: skip


def verdictRows(lo: npt.NDArray[np.int64], n: npt.NDArray[np.int64], attempt: npt.NDArray[np.int64], vid: npt.NDArray[np.int64],
                table: Sequence[Verdict]) -> list[tuple[int, int, int, Verdict, bytes | None]]:  # fmt: skip
    """Verdicts as ranges (``lo``, ``n``: sorted and disjoint; the attempt and the verdict, an index into
    ``table``, of each) as ledger rows (lo, n, attempt, verdict, members): the ranges of one attempt and
    verdict, joined where they touch, or packed when they are more than ``PACK_RANGES`` (a class of a fitted
    plan ending)."""
    out: list[tuple[int, int, int, Verdict, bytes | None]] = []
    if not len(lo):
        return out
    if bool((attempt == attempt[0]).all()) and bool((vid == vid[0]).all()):  # one kind (a class ended alike): as it is
        groups: Iterable[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]] = [(lo, n, int(attempt[0]), int(vid[0]))]
    else:
        key = attempt.astype(np.int64) << 16 | vid.astype(np.int64)
        order = np.argsort(key, kind="stable")  # within a key: by index
        sk = key[order]
        starts = np.flatnonzero(np.append(True, sk[1:] != sk[:-1]))
        ends = np.append(starts[1:], len(sk))
        groups = ((lo[order[s:e]], n[order[s:e]], int(sk[s]) >> 16, int(sk[s]) & 0xFFFF) for s, e in zip(starts.tolist(), ends.tolist()))
    for los, ns, a, k in groups:
        v = table[k]
        first = np.append(0, np.flatnonzero(los[1:] != los[:-1] + ns[:-1]) + 1)  # touching ranges: one
        los, ns = los[first], np.add.reduceat(ns, first)
        if len(los) < PACK_RANGES:
            out += [(f, m, a, v, None) for f, m in zip(los.tolist(), ns.tolist())]
        else:
            mine = np.repeat(los - np.cumsum(ns) + ns, ns) + np.arange(int(ns.sum()), dtype=np.int64)
            out.append((int(mine[0]), len(mine), a, v, packChunks([mine])))
    return sorted(out, key=lambda r: r[0])


def taskRanges(tasks: Sequence[Sequence[int]], attempts: Mapping[int, int]) -> list[Range]:
    """Array tasks (their indices) as ranges: a run of tasks each holding the next ``per`` indices (same
    attempt) is one range; anything else splits."""
    out: list[list[int]] = []
    cur: list[int] | None = None
    get = attempts.get
    for t, bundle in enumerate(tasks):
        if len(bundle) == 1:  # the common one-run task, without the general case's lists
            i = bundle[0]
            a = get(i, 1)
            if cur is not None and cur[3] == 1 and t == cur[2] + cur[1] and i == cur[0] + cur[1] and a == cur[4]:
                cur[1] += 1
            else:
                cur = [i, 1, t, 1, a]
                out.append(cur)
            continue
        runs: list[list[int]] = []  # [lo, n, attempt]
        prev = -2
        for i in bundle:
            a = get(i, 1)
            if i == prev + 1 and runs and runs[-1][2] == a:
                runs[-1][1] += 1
            else:
                runs.append([i, 1, a])
            prev = i
        if len(runs) == 1:
            lo, n, a = runs[0]
            if (cur is not None and cur[1] % cur[3] == 0 and n <= cur[3] and t == cur[2] + cur[1] // cur[3]
                    and lo == cur[0] + cur[1] and a == cur[4]):  # fmt: skip
                cur[1] += n
                continue
            cur = [lo, n, t, n, a]
            out.append(cur)
        else:
            cur = None
            out += [[lo, n, t, n, a] for lo, n, a in runs]
    return [(r[0], r[1], r[2], r[3], r[4]) for r in out]


def _expand(rows: Sequence[Row]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The indices of attempt rows and their array tasks."""
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.concatenate([membersOf(r[0], r[1], r[6] if len(r) > 6 else None) for r in rows])
    task = np.concatenate([task + np.arange(n, dtype=np.int64) // per for _, n, task, per, *_ in rows])
    return idx, task


@runtime_checkable
class HasRanges(Protocol):
    def ranges(self) -> list[tuple[int, int, int, Verdict]]: ...


def verdictRanges(verdicts: Iterable[tuple[int, int, Verdict]]) -> list[tuple[int, int, int, Verdict]]:
    """(index, attempt, verdict) triples as (lo, n, attempt, verdict) ranges of contiguous indices."""
    out: list[list[Any]] = []
    for i, a, v in sorted(verdicts, key=lambda x: (x[0], x[1])):
        last = out[-1] if out else None
        if last is not None and last[0] + last[1] == i and last[2] == a and last[3] == v:
            last[1] += 1
        else:
            out.append([i, 1, a, v])
    return [(r[0], r[1], r[2], r[3]) for r in out]


class _Coverage:
    """Which (attempt, index) pairs the verdict rows cover: per attempt, merged intervals (rows of ranges), or
    a byte an index when some rows are packed."""

    def __init__(self, rows: Sequence[VerdictRow]) -> None:
        self._masks: dict[int, npt.NDArray[np.bool_]] | None = None
        if any(r[6] is not None for r in rows):
            top = max(lastOf(r[0], r[1], r[6]) for r in rows) + 1
            self._masks = {}
            for lo, n, attempt, *_, members in rows:
                mask = self._masks.setdefault(attempt, np.zeros(top, dtype=bool))
                if members is None:
                    mask[lo : lo + n] = True
                else:
                    for _, chunk in members.chunks():
                        mask[chunk] = True
            return
        spans: dict[int, list[tuple[int, int]]] = {}
        for lo, n, attempt, *_ in rows:
            spans.setdefault(attempt, []).append((lo, lo + n))
        self._merged: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = {}
        for attempt, items in spans.items():
            starts: list[int] = []
            ends: list[int] = []
            for lo, hi in sorted(items):
                if ends and lo <= ends[-1]:
                    ends[-1] = max(ends[-1], hi)
                else:
                    starts.append(lo)
                    ends.append(hi)
            self._merged[attempt] = (np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))

    def covers(self, attempt: int, lo: int, n: int, members: Packed | None = None) -> bool:
        """Every member of the attempt row (lo, n, members) has a verdict for ``attempt``."""
        if self._masks is not None:
            mask = self._masks.get(attempt)
            if mask is None or lastOf(lo, n, members) >= len(mask):
                return False
            return all(bool(mask[chunk].all()) for _, chunk in chunksOf(lo, n, members)) if members is not None else bool(mask[lo : lo + n].all())
        got = self._merged.get(attempt)
        if got is None:
            return False
        starts, ends = got
        if members is None:
            j = int(np.searchsorted(starts, lo, side="right")) - 1
            return j >= 0 and int(ends[j]) >= lo + n
        for _, chunk in members.chunks():
            at = np.searchsorted(starts, chunk, side="right") - 1
            if bool((at < 0).any()) or not bool((ends[np.maximum(at, 0)] > chunk).all()):
                return False
        return True


def smallest(top: int, signed: bool = True) -> type[np.integer[Any]]:
    """The narrowest integer dtype holding ``0 … top`` (and -1 when ``signed``)."""
    for t in ((np.int8, np.int16, np.int32) if signed else (np.uint8, np.uint16, np.uint32)):
        if top <= np.iinfo(t).max:
            return t
    return np.int64


@dataclass
class LedgerView:
    """What the ledger knows of one experiment's indices ``0 … n − 1``, as arrays (a few bytes per index,
    nothing per index in Python): the latest attempt of each, the attempt range (ledger row) it comes from
    (its submission and array task: :meth:`tagOf`, :meth:`taskOf`), and the recorded verdict of that attempt.
    Each per-index array has the narrowest dtype its values need (usually a byte or two). Earlier verdicts
    are kept as ranges and expanded per index on demand."""

    attempt: npt.NDArray[np.integer[Any]]  # latest attempt (0: never submitted)
    row: npt.NDArray[np.integer[Any]]  # its attempt range: an index into ``rows`` (-1: none)
    recorded: npt.NDArray[np.integer[Any]]  # its verdict: an index into ``table`` (-1: none recorded)
    tags: list[str]
    table: list[Verdict]  # the distinct verdicts
    spans: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]  # verdict rows: lo, hi, attempt, table id
    resets: dict[int, int]
    rows: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]] = field(
        default_factory=lambda: tuple(np.zeros(0, dtype=np.int64) for _ in range(4)))  # type: ignore[assignment]  # attempt ranges: lo, task, per, tag id  # fmt: skip
    packed: dict[int, Packed] = field(default_factory=dict)  # attempt rows (by number) whose members are packed
    vpacked: dict[int, Packed] = field(default_factory=dict)  # verdict rows (by number) whose members are packed

    @classmethod
    def empty(cls, n: int) -> "LedgerView":
        z = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(n, np.uint8), np.full(n, -1, np.int16), np.full(n, -1, np.int16), [], [], (z, z, z, z), {})

    @classmethod
    def none(cls, n: int) -> "LedgerView":
        """Nothing recorded: read-only arrays that take no memory per index."""
        z = np.zeros(0, dtype=np.int64)
        return cls(np.broadcast_to(np.uint8(0), (n,)), np.broadcast_to(np.int16(-1), (n,)), np.broadcast_to(np.int16(-1), (n,)),
                   [], [], (z, z, z, z), {})  # fmt: skip

    @classmethod
    def of(cls, attempt: Sequence[int], tag: Sequence[int], task: Sequence[int], recorded: Sequence[int], tags: list[str],
           table: list[Verdict]) -> "LedgerView":  # fmt: skip
        """From per-index lists (tests): a range of its own for every index with an attempt."""
        n = len(attempt)
        v = cls.empty(n)
        v.attempt = np.asarray(attempt, dtype=smallest(max(attempt, default=0), signed=False))
        v.recorded = np.asarray(recorded, dtype=np.int16)
        has = [i for i in range(n) if attempt[i] > 0]
        v.row = np.full(n, -1, dtype=smallest(len(has)))
        v.row[has] = np.arange(len(has))
        v.rows = (np.asarray(has, dtype=np.int64), np.asarray([task[i] for i in has], dtype=np.int64),
                  np.ones(len(has), dtype=np.int64), np.asarray([tag[i] for i in has], dtype=np.int64))  # fmt: skip
        v.tags, v.table = tags, table
        return v

    @overload
    def tagOf(self, i: int) -> int: ...
    @overload
    def tagOf(self, i: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def tagOf(self, i: int | npt.NDArray[np.int64]) -> int | npt.NDArray[np.int64]:
        """The submission (an index into ``tags``) of the latest attempt of ``i`` (it has one)."""
        got = self.rows[3][self.row[i]]
        return int(got) if isinstance(i, (int, np.integer)) else got

    @overload
    def taskOf(self, i: int) -> int: ...
    @overload
    def taskOf(self, i: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
    def taskOf(self, i: int | npt.NDArray[np.int64]) -> int | npt.NDArray[np.int64]:
        """The array task of the latest attempt of ``i`` (it has one)."""
        r = self.row[i]
        lo, task, per, _ = self.rows
        got = task[r] + (i - lo[r]) // per[r]
        if isinstance(i, (int, np.integer)):
            p = self.packed.get(int(r))
            return int(got) if p is None else int(task[r]) + int(p.rank(np.array([i], dtype=np.int64))[0][0]) // int(per[r])
        for k, p in self.packed.items():  # a packed row: the member's position, not its distance from lo
            mine = np.flatnonzero(r == k)
            if len(mine):
                got[mine] = task[k] + p.rank(np.asarray(i)[mine])[0] // per[k]
        return got  # type: ignore[no-any-return]

    @classmethod
    def build(cls, ledger: Ledger, experiment: str, n: int) -> "LedgerView":
        rows = ledger._attemptRows(experiment)
        return cls.fromRows(rows, ledger._verdictRows(experiment) if rows else [], ledger.resets(experiment), n)

    @classmethod
    def fromRows(cls, rows: Sequence[Row], vrows: Sequence[VerdictRow], resets: dict[int, int], n: int) -> "LedgerView":
        """From the ledger's attempt rows (lo, n, task, per, attempt, tag, members) and verdict rows (lo, n,
        attempt, cause, started, exit, members), oldest first: an index's latest attempt, and of two rows for
        it the later. Packed rows are read a block at a time."""
        if not rows:
            v = cls.none(n)
            v.resets = resets
            return v
        z = np.zeros(0, dtype=np.int64)
        rowType = smallest(len(rows))
        v = cls(np.zeros(n, smallest(max(r[4] for r in rows), signed=False)), np.full(n, -1, rowType), np.full(n, -1, np.int16),
                [], [], (z, z, z, z), resets)  # fmt: skip
        tagIds: dict[str, int] = {}
        rowLo, rowTask, rowPer, rowTag = (np.zeros(len(rows), dtype=np.int64) for _ in range(4))
        order = sorted(range(len(rows)), key=lambda k: rows[k][4])  # stable: the later row wins a tie
        for k in order:
            lo, count, task, per, attempt, tag, members = rows[k]
            rowLo[k], rowTask[k], rowPer[k], rowTag[k] = lo, task, per, tagIds.setdefault(tag, len(tagIds))
            if members is not None:
                v.packed[k] = members
                for _, chunk in members.chunks():
                    c = chunk[: np.searchsorted(chunk, n)]
                    c = c[v.attempt[c] <= attempt]
                    v.attempt[c] = attempt
                    v.row[c] = k
                continue
            hi = min(lo + count, n)
            if hi <= lo:
                continue
            sl = slice(lo, hi)
            keep = v.attempt[sl] <= attempt
            if keep.all():
                v.attempt[sl] = attempt
                v.row[sl] = k
            else:
                v.attempt[sl][keep] = attempt
                v.row[sl][keep] = k
            del keep
        v.tags = list(tagIds)
        v.rows = (rowLo, rowTask, rowPer, rowTag)
        ids: dict[tuple[str, int, int | None], int] = {}
        los, his, atts, vids = (np.zeros(len(vrows), dtype=np.int64) for _ in range(4))
        for k, (lo, count, attempt, cause, started, exit, members) in enumerate(vrows):
            vid = ids.setdefault((cause, int(started), exit), len(ids))
            los[k], his[k], atts[k], vids[k] = lo, lastOf(lo, count, members) + 1, attempt, vid
            if members is not None:
                v.vpacked[k] = members
                for _, chunk in members.chunks():
                    c = chunk[: np.searchsorted(chunk, n)]
                    v.recorded[c[v.attempt[c] == attempt]] = vid
                continue
            hi = min(lo + count, n)
            if hi > lo:
                sl = slice(lo, hi)
                mine = v.attempt[sl] == attempt
                if mine.all():
                    v.recorded[sl] = vid
                elif mine.any():
                    v.recorded[sl][mine] = vid
        v.table = [Verdict(Cause(c), bool(s), e) for c, s, e in ids]
        v.spans = (los, his, atts, vids)
        return v

    def histories(self, indices: npt.NDArray[np.int64]) -> dict[int, dict[int, Verdict]]:
        """Every recorded verdict of each of ``indices`` (sorted): index -> attempt -> verdict. Costs the
        verdict rows plus what is found, not the sweep."""
        out: dict[int, dict[int, Verdict]] = {int(i): {} for i in indices.tolist()}
        los, his, atts, vids = self.spans
        if not len(indices) or not len(los):
            return out
        a = np.searchsorted(indices, los)
        b = np.searchsorted(indices, his)
        for k in np.flatnonzero(b > a).tolist():  # oldest row first: the later row wins
            v, attempt = self.table[int(vids[k])], int(atts[k])
            mine = indices[a[k] : b[k]]
            p = self.vpacked.get(k)
            if p is not None:
                mine = mine[p.rank(mine)[1]]
            for i in mine.tolist():
                out[i][attempt] = v
        return {i: dict(sorted(h.items())) for i, h in out.items()}


def _toRanges(db: sqlite3.Connection) -> None:
    """Schema 2 to 3: the per-index ``attempts`` and ``verdicts`` rows as ranges; the old tables dropped."""
    byTag: dict[str, tuple[str, dict[int, list[int]], dict[int, int]]] = {}
    for experiment, idx, tag, task, attempt in db.execute(
            "SELECT experiment, idx, tag, task, attempt FROM attempts ORDER BY tag, task, idx"):  # fmt: skip
        _, tasks, attempts = byTag.setdefault(tag, (experiment, {}, {}))
        tasks.setdefault(task, []).append(idx)
        attempts[idx] = attempt
    for tag, (experiment, tasks, attempts) in byTag.items():
        top = max(tasks) + 1
        listed = [tasks.get(t, []) for t in range(top)]
        db.executemany("INSERT INTO attempt_ranges (experiment, tag, lo, n, task, per, attempt) VALUES (?,?,?,?,?,?,?)",
                       ((experiment, tag, *r) for r in taskRanges(listed, attempts)))  # fmt: skip
    byExp: dict[tuple[str, float], list[tuple[int, int, Verdict]]] = {}
    for experiment, idx, attempt, cause, started, exit, t in db.execute(
            "SELECT experiment, idx, attempt, cause, started, exit, time FROM verdicts"):  # fmt: skip
        byExp.setdefault((experiment, t), []).append((idx, attempt, Verdict(Cause(cause), bool(started), exit)))
    for (experiment, t), triples in sorted(byExp.items(), key=lambda kv: kv[0][1]):
        db.executemany("INSERT INTO verdict_ranges (experiment, lo, n, attempt, cause, started, exit, time) VALUES (?,?,?,?,?,?,?,?)",
                       ((experiment, lo, n, a, str(v.cause), int(v.started), v.exit, t) for lo, n, a, v in verdictRanges(triples)))  # fmt: skip
    db.execute("DROP TABLE attempts")
    db.execute("DROP TABLE verdicts")


def _addMembers(db: sqlite3.Connection) -> None:
    """Schema 3 to 4: attempt and verdict rows may hold packed members (a NULL column: every row as it was)."""
    for table in ("attempt_ranges", "verdict_ranges"):
        if "members" not in {r[1] for r in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN members BLOB")


def _compact(db: sqlite3.Connection) -> None:
    """Schema 3 to 4, after the columns: each submission whose rows are a plan's tasks (its indices sorted
    across its tasks, every task but the last of one size) rewritten as :meth:`Bundles.attemptRanges` writes
    them now: a fitted plan's class, a row per index before, becomes a row or two. Others are kept as they are."""
    tags = [r[0] for r in db.execute("SELECT tag FROM attempt_ranges GROUP BY tag HAVING COUNT(*) > ?", (2 * PACK_RANGES,))]
    for tag in tags:
        rows = db.execute("SELECT experiment, lo, n, task, per, attempt FROM attempt_ranges WHERE tag = ? ORDER BY rowid", (tag,)).fetchall()
        experiment = rows[0][0]
        lo, n, task, per, att = (np.asarray([r[k] for r in rows], dtype=np.int64) for k in range(1, 6))
        start = np.cumsum(n) - n
        k = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(start, n)  # each member's place in its row
        idx = np.repeat(lo, n) + k
        tasks = np.repeat(task, n) + k // np.repeat(per, n)
        attempt = np.repeat(att, n)
        order = np.lexsort((idx, tasks))
        idx, tasks, attempt = idx[order], tasks[order], attempt[order]
        sizes = np.bincount(tasks) if len(tasks) and tasks.min() >= 0 else np.zeros(0, dtype=np.int64)
        if (len(idx) > 1 and not bool((np.diff(idx) > 0).all())) or not len(sizes) or bool((sizes[:-1] != sizes[0]).any()) or sizes[-1] > sizes[0]:
            continue  # not a plan's tasks (built by hand, or overlapping rows): kept
        plan = Bundles(IndexSet.of(idx), int(sizes[0]))
        db.execute("DELETE FROM attempt_ranges WHERE tag = ?", (tag,))
        db.executemany("INSERT INTO attempt_ranges (experiment, tag, lo, n, task, per, attempt, members) VALUES (?,?,?,?,?,?,?,?)",
                       ((experiment, tag, *r) for r in plan.attemptRanges(attempt.astype(np.int32))))  # fmt: skip


def _submission(r: sqlite3.Row) -> Submission:
    keys = r.keys()
    return Submission(
        r["tag"], r["job_id"], r["backend"], r["experiment"], r["array_size"], json.loads(r["resources"]), r["attempt"],
        r["time"], r["manifest"], bool(r["adopted"]), bool(r["cancelled"]),
        json.loads(r["provenance"]) if "provenance" in keys else {},
    )  # fmt: skip


def lockFile(path: str, wait: float, onWait: Callable[[str], None] | None = None) -> int:
    """An exclusive flock on ``path`` (waiting up to ``wait`` s; ``onWait`` is called once with a line saying
    so); LedgerBusy when another process holds it, LedgerError when the file system cannot lock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise LedgerError(f"{path}: cannot open the lock file: {e.strerror}") from None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as e:
            if e.errno not in BUSY:
                os.close(fd)
                raise LedgerError(f"{path}: this file system cannot lock files ({e.strerror}): put the results root "
                                  "on one that supports flock (a local disk, NFS with locking, Lustre mounted with "
                                  "-o flock)") from None  # fmt: skip
            if time.monotonic() >= deadline:
                os.close(fd)
                holder = _holder(path)
                raise LedgerBusy(f"{path}: another pyexputils process{holder} (submit/watch) holds the ledger; try again later") from None
            if onWait is not None:
                onWait(f"waiting up to {wait:g} s for {path}, held by another pyexputils process{_holder(path)}")
                onWait = None
            time.sleep(0.2)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
    return fd


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            words = f.read().split()
    except OSError:
        return ""
    return f" (pid {words[0]} on {words[1]})" if len(words) >= 2 else (f" (pid {words[0]})" if words else "")


def noteCancelled(state: StateDir, jobIds: Sequence[str]) -> None:
    """Append job ids the user cancelled (no lock needed: a running watch reads them each round)."""
    with guarded(state.cancelled):
        state.make()
        with open(state.cancelled, "a", encoding="utf-8") as f:
            f.write("".join(f"{j}\n" for j in jobIds))


def readCancelled(state: StateDir) -> set[str]:
    try:
        with open(state.cancelled, encoding="utf-8") as f:
            return {line.strip() for line in f if line.strip()}
    except FileNotFoundError:
        return set()
