"""An in-process fake scheduler for tests: jobs in memory, task fates driven by the test.

:class:`FakeBackend` implements :class:`pyexputils.runner.backend.Backend` (name ``fake``). ``submit`` keeps the
:class:`JobSpec` and returns job ids ``"1"``, ``"2"``, ...; every array task starts ``PENDING``. The test moves
tasks on with :meth:`FakeBackend.start` and :meth:`FakeBackend.end` (or :meth:`FakeBackend.vanish`), and
ending a task plays the in-job runner's part (:mod:`pyexputils.runner.task`): it appends the events the runner
would write to the task's status file (``<manifest.status_dir>/<tag>/<task>.jsonl``) and, for ``COMPLETED``
(or when asked), creates the save folders with the config's ``require`` files.

What the scheduler itself remembers follows Slurm (see SLURM.md): an ended task is reported by
:meth:`ended` (``squeue -t all`` within MinJobAge) until the test calls :meth:`forget`, and after that only
when ``sacct`` is on; a pending task of a cancelled array vanishes without any record.

Register an instance for the command line with ``monkeypatch.setitem(session.BACKENDS, "fake", lambda c: fake)``
so that it persists across several ``pyexputils.cli.main([...])`` calls of one test.
"""
from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from pyexputils.errors import ExperimentError
from pyexputils.models import ExperimentDescription, loadConfig
from pyexputils.models.loader import loadMapping
from pyexputils.runner.backend import Backend, BackendError, JobSpec, Limits, LiveTask
from pyexputils.runner.causes import Cause
from pyexputils.runner.status import StatusWriter, summary

LIVE = ("PENDING", "RUNNING", "COMPLETING")
# how Slurm names a task that ended with each cause
SCHEDULER_STATE = {
    Cause.COMPLETED: "COMPLETED",
    Cause.FAILED: "FAILED",
    Cause.TIMEOUT: "TIMEOUT",
    Cause.OUT_OF_MEMORY: "OUT_OF_MEMORY",
    Cause.PREEMPTED: "PREEMPTED",
    Cause.NODE_FAIL: "NODE_FAIL",
    Cause.CANCELLED: "CANCELLED by 1000",
}
STOPPED = frozenset({Cause.TIMEOUT, Cause.CANCELLED, Cause.PREEMPTED})  # the runner got a stop signal


@dataclass(slots=True)  # 10^6 one-run tasks are 10^6 of these
class FakeTask:
    """One array task: ``state`` is PENDING, RUNNING or how it ended; ``recorded`` is False once nothing
    anywhere remembers it (a cancelled pending task)."""

    job: "FakeJob"
    task: int
    state: str = "PENDING"
    recorded: bool = True
    forgotten: bool = False  # squeue no longer lists it (MinJobAge passed since it ended)
    started: list[int] = field(default_factory=list)  # its indices the runner started
    stopped: Cause | None = None  # the runner got a stop signal (see FakeBackend.stop)
    offset: int = 0  # where its runner's task_start line begins in its status file


@dataclass
class FakeJob:
    """One array job; ``spec`` is None for a job submitted by something else (only its tag is known)."""

    id: str
    tag: str
    spec: JobSpec | None
    tasks: list[FakeTask] = field(default_factory=list)
    workdir: str | None = None  # where it was submitted from (squeue's %Z)

    def indices(self, task: int) -> list[int]:
        return [] if self.spec is None else list(self.spec.manifest.tasks[task])


class FakeBackend(Backend):
    """See the module docstring. Attributes a test may set: ``sacct`` (accounting on), ``canPreempt``
    (``preemptible()``), ``fakeLimits`` (``limits()``), ``refusals`` (what the next ``submit`` calls raise:
    None lets one through) and ``autopilot`` (called at every ``query()``, to move tasks on during a
    ``watch``)."""

    name = "fake"

    def __init__(self, sacct: bool = False, preemptible: bool = False, limits: Limits | None = None) -> None:
        self.sacct = sacct
        self.canPreempt = preemptible
        self.fakeLimits = limits if limits is not None else Limits(cpus=4, source={"cpus": "fake"})
        self.refusals: deque[BackendError | None] = deque()
        self.autopilot: Callable[["FakeBackend"], None] | None = None
        self.jobs: dict[str, FakeJob] = {}
        self.cancelled: list[str] = []  # job ids passed to cancel(), in order
        self.lingering = False  # cancel() leaves running tasks COMPLETING
        self.queries = 0

    # --- the Backend interface ------------------------------------------------------------------------
    def limits(self, partition: str | None = None) -> Limits:
        return self.fakeLimits

    def preemptible(self) -> bool:
        return self.canPreempt

    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        """Keep ``job`` (all its tasks PENDING); raise the next of ``refusals`` first, if any."""
        if self.refusals:
            refusal = self.refusals.popleft()
            if refusal is not None:
                raise refusal
        if test_only:
            return ""
        return self.add(job.tag, job.array_size, job).id

    def query(self) -> list[LiveTask]:
        """The PENDING and RUNNING tasks (after the autopilot, if any, had its turn)."""
        self.queries += 1
        if self.autopilot is not None:
            self.autopilot(self)
        return [LiveTask(j.id, t.task, t.state, j.tag, workdir=j.workdir) for j in self.jobs.values() for t in j.tasks if t.state in LIVE]

    def ended(self, job_ids: Sequence[str]) -> dict[tuple[str, int | None], str]:
        """Ended tasks of these jobs the scheduler still remembers: all with ``sacct``, else those not
        forgotten; never a pending task that was cancelled."""
        out: dict[tuple[str, int | None], str] = {}
        for jid in job_ids:
            for t in self.jobs[jid].tasks if jid in self.jobs else []:
                if t.state not in LIVE and t.recorded and (self.sacct or not t.forgotten):
                    out[(jid, t.task)] = t.state
        return out

    def cancel(self, job_ids: Sequence[str]) -> None:
        """``scancel``: running tasks get SIGTERM (the runner records CANCELLED, and its probe sees
        ``CANCELLED``); pending ones vanish without a record. With ``lingering`` set, running tasks stay
        COMPLETING (their runs are being stopped: Slurm's KillWait) until the test ends them."""
        for jid in job_ids:
            self.cancelled.append(jid)
            for t in self.jobs[jid].tasks if jid in self.jobs else []:
                if t.state == "RUNNING" and self.lingering:
                    self.stop(jid, t.task, Cause.CANCELLED, seen="CANCELLED")
                elif t.state in ("RUNNING", "COMPLETING"):
                    self.end(jid, t.task, Cause.CANCELLED, seen="CANCELLED")
                elif t.state == "PENDING":
                    self.vanish(jid, t.task)

    # --- driving it -------------------------------------------------------------------------------------
    def add(self, tag: str, size: int, spec: JobSpec | None = None, state: str = "PENDING", workdir: str | None = None) -> FakeJob:
        """A new job of ``size`` tasks in ``state`` (``spec`` None: a job nothing here submitted)."""
        j = FakeJob(str(len(self.jobs) + 1), tag, spec, workdir=workdir or (spec.workdir if spec is not None else None))
        j.tasks = [FakeTask(j, t, state) for t in range(size)]
        self.jobs[j.id] = j
        return j

    def job(self, job: str | int) -> FakeJob:
        return self.jobs[str(job)]

    def last(self) -> FakeJob:
        """The job submitted last."""
        return self.jobs[str(len(self.jobs))]

    def spec(self, job: str | int) -> JobSpec:
        spec = self.job(job).spec
        assert spec is not None, f"job {job} was not submitted through submit()"
        return spec

    def taskOf(self, job: str | int, task: int) -> FakeTask:
        return self.job(job).tasks[task]

    def holding(self, index: int, experiment: str | None = None) -> FakeTask:
        """The task of the latest job (of ``experiment``, an absolute path, when given) that runs ``index``."""
        for j in reversed(list(self.jobs.values())):
            if j.spec is None or (experiment is not None and j.spec.manifest.experiment != experiment):
                continue
            for t, bundle in enumerate(j.spec.manifest.tasks):
                if index in bundle:
                    return j.tasks[t]
        raise KeyError(f"no job runs index {index}")

    def start(self, job: str | int, task: int) -> None:
        """PENDING -> RUNNING; the runner writes ``task_start`` and starts the task's first index."""
        t = self.taskOf(job, task)
        assert t.state == "PENDING", f"task {job}_{task} is {t.state}, not PENDING"
        t.state = "RUNNING"
        with self._writer(t) as w:
            t.offset = w.offset
            w.write("task_start", time=time.time(), indices=t.job.indices(task), pid=os.getpid(), parallel=1, tag=t.job.tag)
            for i in t.job.indices(task)[:1]:
                w.write("start", time=time.time(), index=i, pid=os.getpid(), command="fake")
                t.started.append(i)

    def end(self, job: str | int, task: int, cause: Cause | str = Cause.COMPLETED, *, exit: int | None = None,
            seen: str | None = None, results: bool | None = None, ran: int | None = None,
            state: str | None = None) -> None:  # fmt: skip
        """End one task with ``cause``, starting it first if it is pending, writing what the runner would:

        - COMPLETED: every index runs and ends COMPLETED (exit 0); its save folder is created.
        - FAILED: every index runs and ends FAILED with ``exit`` (default 1).
        - OUT_OF_MEMORY: every index runs and is killed (SIGKILL the runner did not send).
        - TIMEOUT, CANCELLED, PREEMPTED: the runner is stopped (USR1 / SIGTERM) while its first ``ran``
          (default 1, at least 1) indices have started (:meth:`stop`, unless it was called already): those
          end TIMEOUT / CANCELLED (a preemption is a bare SIGTERM to the runner: CANCELLED), the rest were
          skipped; ``seen``: the ``scheduler`` event of the runner's probe (``CANCELLED``, ``PREEMPTED``;
          no event when None).
        - NODE_FAIL: the runner started the first index and wrote nothing more.

        ``results`` (default: COMPLETED only): create the save folders (with every ``require`` file) of the
        indices that ran: a run that checkpointed, or crashed after writing. ``state``: what the scheduler
        says of the task (default: Slurm's name for ``cause``)."""
        c = Cause.parse(cause) if isinstance(cause, str) else cause
        t = self.taskOf(job, task)
        if c in STOPPED and t.stopped is None:
            self.stop(job, task, c, seen=seen, ran=ran)
            seen = None
        if t.state == "PENDING":
            self.start(job, task)
        assert t.state in ("RUNNING", "COMPLETING"), f"task {job}_{task} is {t.state}, not running"
        indices = t.job.indices(task)
        if c is not Cause.NODE_FAIL and t.stopped is None:
            self._startMore(t, indices[len(t.started):])
        if results if results is not None else c is Cause.COMPLETED:
            for i in t.started:
                self.writeResult(t.job, i)
        if c is not Cause.NODE_FAIL:  # killed without warning: nothing more
            with self._writer(t) as w:
                now = time.time()
                for i in t.started:
                    w.write("end", time=now, index=i, seconds=1.0, **self._endFields(t.stopped or c, exit))
                if seen is not None:
                    w.write("scheduler", time=now, state=seen, source="stderr")
                if t.stopped is None:  # with the run's account, as the runner writes it
                    f = self._endFields(c, exit)
                    w.write("task_end", time=now, cut_off=False, cause=None, exit=0 if c is Cause.COMPLETED else 1, offset=t.offset,
                            outcomes=summary((i, (str(f["cause"]), f["exit"], f["signal"], True)) for i in t.started))  # fmt: skip
                else:
                    w.write("task_end", time=now, cut_off=True, cause=self._runnerCause(t.stopped), exit=1)
        t.state = state if state is not None else SCHEDULER_STATE[c]

    def stop(self, job: str | int, task: int, cause: Cause | str = Cause.CANCELLED, *, seen: str | None = None,
             ran: int | None = None) -> None:  # fmt: skip
        """The runner of one task gets its stop signal (TIMEOUT: USR1; CANCELLED, PREEMPTED: SIGTERM) while
        its first ``ran`` indices (default 1, at least 1) have started: it writes ``stop``, skips the rest
        and, with ``seen``, the ``scheduler`` event of its probe. The task is COMPLETING (its runs being
        stopped) until :meth:`end`."""
        c = Cause.parse(cause) if isinstance(cause, str) else cause
        assert c in STOPPED, f"{c} is not a stop signal"
        t = self.taskOf(job, task)
        if t.state == "PENDING":
            self.start(job, task)
        assert t.state == "RUNNING" and t.stopped is None, f"task {job}_{task} is {t.state}, not RUNNING"
        indices = t.job.indices(task)
        self._startMore(t, indices[len(t.started): max(1, min(len(indices), ran or 1))])
        skipped = indices[len(t.started):]
        with self._writer(t) as w:
            now = time.time()
            w.write("stop", time=now, signal=10 if c is Cause.TIMEOUT else 15, name="SIGUSR1" if c is Cause.TIMEOUT else "SIGTERM",
                    cause=self._runnerCause(c), running=list(t.started), skipped=skipped)  # fmt: skip
            for i in skipped:
                w.write("skip", time=now, index=i, cause=self._runnerCause(c))
            if seen is not None:
                w.write("scheduler", time=now, state=seen, source="stderr")
        t.stopped = c
        t.state = "COMPLETING"

    def _startMore(self, t: FakeTask, indices: Sequence[int]) -> None:
        with self._writer(t) as w:
            for i in indices:
                w.write("start", time=time.time(), index=i, pid=os.getpid(), command="fake")
                t.started.append(i)

    def vanish(self, job: str | int, task: int) -> None:
        """A pending task gone without a record anywhere (``scancel`` of a pending array task)."""
        t = self.taskOf(job, task)
        assert t.state == "PENDING", f"task {job}_{task} is {t.state}, not PENDING"
        t.state = "CANCELLED"
        t.recorded = False

    def forget(self, job: str | int, task: int | None = None) -> None:
        """MinJobAge passed: squeue no longer lists the job's ended tasks, or that one (sacct, when on, still does)."""
        for t in self.job(job).tasks:
            if task is None or t.task == task:
                t.forgotten = True

    def complete(self, job: str | int) -> None:
        """Run every pending or running task of ``job`` to COMPLETED."""
        for t in self.job(job).tasks:
            if t.state in LIVE:
                self.end(job, t.task, Cause.COMPLETED)

    def completeAll(self) -> None:
        """Run every live task of every job to COMPLETED (an autopilot for ``watch``)."""
        for j in list(self.jobs.values()):
            if j.spec is not None:
                self.complete(j.id)

    def live(self) -> list[FakeTask]:
        return [t for j in self.jobs.values() for t in j.tasks if t.state in LIVE]

    # --- what the runner writes -------------------------------------------------------------------------
    @staticmethod
    def _runnerCause(c: Cause) -> str:
        return "TIMEOUT" if c is Cause.TIMEOUT else "CANCELLED"

    def _endFields(self, c: Cause, exit: int | None) -> dict[str, Any]:
        if c is Cause.COMPLETED:
            return {"cause": "COMPLETED", "exit": 0, "signal": None}
        if c is Cause.FAILED:
            return {"cause": "FAILED", "exit": 1 if exit is None else exit, "signal": None}
        if c is Cause.OUT_OF_MEMORY:
            return {"cause": "OUT_OF_MEMORY", "exit": None, "signal": 9}
        return {"cause": self._runnerCause(c), "exit": None, "signal": 15}

    def _writer(self, t: FakeTask) -> StatusWriter:
        spec = t.job.spec
        assert spec is not None, f"job {t.job.id} has no manifest: nothing runs it here"
        m = spec.manifest
        path = os.path.join(m.status_dir, m.tag, f"{t.task}.jsonl")
        return StatusWriter(path, host="fake", job=t.job.id, task=t.task, attempt=m.attempt)

    def savePath(self, job: FakeJob, index: int) -> str:
        """The save folder of ``index`` (absolute), as the runner finds it."""
        assert job.spec is not None
        m = job.spec.manifest
        config = loadConfig(m.project)
        exp = ExperimentDescription(loadMapping(m.experiment, ExperimentError), path=m.experiment, config=config)
        folder = exp.interpolateSavePath(index)
        return folder if os.path.isabs(folder) else os.path.join(m.project, folder)

    def writeResult(self, job: FakeJob, index: int) -> None:
        """The save folder of ``index`` with every ``require`` file (what a finished, or checkpointing, run leaves)."""
        assert job.spec is not None
        folder = self.savePath(job, index)
        os.makedirs(folder, exist_ok=True)
        for name in job.spec.manifest.require:
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write("{}")
