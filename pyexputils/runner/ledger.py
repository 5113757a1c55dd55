"""The ledger: every submission and every index's attempts, in sqlite3 under ``<results root>/.pyexputils``.

Written by one process at a time: :meth:`Ledger.open` takes an exclusive ``flock`` on ``ledger.lock`` and
holds it until :meth:`Ledger.close` (the whole ``submit``, later the whole ``watch``); the lock dies with
its holder, even on SIGKILL. Readers (``status``) may open it with ``lock=False``.

Tables:

- ``submissions``: one row per array job: ``tag`` (key), ``job_id``, ``backend``, ``experiment``
  (absolute path), ``array_size``, ``resources`` (JSON of the sbatch options), ``attempt`` (the highest
  attempt number of its indices), ``time``, ``manifest`` (path), ``adopted`` (found in the queue, not
  recorded at submit: the submitter crashed between sbatch and the ledger), ``cancelled`` (by
  ``pyexputils cancel``; a later watch tells the user's cancellation from an admin's).
- ``verdicts``: how an attempt at an index ended (``cause``, ``started``, ``exit``), written by ``watch``
  once the attempt has ended (:mod:`pyexputils.runner.causes`); an attempt without one is unresolved.
- ``run_resources``: the per-run time (minutes) and memory a submission asked for (what ``watch``
  escalates after TIMEOUT / OUT_OF_MEMORY).
- ``attempts``: one row per (index, submission): ``experiment``, ``idx``, ``tag``, ``task`` (array task
  id), ``attempt`` (1 for an index's first submission, then +1). The latest attempt of an index is the row
  with the highest ``attempt``; joined with ``submissions`` it gives job id, resources and time, and with
  the manifest's status files (``Manifest.statusPath(task)``) the runner's own record.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.causes import Verdict
from pyexputils.runner.manifest import Manifest, stateDir
from pyexputils.runner.policy import Resources

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
    cancelled INTEGER NOT NULL DEFAULT 0
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
"""
LOCK_WAIT_S = 30.0


class LedgerBusy(PyExpUtilsError):
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


@dataclass(frozen=True)
class Attempt:
    """The latest attempt at one index."""

    idx: int
    tag: str
    task: int
    attempt: int
    job_id: str
    time: float


def manifestsDir(resultsRoot: str) -> str:
    return os.path.join(stateDir(resultsRoot), "manifests")


def manifestPath(resultsRoot: str, tag: str) -> str:
    """Where the manifest of ``tag`` is written before sbatch (and found again for adoption)."""
    return os.path.join(manifestsDir(resultsRoot), f"{tag}.json")


class Ledger:
    """See the module docstring. Use as a context manager."""

    def __init__(self, path: str, lockFd: int | None) -> None:
        self.path = path
        self._lock = lockFd
        self.db = sqlite3.connect(path, timeout=30.0)
        self.db.executescript(SCHEMA)
        self.db.commit()

    @classmethod
    def open(cls, resultsRoot: str, lock: bool = True, wait: float = LOCK_WAIT_S) -> "Ledger":
        """Open (creating) the ledger of ``resultsRoot``; with ``lock``, wait up to ``wait`` s for the lock."""
        folder = stateDir(resultsRoot)
        os.makedirs(folder, exist_ok=True)
        fd: int | None = None
        if lock:
            lockPath = os.path.join(folder, "ledger.lock")
            fd = os.open(lockPath, os.O_RDWR | os.O_CREAT, 0o644)
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                        os.close(fd)
                        raise LedgerBusy(f"{lockPath}: another pyexputils process (submit/watch) holds the ledger; try again later") from None
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        return cls(os.path.join(folder, "ledger.sqlite"), fd)

    def close(self) -> None:
        self.db.close()
        if self._lock is not None:
            os.close(self._lock)  # releases the flock
            self._lock = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------------
    def nextAttempts(self, experiment: str, indices: Iterable[int]) -> dict[int, int]:
        """The attempt number each index would get now (1 + its highest so far)."""
        wanted = set(indices)
        out = {i: 1 for i in wanted}
        rows = self.db.execute("SELECT idx, MAX(attempt) FROM attempts WHERE experiment = ? GROUP BY idx", (experiment,))
        for idx, attempt in rows:
            if idx in wanted:
                out[idx] = attempt + 1
        return out

    def record(self, sub: Submission, tasks: Sequence[Sequence[int]], attempts: dict[int, int] | None = None) -> None:
        """Record one submitted array job and its indices (one transaction)."""
        if attempts is None:
            attempts = self.nextAttempts(sub.experiment, (i for t in tasks for i in t))
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO submissions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (sub.tag, sub.job_id, sub.backend, sub.experiment, sub.array_size, json.dumps(sub.resources, default=str),
                 sub.attempt, sub.time, sub.manifest, int(sub.adopted), int(sub.cancelled)),
            )  # fmt: skip
            self.db.executemany(
                "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?)",
                ((sub.experiment, i, sub.tag, t, attempts.get(i, 1)) for t, bundle in enumerate(tasks) for i in bundle),
            )

    def adopt(self, manifest: Manifest, manifestFile: str, jobId: str, backend: str) -> Submission:
        """Record a job found in the queue that the ledger lacks, from its manifest."""
        sub = Submission(
            tag=manifest.tag, job_id=jobId, backend=backend, experiment=manifest.experiment,
            array_size=len(manifest.tasks), resources={}, attempt=manifest.attempt,
            time=os.path.getmtime(manifestFile), manifest=manifestFile, adopted=True,
        )  # fmt: skip
        self.record(sub, manifest.tasks)
        return sub

    def markCancelled(self, jobIds: Sequence[str]) -> None:
        with self.db:
            self.db.executemany("UPDATE submissions SET cancelled = 1 WHERE job_id = ?", ((j,) for j in jobIds))

    # --- reading ---------------------------------------------------------------------------------------
    def submissions(self, experiment: str | None = None) -> list[Submission]:
        q = "SELECT * FROM submissions" + (" WHERE experiment = ?" if experiment else "") + " ORDER BY time"
        rows = self.db.execute(q, (experiment,) if experiment else ())
        return [
            Submission(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], bool(r[9]), bool(r[10]))
            for r in rows
        ]

    def byTag(self, tag: str) -> Submission | None:
        return next((s for s in self.submissions() if s.tag == tag), None)

    def tags(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT tag FROM submissions")}

    def indicesOf(self, tag: str, task: int | None = None) -> list[int]:
        """The indices of one submission (or of one of its array tasks)."""
        if task is None:
            rows = self.db.execute("SELECT idx FROM attempts WHERE tag = ? ORDER BY idx", (tag,))
        else:
            rows = self.db.execute("SELECT idx FROM attempts WHERE tag = ? AND task = ? ORDER BY idx", (tag, task))
        return [r[0] for r in rows]

    def latest(self, experiment: str) -> dict[int, Attempt]:
        """The latest attempt of every index of ``experiment`` that was ever submitted."""
        rows = self.db.execute(
            "SELECT a.idx, a.tag, a.task, a.attempt, s.job_id, s.time FROM attempts a JOIN submissions s ON a.tag = s.tag "
            "WHERE a.experiment = ? ORDER BY a.attempt",
            (experiment,),
        )
        return {r[0]: Attempt(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}

    # --- the watch's records ---------------------------------------------------------------------------
    def setResources(self, tag: str, res: Resources) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO run_resources VALUES (?,?,?,?)", (tag, res.minutes, res.mem_mb, res.mem_key))

    def runResources(self) -> dict[str, Resources]:
        """The per-run resources of every submission that recorded them, by tag."""
        rows = self.db.execute("SELECT tag, minutes, mem_mb, mem_key FROM run_resources")
        return {r[0]: Resources(r[1], r[2], r[3]) for r in rows}

    def addVerdicts(self, experiment: str, verdicts: Sequence[tuple[int, int, Verdict]]) -> None:
        """Record how attempts ended: (index, attempt, verdict) triples, one transaction."""
        now = time.time()
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?)",
                ((experiment, i, a, v.cause, int(v.started), v.exit, now) for i, a, v in verdicts),
            )

    def verdicts(self, experiment: str) -> dict[int, list[Verdict]]:
        """Every recorded verdict of ``experiment``, per index, oldest attempt first."""
        rows = self.db.execute(
            "SELECT idx, cause, started, exit FROM verdicts WHERE experiment = ? ORDER BY attempt", (experiment,)
        )
        out: dict[int, list[Verdict]] = {}
        for idx, cause, started, exit in rows:
            out.setdefault(idx, []).append(Verdict(cause, bool(started), exit))
        return out

    def resolvedAttempts(self, experiment: str) -> dict[int, set[int]]:
        """The attempt numbers with a verdict, per index of ``experiment``."""
        out: dict[int, set[int]] = {}
        for idx, attempt in self.db.execute("SELECT idx, attempt FROM verdicts WHERE experiment = ?", (experiment,)):
            out.setdefault(idx, set()).add(attempt)
        return out

    def causeCounts(self) -> dict[str, int]:
        """Verdicts recorded so far, by cause (all experiments)."""
        return {c: n for c, n in self.db.execute("SELECT cause, COUNT(*) FROM verdicts GROUP BY cause")}

    def unresolvedJobs(self) -> list[str]:
        """Job ids with an attempt that has no verdict yet (the jobs worth asking sacct about)."""
        rows = self.db.execute(
            "SELECT DISTINCT s.job_id FROM attempts a JOIN submissions s ON a.tag = s.tag "
            "LEFT JOIN verdicts v ON v.experiment = a.experiment AND v.idx = a.idx AND v.attempt = a.attempt "
            "WHERE v.cause IS NULL"
        )
        return sorted({r[0] for r in rows if r[0] and r[0] != "unknown"})

    def cancelledTags(self) -> set[str]:
        """Tags of submissions the user cancelled with ``pyexputils cancel`` (also while a watch held the lock)."""
        tags = {r[0] for r in self.db.execute("SELECT tag FROM submissions WHERE cancelled = 1")}
        noted = readCancelled(os.path.dirname(self.path))
        if noted:
            tags |= {r[0] for r in self.db.execute("SELECT tag, job_id FROM submissions") if r[1] in noted}
        return tags


CANCELLED_FILE = "cancelled.txt"


def noteCancelled(resultsRoot: str, jobIds: Sequence[str]) -> None:
    """Append job ids the user cancelled (no lock needed: a running watch reads them each round)."""
    folder = stateDir(resultsRoot)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, CANCELLED_FILE), "a", encoding="utf-8") as f:
        f.write("".join(f"{j}\n" for j in jobIds))


def readCancelled(folder: str) -> set[str]:
    try:
        with open(os.path.join(folder, CANCELLED_FILE), encoding="utf-8") as f:
            return {line.strip() for line in f if line.strip()}
    except FileNotFoundError:
        return set()
