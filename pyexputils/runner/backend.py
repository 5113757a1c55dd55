"""The backend interface: what the submitter needs from a scheduler (Slurm, or the local process pool).

A backend takes array jobs that are already planned and written down (:class:`JobSpec`: a manifest file on
disk, the rendered sbatch script and the resolved options), and

- ``limits()``: reports the limits that shape a plan (:class:`Limits`);
- ``submit(job)``: starts one array job of ``job.array_size`` tasks (ids ``0..array_size-1``), each running
  ``python -m pyexputils.runner.task job.manifest_path`` with its task id, and returns the job id;
  raises :class:`SubmitRejected` (refused, nothing started), :class:`QueueFull` (no room now, nothing
  started) or :class:`BackendError`;
- ``query()``: the live array tasks of pyexputils' jobs (pending or running), one :class:`LiveTask` each;
- ``ended(job_ids)``: how tasks of these jobs ended, where the scheduler still knows (for ``watch``);
- ``cancel(job_ids)``: stops those jobs (pending tasks never start, running ones get SIGTERM);
- ``queued()`` (optional): all of this user's queued/running jobs (default: ``len(query())``);
- ``preemptible()`` (optional): whether jobs can be preempted (default: no);
- ``finish()``: called once after the last submit of a command; the Slurm backend returns at once, a
  foreground backend (local) runs / waits for the work it was given here.

Jobs are identified by their ``tag`` (``JobSpec.tag``): Slurm job name ``pyx-<tag>`` and comment
``pyx:<tag>``, so that a job submitted by a process that crashed before writing the ledger can be found in
the queue and adopted from its manifest (``StateDir.manifest(tag)``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Sequence

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.manifest import Manifest

JOB_PREFIX = "pyx-"  # job name: pyx-<tag>
COMMENT_PREFIX = "pyx:"  # job comment: pyx:<tag>


class BackendError(PyExpUtilsError):
    """The scheduler could not be used (not found, not answering, an unexpected reply)."""


class SubmitRejected(BackendError):
    """The scheduler refused a job (its own message included); nothing was submitted."""


class QueueFull(BackendError):
    """The scheduler refused a job for lack of room (a submit limit reached, a busy controller): nothing was
    submitted, and the same job may go through later."""


@dataclass(frozen=True)
class Limits:
    """Limits that shape a plan; None means no limit known (or none)."""

    max_array_size: int | None = None  # MaxArraySize: an array task id must be <= max_array_size - 1
    max_job_count: int | None = None  # MaxJobCount: jobs the controller holds at once (array tasks count)
    max_submit_jobs: int | None = None  # association MaxSubmitJobs: queued+running jobs of this user
    max_time_minutes: int | None = None  # the partition's MaxTime
    cpus: int | None = None  # CPUs of the partition (Slurm) or workers (local)
    source: dict[str, str] = field(default_factory=dict)  # where each limit came from ("scontrol", "config")
    task_slots: int | None = None  # array tasks that can run at once, when the backend knows (local: workers)

    def describe(self) -> str:
        """One line for the dry-run summary."""
        parts = []
        for name in ("max_array_size", "max_job_count", "max_submit_jobs", "max_time_minutes", "cpus"):
            value = getattr(self, name)
            if value is not None:
                src = self.source.get(name)
                parts.append(f"{name}={value}" + (f" ({src})" if src else ""))
        return ", ".join(parts) or "none known"


@dataclass(frozen=True)
class JobSpec:
    """One array job, planned, rendered and with its manifest written to ``manifest_path``."""

    tag: str
    manifest_path: str  # absolute; written before submit()
    manifest: Manifest  # the same content, in memory
    array_size: int  # tasks 0..array_size-1
    script: str  # the rendered sbatch script (the local backend may ignore it)
    options: dict[str, Any]  # resolved sbatch options (long names with underscores), incl. time, cpus_per_task
    time_limit_minutes: int | None  # of one array task (the whole bundle)
    cpus_per_task: int = 1
    throttle: int | None = None  # at most this many tasks of the array at once (sbatch --array=...%N)
    workdir: str = "."  # the project root; sbatch is called from here

    @property
    def job_name(self) -> str:
        return JOB_PREFIX + self.tag


@dataclass(frozen=True)
class LiveTask:
    """One live array task of a pyexputils job, as the scheduler reports it."""

    job_id: str  # the array job id (ArrayJobId)
    task: int | None  # the array task id (None for a job that is not an array)
    state: str  # Slurm state name: PENDING, RUNNING, COMPLETING, ...
    tag: str | None  # from the job name pyx-<tag> (None if the name is not ours)
    reason: str = ""
    workdir: str | None = None  # the job's working directory (pyexputils submits from the project root)


class Backend(abc.ABC):
    """A scheduler: see the module docstring."""

    name: str = "backend"

    @abc.abstractmethod
    def limits(self, partition: str | None = None) -> Limits:
        """The limits that shape a plan (partition: the one jobs will go to, None for the default)."""

    @abc.abstractmethod
    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        """Start ``job``; return its job id. ``test_only``: validate only (``sbatch --test-only``), return ''."""

    @abc.abstractmethod
    def query(self) -> list[LiveTask]:
        """Live (pending or running) array tasks of pyexputils jobs (job name starting with ``pyx-``)."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel these jobs (all their array tasks)."""

    def ended(self, job_ids: Sequence[str]) -> dict[tuple[str, int | None], str]:
        """How array tasks of these jobs ended, where the scheduler still knows: ``(job id, task) -> state``
        (TIMEOUT, PREEMPTED, ...). Slurm: tasks seen ended by the last ``query()`` (within MinJobAge) and,
        with accounting, one ``sacct`` call. Default: nothing known (the runner's status files decide)."""
        return {}

    def queued(self) -> int:
        """Jobs (array tasks) of this user now queued or running, all of them: the queue budget's use."""
        return len(self.query())

    def preemptible(self) -> bool:
        """Whether the scheduler may preempt jobs: then a bare SIGTERM that nothing else explains is taken
        for a preemption (resubmitted), otherwise for a cancellation (final)."""
        return False

    def finish(self) -> None:
        """Called after the last submit of one command (a foreground backend runs its work here)."""
