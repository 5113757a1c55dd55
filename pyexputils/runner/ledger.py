"""The ledger: every submission and every index's attempts, in sqlite3 (``StateDir.ledger``).

Written by one process at a time: :meth:`Ledger.open` takes an exclusive ``flock`` on ``StateDir.lock`` and
holds it until :meth:`Ledger.close` (the whole ``submit``, the whole ``watch``); the lock dies with its
holder, even on SIGKILL. Readers (``status``, ``show``, ``cancel``) use :meth:`Ledger.read`: read-only, no
lock, no file created.

Schema version ``SCHEMA_VERSION`` (``PRAGMA user_version``); a ledger of version 0 (pyexputils 0.1) is
migrated in place by the next writer; a newer one is refused with a clear message. Rows are read and
written by column name. Tables:

- ``submissions``: one row per array job: ``tag`` (key), ``job_id``, ``backend``, ``experiment`` (absolute
  path), ``array_size``, ``resources`` (JSON of the sbatch options), ``attempt`` (the highest attempt
  number of its indices), ``time``, ``manifest`` (path), ``adopted`` (found in the queue, not recorded at
  submit: the submitter died between sbatch and the ledger), ``cancelled`` (by ``pyexputils cancel``),
  ``provenance`` (JSON: git commit and whether the tree was dirty, the command line, pyexputils' version).
- ``attempts``: one row per (index, submission): ``experiment``, ``idx``, ``tag``, ``task`` (array task
  id), ``attempt`` (1 for an index's first submission, then +1).
- ``verdicts``: how an attempt ended (``cause``, ``started``, ``exit``), written once it has ended
  (:mod:`pyexputils.runner.causes`); an attempt without one is unresolved.
- ``run_resources``: the per-run time (minutes) and memory a submission asked for (what the policy
  escalates after TIMEOUT / OUT_OF_MEMORY).
- ``sweeps``: the runs of each experiment, remembered from its latest submit.
- ``resets``: ``pyexputils retry``: the verdicts of an index up to ``attempt`` no longer count for the policy.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.policy import Resources
from pyexputils.runner.statedir import StateDir

SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS attempts (
    experiment TEXT NOT NULL,
    idx INTEGER NOT NULL,
    tag TEXT NOT NULL,
    task INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    PRIMARY KEY (experiment, idx, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_tag ON attempts (tag, task);
CREATE TABLE IF NOT EXISTS verdicts (
    experiment TEXT NOT NULL,
    idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    cause TEXT NOT NULL,
    started INTEGER NOT NULL,
    exit INTEGER,
    time REAL NOT NULL,
    PRIMARY KEY (experiment, idx, attempt)
);
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
                    if MIGRATIONS[version]:
                        self.db.executescript(MIGRATIONS[version])
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.version = SCHEMA_VERSION
        self._tables |= {"submissions", "attempts", "verdicts", "run_resources", "sweeps", "resets"}

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
        wanted = set(indices)
        out = {i: 1 for i in wanted}
        for r in self._rows("SELECT idx, MAX(attempt) AS a FROM attempts WHERE experiment = ? GROUP BY idx", (experiment,)):
            if r["idx"] in wanted:
                out[r["idx"]] = r["a"] + 1
        return out

    def record(self, sub: Submission, tasks: Sequence[Sequence[int]], attempts: dict[int, int] | None = None) -> None:
        """Record one submitted array job and its indices (one transaction)."""
        if attempts is None:
            attempts = self.nextAttempts(sub.experiment, (i for t in tasks for i in t))
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO submissions (tag, job_id, backend, experiment, array_size, resources, attempt, "
                "time, manifest, adopted, cancelled, provenance) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (sub.tag, sub.job_id, sub.backend, sub.experiment, sub.array_size, json.dumps(sub.resources, default=str),
                 sub.attempt, sub.time, sub.manifest, int(sub.adopted), int(sub.cancelled),
                 json.dumps(sub.provenance, default=str)),
            )  # fmt: skip
            db.executemany(
                "INSERT OR REPLACE INTO attempts (experiment, idx, tag, task, attempt) VALUES (?,?,?,?,?)",
                ((sub.experiment, i, sub.tag, t, attempts.get(i, 1)) for t, bundle in enumerate(tasks) for i in bundle),
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
        """Record how attempts ended: (index, attempt, verdict) triples, one transaction."""
        now = time.time()
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO verdicts (experiment, idx, attempt, cause, started, exit, time) VALUES (?,?,?,?,?,?,?)",
                ((experiment, i, a, str(v.cause), int(v.started), v.exit, now) for i, a, v in verdicts),
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
    def submissions(self, experiment: str | None = None) -> list[Submission]:
        q = "SELECT * FROM submissions" + (" WHERE experiment = ?" if experiment else "") + " ORDER BY time"
        return [_submission(r) for r in self._rows(q, (experiment,) if experiment else ())]

    def byTag(self, tag: str) -> Submission | None:
        rows = self._rows("SELECT * FROM submissions WHERE tag = ?", (tag,))
        return _submission(rows[0]) if rows else None

    def tags(self) -> set[str]:
        return {r["tag"] for r in self._rows("SELECT tag FROM submissions")}

    def tasksOf(self, tag: str) -> tuple[str, dict[int, list[int]]] | None:
        """(experiment, {array task: its indices}) of one submission; None when the ledger lacks it."""
        sub = self._rows("SELECT experiment FROM submissions WHERE tag = ?", (tag,))
        if not sub:
            return None
        out: dict[int, list[int]] = {}
        for r in self._rows("SELECT task, idx FROM attempts WHERE tag = ? ORDER BY task, idx", (tag,)):
            out.setdefault(r["task"], []).append(r["idx"])
        return sub[0]["experiment"], out

    def latest(self, experiment: str) -> dict[int, Attempt]:
        """The latest attempt of every index of ``experiment`` that was ever submitted."""
        rows = self._rows(
            "SELECT a.idx, a.tag, a.task, a.attempt, s.job_id, s.time, s.manifest FROM attempts a "
            "JOIN submissions s ON a.tag = s.tag WHERE a.experiment = ? ORDER BY a.attempt",
            (experiment,),
        )
        return {r["idx"]: Attempt(r["idx"], r["tag"], r["task"], r["attempt"], r["job_id"], r["time"], r["manifest"]) for r in rows}

    def runResources(self) -> dict[str, Resources]:
        """The per-run resources of every submission that recorded them, by tag."""
        rows = self._rows("SELECT tag, minutes, mem_mb, mem_key FROM run_resources")
        return {r["tag"]: Resources(r["minutes"], r["mem_mb"], r["mem_key"]) for r in rows}

    def verdicts(self, experiment: str) -> dict[int, dict[int, Verdict]]:
        """Every recorded verdict of ``experiment``: index -> attempt -> verdict."""
        out: dict[int, dict[int, Verdict]] = {}
        for r in self._rows("SELECT idx, attempt, cause, started, exit FROM verdicts WHERE experiment = ? ORDER BY attempt", (experiment,)):
            out.setdefault(r["idx"], {})[r["attempt"]] = Verdict(Cause(r["cause"]), bool(r["started"]), r["exit"])
        return out

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
        if experiments is None:
            rows = self._rows("SELECT cause, COUNT(*) AS n FROM verdicts GROUP BY cause")
        else:
            marks = ",".join("?" * len(experiments))
            rows = self._rows(f"SELECT cause, COUNT(*) AS n FROM verdicts WHERE experiment IN ({marks}) GROUP BY cause", experiments)
        return {r["cause"]: r["n"] for r in rows}

    def lastBackend(self) -> str | None:
        """The backend of the latest submission."""
        rows = self._rows("SELECT backend FROM submissions ORDER BY time DESC LIMIT 1")
        return str(rows[0]["backend"]) if rows else None

    def unresolvedJobs(self, backend: str | None = None) -> list[str]:
        """Job ids (of ``backend``'s submissions) with an attempt that has no verdict yet (the jobs worth
        asking sacct about)."""
        rows = self._rows(
            "SELECT DISTINCT s.job_id FROM attempts a JOIN submissions s ON a.tag = s.tag "
            "LEFT JOIN verdicts v ON v.experiment = a.experiment AND v.idx = a.idx AND v.attempt = a.attempt "
            "WHERE v.cause IS NULL" + (" AND s.backend = ?" if backend else ""), (backend,) if backend else ()
        )
        return sorted({r["job_id"] for r in rows if r["job_id"] and r["job_id"] != "unknown"})

    def cancelledTags(self) -> set[str]:
        """Tags of submissions the user cancelled with ``pyexputils cancel`` (also while a watch held the lock)."""
        tags = {r["tag"] for r in self._rows("SELECT tag FROM submissions WHERE cancelled = 1")}
        noted = readCancelled(self.state)
        if noted:
            tags |= {r["tag"] for r in self._rows("SELECT tag, job_id FROM submissions") if r["job_id"] in noted}
        return tags

    def attemptsOf(self, experiment: str, idx: int) -> list[Attempt]:
        """Every recorded attempt at one index, oldest first (``logs --attempt K``)."""
        rows = self._rows(
            "SELECT a.idx, a.tag, a.task, a.attempt, s.job_id, s.time, s.manifest FROM attempts a "
            "JOIN submissions s ON a.tag = s.tag WHERE a.experiment = ? AND a.idx = ? ORDER BY a.attempt",
            (experiment, idx),
        )
        return [Attempt(r["idx"], r["tag"], r["task"], r["attempt"], r["job_id"], r["time"], r["manifest"]) for r in rows]


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
