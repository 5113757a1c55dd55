"""The local backend: the same manifests and the same in-job runner, on this machine.

It implements :class:`pyexputils.runner.backend.Backend`. ``submit(job)`` only queues the array job (and
returns its id, ``local-<tag>``); ``finish()`` runs everything queued in one process pool and **blocks**
until every task has ended, printing a progress line every 2 s. Each worker is one runner:
``python -m pyexputils.runner.task MANIFEST --task t``, ``workers`` at a time (config ``local.workers``,
default the CPUs this process may use). With ``detach=True`` (config ``local.detach``) ``finish()`` starts
the same pool in a background process (``python -m pyexputils.runner.local``) and returns at once.

Time limits, as under Slurm: the array task's limit (``JobSpec.time_limit_minutes``, or the manifest's
``job_time_limit_s``) is enforced by the pool, which sends the runner SIGUSR1 at the limit (the runner
records ``TIMEOUT``, sends its runs SIGTERM and kills them ``grace_s`` later) and SIGKILL ``grace_s + 5`` s
after that; ``Manifest.time_limit_s`` per index is enforced by the runner itself. Runners write the same
status files as under Slurm, so ``status``/``missing``/resubmission read both alike.

A pool registers its jobs in ``<state_dir>/local/<tag>.json`` (job id, manifest, pool pid and its start
time) while it runs: ``query()`` lists the pending/running tasks of live pools, ``cancel()`` sends their pool
SIGTERM. SIGINT/SIGTERM to the pool (Ctrl-C, ``cancel``) is passed on to every runner, which stops its runs
(``CANCELLED``); tasks not started get ``skip`` events with cause ``CANCELLED`` in their own status files.
A second Ctrl-C kills the runs at once.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence, TextIO

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config
from pyexputils.runner.backend import Backend, JobSpec, Limits, LiveTask, SubmitRejected
from pyexputils.runner.manifest import Manifest, writeAtomic
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.status import StatusWriter, readEvents
from pyexputils.runner.task import STOP_SIGNALS, SignalWaiter

JOB_PREFIX = "local-"
KILL_AFTER_S = 5.0  # after the runner's grace period, a runner still there is killed
PROGRESS_EVERY_S = 2.0  # at most one progress line this often (and one at the end)


def defaultWorkers(options: dict[str, Any] | None = None, where: str = "config") -> int:
    """Config ``local.workers`` if given (a whole number >= 1), else the CPUs this process may use."""
    value = (options or {}).get("workers")
    if value is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PyExpUtilsError(f"{where}: local.workers must be a whole number >= 1, got {value!r}")
    return value


def jobId(tag: str) -> str:
    """The local job id of a submission: ``local-<tag>`` (tags are unique per submission)."""
    return JOB_PREFIX + tag


def _abs(manifest: Manifest, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(manifest.project, path)


def statusPath(manifest: Manifest, task: int) -> str:
    return _abs(manifest, manifest.statusPath(task))


def taskLog(manifest: Manifest, task: int) -> str:
    """The runner's own output (Slurm's ``%A_%a.out``): ``<log_dir>/<tag>/task-<t>.log``."""
    return _abs(manifest, os.path.join(manifest.log_dir, manifest.tag, f"task-{task}.log"))


@dataclass
class Job:
    """One array job to run locally."""

    path: str  # the manifest file
    manifest: Manifest
    time_limit_s: float | None = None  # of one array task (the whole bundle)

    @property
    def id(self) -> str:
        return jobId(self.manifest.tag)

    @classmethod
    def fromSpec(cls, spec: JobSpec) -> "Job":
        limit = spec.time_limit_minutes * 60 if spec.time_limit_minutes else spec.manifest.job_time_limit_s
        return cls(spec.manifest_path, spec.manifest, float(limit) if limit else None)

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "time_limit_s": self.time_limit_s}


@dataclass
class _Slot:
    job: Job
    task: int
    proc: "subprocess.Popen[bytes]"
    started: float
    warned: float | None = None  # SIGUSR1 sent (time limit)


class Pool:
    """Runs the array tasks of several jobs, ``workers`` runners at a time; ``run()`` returns
    ``{(job id, task): runner exit code}`` (None for a task never started, -9 for a runner killed)."""

    def __init__(self, jobs: Sequence[Job], workers: int, progress: TextIO | None = None) -> None:
        self.jobs = list(jobs)
        self.workers = max(1, workers)
        self.progress = progress
        self.codes: dict[tuple[str, int], int | None] = {}
        self.signals: list[int] = []
        self.stopped: int | None = None  # the signal that stopped the pool
        self.done = 0
        self.total = sum(len(j.manifest.tasks) for j in self.jobs)
        self.counts: dict[str, int] = {}
        self.lastReport = time.time()

    def run(self) -> dict[tuple[str, int], int | None]:
        queue = [(job, t) for job in self.jobs for t in range(len(job.manifest.tasks))]
        running: list[_Slot] = []
        with SignalWaiter(self.signals, STOP_SIGNALS) as wake:
            while queue or running:
                self._handleSignals(running)
                now = time.time()
                for slot in list(running):
                    code = slot.proc.poll()
                    if code is not None:
                        running.remove(slot)
                        self._finished(slot.job, slot.task, code)
                    else:
                        self._enforce(slot, now)
                if self.stopped is not None:
                    for job, t in queue:
                        self._skip(job, t)
                    queue.clear()
                while queue and len(running) < self.workers:
                    job, t = queue.pop(0)
                    running.append(_Slot(job, t, self._start(job, t), time.time()))
                if queue or running:
                    wake.wait(self._timeout(running, time.time()))
        return self.codes

    def _start(self, job: Job, task: int) -> "subprocess.Popen[bytes]":
        log = taskLog(job.manifest, task)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        env = {**os.environ, "PYX_JOB_ID": job.id, "PYX_LOCAL": "1"}
        args = [sys.executable, "-m", "pyexputils.runner.task", job.path, "--task", str(task)]
        with open(log, "ab") as out:
            # a session of its own: the pool decides which signal reaches the runner
            return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip

    def _enforce(self, slot: _Slot, now: float) -> None:
        """The array task's time limit: SIGUSR1 at the limit, SIGKILL after the runner's grace period."""
        limit = slot.job.time_limit_s
        if limit is None:
            return
        if slot.warned is None and now >= slot.started + limit:
            slot.warned = now
            _signal(slot.proc.pid, signal.SIGUSR1)
        elif slot.warned is not None and now >= slot.warned + slot.job.manifest.grace_s + KILL_AFTER_S:
            _signal(slot.proc.pid, signal.SIGKILL)

    def _timeout(self, running: list[_Slot], now: float) -> float:
        due = [now + 5.0]
        for s in running:
            if s.job.time_limit_s is not None:
                due.append(s.started + s.job.time_limit_s if s.warned is None
                           else s.warned + s.job.manifest.grace_s + KILL_AFTER_S)  # fmt: skip
        return max(0.0, min(due) - now)

    def _handleSignals(self, running: list[_Slot]) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig == signal.SIGUSR1:
                continue  # no meaning for the pool
            if self.stopped is None:
                self.stopped = sig
            # the runner records CANCELLED and stops its runs; a second SIGINT makes it kill them
            for slot in running:
                _signal(slot.proc.pid, sig)

    def _finished(self, job: Job, task: int, code: int) -> None:
        self.codes[(job.id, task)] = code
        for ev in readEvents(statusPath(job.manifest, task)):
            if ev.get("event") in ("end", "skip"):
                cause = str(ev.get("cause"))
                if ev.get("event") == "skip" and cause == "COMPLETED":
                    cause = "ALREADY_DONE"
                self.counts[cause] = self.counts.get(cause, 0) + 1
        self.done += 1
        now = time.time()
        if self.progress is not None and (self.done == self.total or now >= self.lastReport + PROGRESS_EVERY_S):
            self.lastReport = now
            tally = ", ".join(f"{n} {c}" for c, n in sorted(self.counts.items()))
            print(f"[local] {self.done}/{self.total} tasks ended; indices: {tally}", file=self.progress, flush=True)

    def _skip(self, job: Job, task: int) -> None:
        """A task the pool never started: its indices are skipped, CANCELLED, in its own status file."""
        self.codes[(job.id, task)] = None
        m = job.manifest
        with StatusWriter(statusPath(m, task), host=socket.gethostname(), job=job.id, task=task, attempt=m.attempt) as w:
            for index in m.tasks[task]:
                w.write("skip", time=round(time.time(), 3), index=index, cause="CANCELLED")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _processStart(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of /proc/PID/stat), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Registry:
    """``<state_dir>/local/<tag>.json``: the jobs of running pools (job id, manifest, pool pid)."""

    def __init__(self, state_dir: str) -> None:
        self.folder = StateDir.at(state_dir).local

    def path(self, tag: str) -> str:
        return os.path.join(self.folder, f"{tag}.json")

    def add(self, job: Job, pid: int) -> None:
        record = {"job": job.id, "tag": job.manifest.tag, "manifest": os.path.abspath(job.path), "pid": pid,
                  "pid_start": _processStart(pid), "host": socket.gethostname(), "time": time.time()}  # fmt: skip
        writeAtomic(self.path(job.manifest.tag), json.dumps(record))

    def remove(self, job: Job) -> None:
        try:
            os.unlink(self.path(job.manifest.tag))
        except FileNotFoundError:
            pass

    def live(self) -> list[dict[str, Any]]:
        """Records whose pool still runs (on this host); stale records are deleted."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.folder, "*.json"))):
            try:
                with open(path, encoding="utf-8") as f:
                    record: dict[str, Any] = json.load(f)
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("host") != socket.gethostname():
                continue
            pid = int(record.get("pid", 0))
            if pid > 0 and _processStart(pid) == record.get("pid_start"):
                out.append(record)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return out


def taskStates(manifest: Manifest, alive: bool) -> dict[int, str]:
    """Slurm-like state of every array task of a local submission, from its status files: PENDING,
    RUNNING (while its pool is ``alive``), COMPLETED, FAILED, TIMEOUT, CANCELLED; NODE_FAIL when the pool
    died under a task that never ended."""
    out: dict[int, str] = {}
    for t in range(len(manifest.tasks)):
        events = list(readEvents(statusPath(manifest, t)))
        ends = [e for e in events if e.get("event") == "task_end"]
        if ends:
            end = ends[-1]
            out[t] = "COMPLETED" if end.get("exit") == 0 else str(end.get("cause") or "FAILED")
        elif events and all(e.get("event") == "skip" for e in events):
            out[t] = str(events[-1].get("cause") or "CANCELLED")
        elif alive:
            out[t] = "RUNNING" if events else "PENDING"
        else:
            out[t] = "NODE_FAIL" if events else "CANCELLED"
    return out


class LocalBackend(Backend):
    """The scheduler interface on this machine; see the module docstring."""

    name = "local"

    def __init__(self, workers: int | None = None, state_dir: str | None = None, detach: bool = False,
                 progress: TextIO | None = sys.stderr) -> None:  # fmt: skip
        self.workers = workers if workers is not None else defaultWorkers()
        self.workersSource = "workers" if workers is not None else "CPUs available"
        self.registry = Registry(state_dir if state_dir is not None else StateDir(Config().results_root).path)
        self.detach = detach
        self.progress = progress
        self.toRun: list[Job] = []

    @classmethod
    def fromConfig(cls, config: Config, **kw: Any) -> "LocalBackend":
        """Workers and ``detach`` from config ``local``; the registry under the results root's state folder."""
        where = config.path or "config"
        detach = config.local.get("detach", False)
        if not isinstance(detach, bool):
            raise PyExpUtilsError(f"{where}: local.detach must be true or false, got {detach!r}")
        unknown = set(config.local) - {"workers", "detach"}
        if unknown:
            raise PyExpUtilsError(f"{where}: unknown key local.{sorted(unknown)[0]}; expected workers or detach")
        kw.setdefault("workers", defaultWorkers(config.local, where))
        kw.setdefault("detach", detach)
        backend = cls(state_dir=StateDir(config.underRoot(config.results_root)).path, **kw)
        backend.workersSource = "local.workers" if "workers" in config.local else "CPUs available"
        return backend

    def limits(self, partition: str | None = None) -> Limits:
        return Limits(cpus=self.workers, task_slots=self.workers, source={"cpus": self.workersSource})

    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        """Queue ``job`` for ``finish()``; its id is ``local-<tag>``. ``test_only``: check it only."""
        if len(job.manifest.tasks) != job.array_size:
            raise SubmitRejected(f"{job.manifest_path}: {len(job.manifest.tasks)} tasks, array of {job.array_size}")
        if not os.path.isfile(job.manifest_path):
            raise SubmitRejected(f"{job.manifest_path}: manifest not written")
        if test_only:
            return ""
        local = Job.fromSpec(job)
        self.toRun.append(local)
        return local.id

    def finish(self) -> None:
        """Run what was queued: blocks until every task has ended (or, with ``detach``, starts a pool in
        the background and returns)."""
        jobs, self.toRun = self.toRun, []
        if not jobs:
            return
        if self.detach:
            spawnPool(jobs, self.workers, self.registry)
        else:
            runPool(jobs, self.workers, self.registry, self.progress)

    def query(self) -> list[LiveTask]:
        """Pending and running tasks of the live pools' jobs."""
        out = []
        for record in self.registry.live():
            try:
                manifest = Manifest.read(str(record["manifest"]))
            except PyExpUtilsError:
                continue
            for t, state in taskStates(manifest, alive=True).items():
                if state in ("PENDING", "RUNNING"):
                    out.append(LiveTask(str(record["job"]), t, state, manifest.tag))
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        """SIGTERM to the pools of these jobs; the pool passes it on to every runner."""
        wanted = set(job_ids)
        for record in self.registry.live():
            if record.get("job") in wanted and int(record["pid"]) != os.getpid():
                _signal(int(record["pid"]), signal.SIGTERM)


def runPool(jobs: Sequence[Job], workers: int, registry: Registry | None = None,
            progress: TextIO | None = None) -> dict[tuple[str, int], int | None]:  # fmt: skip
    """Run ``jobs`` in this process; ``{(job id, task): runner exit code}``."""
    for job in jobs:
        if registry is not None:
            registry.add(job, os.getpid())
    try:
        return Pool(jobs, workers, progress).run()
    finally:
        for job in jobs:
            if registry is not None:
                registry.remove(job)


def spawnPool(jobs: Sequence[Job], workers: int, registry: Registry) -> int:
    """Run ``jobs`` in a background process (a session of its own); returns its pid."""
    spec = json.dumps({"workers": workers, "state_dir": os.path.dirname(registry.folder),
                       "jobs": [j.record() for j in jobs]})  # fmt: skip
    log = taskLog(jobs[0].manifest, 0).replace("task-0.log", "pool.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pyexputils.runner.local", spec], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    for job in jobs:
        registry.add(job, proc.pid)  # at once, so that query() sees the jobs before the pool has started
    return proc.pid


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pyexputils.runner.local SPEC``: a background pool (SPEC: JSON written by spawnPool)."""
    parser = argparse.ArgumentParser(prog="python -m pyexputils.runner.local", description=main.__doc__)
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    try:
        spec = json.loads(args.spec)
        jobs = [Job(j["path"], Manifest.read(j["path"]), j["time_limit_s"]) for j in spec["jobs"]]
    except (PyExpUtilsError, ValueError, KeyError, TypeError) as e:
        print(f"pyexputils.runner.local: {e}", file=sys.stderr)
        return 2
    codes = runPool(jobs, int(spec["workers"]), Registry(spec["state_dir"]), sys.stderr)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
