"""Why an attempt at one index ended (pure): the causes, and the order in which evidence is weighed.

Evidence about one ended attempt comes from the scheduler (``squeue -t all`` within MinJobAge, ``sacct``
where the site has it), from the in-job runner's status file (its ``end``/``skip`` record for the index and,
on a stop signal, the state the scheduler gave its own job at that moment) and from the ledger (a
``pyexputils cancel`` of the attempt). Results on disk are *not* evidence of how an attempt ended: a run
that checkpoints ``returns.npy`` has the file long before it finished. The order:

1. the runner recorded the index ``COMPLETED`` (exit 0 with every ``require`` file) or ``FAILED`` (with its
   exit code): that, whatever the scheduler says of the whole array task (a bundle's task may time out
   after some of its indices completed);
2. the scheduler says how the task ended with a cause only it knows (TIMEOUT, OUT_OF_MEMORY, PREEMPTED,
   NODE_FAIL), or CANCELLED (somebody ran ``scancel``): that cause;
3. ``pyexputils cancel`` recorded for the attempt: CANCELLED;
4. the runner's own record: its cause. A runner stopped by SIGTERM records CANCELLED; which kind of
   stop it was comes from the state the runner saw its job in (``CANCELLED`` for ``scancel``,
   ``PREEMPTED``), and when nothing says, from the cluster: PREEMPTED where preemption is configured
   (``preemptible``), CANCELLED where it is not;
5. the runner started the index and wrote nothing more, and the task is gone: killed without warning
   (node failure, SIGKILL): NODE_FAIL;
6. the scheduler says FAILED and the runner wrote nothing: FAILED before the index started (bad log
   folder, a broken environment);
7. the scheduler says COMPLETED and the runner's file is gone: COMPLETED when the results are on disk,
   else VANISHED;
8. nothing anywhere: CANCELLED when another task of the same array job was seen cancelled (``scancel``
   of a whole array leaves no record of its pending tasks), else VANISHED (a pending task cancelled on
   its own, status files lost).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from pyexputils.runner.status import IndexOutcome


class Cause(str, enum.Enum):
    """How an attempt at an index ended."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"
    NODE_FAIL = "NODE_FAIL"
    CANCELLED = "CANCELLED"
    VANISHED = "VANISHED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, text: str) -> "Cause":
        """A cause from its name (any case); ValueError naming the known ones."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            raise ValueError(f"unknown cause {text!r}; expected one of {', '.join(c.value for c in cls)}") from None


# Slurm job states that are still live (may still run the index)
LIVE_STATES = frozenset(
    {
        "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
        "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
    }
)  # fmt: skip
RUNNING_STATES = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
# ended states whose cause only the scheduler knows
SCHEDULER_CAUSES = {
    "TIMEOUT": Cause.TIMEOUT,
    "DEADLINE": Cause.TIMEOUT,
    "OUT_OF_MEMORY": Cause.OUT_OF_MEMORY,
    "PREEMPTED": Cause.PREEMPTED,
    "NODE_FAIL": Cause.NODE_FAIL,
    "BOOT_FAIL": Cause.NODE_FAIL,
    "CANCELLED": Cause.CANCELLED,
}


def normaliseState(state: str | None) -> str | None:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``None``/empty stays None."""
    if not state:
        return None
    return state.split()[0].rstrip("+").upper()


def isLive(state: str | None) -> bool:
    return normaliseState(state) in LIVE_STATES


@dataclass(frozen=True)
class Evidence:
    """What is known about one index's latest attempt, once the scheduler no longer lists it as live."""

    schedulerState: str | None  # how its array task ended (squeue -t all within MinJobAge, or sacct)
    outcome: IndexOutcome | None  # the runner's last record for the index
    userCancelled: bool = False  # the ledger records a `pyexputils cancel` of this attempt
    onDisk: bool = False  # the seed's rule holds for its save folder
    preemptible: bool = True  # the cluster can preempt jobs (a bare SIGTERM is more likely a preemption)
    jobCancelled: bool = False  # another task of its array job was seen cancelled (scancel of the array)
    jobEnding: bool = False  # another task of its array job is being stopped (COMPLETING): it may yet show why this one is gone


@dataclass(frozen=True)
class Verdict:
    """How one attempt ended, and whether the index ever started in it."""

    cause: Cause
    started: bool
    exit: int | None = None

    def __post_init__(self) -> None:
        if type(self.cause) is not Cause:
            object.__setattr__(self, "cause", Cause(self.cause))  # a cause read back as text is a Cause again


def classify(ev: Evidence) -> Verdict:
    """The cause of one ended attempt; see the module docstring for the order of evidence."""
    out = ev.outcome
    started = out is not None and out.started
    exit = None if out is None else out.exit
    state = normaliseState(ev.schedulerState)
    if out is not None and out.state in (Cause.COMPLETED, Cause.FAILED):
        return Verdict(Cause(out.state), started=started, exit=exit)
    if state in SCHEDULER_CAUSES:
        return Verdict(SCHEDULER_CAUSES[state], started=started, exit=exit)
    if ev.userCancelled:
        return Verdict(Cause.CANCELLED, started=started, exit=exit)
    if out is not None and out.state != "RUNNING":
        if out.state == Cause.CANCELLED:
            return Verdict(_bareStop(out.schedulerState, ev.preemptible), started=started, exit=exit)
        try:
            return Verdict(Cause(out.state), started=started, exit=exit)
        except ValueError:
            return Verdict(Cause.FAILED, started=started, exit=exit)
    if out is not None:  # started, never ended, and the task is gone: killed without warning
        return Verdict(Cause.NODE_FAIL, started=True)
    if state == "FAILED":  # the task failed before the runner wrote anything (bad log folder, ...)
        return Verdict(Cause.FAILED, started=False)
    if state == "COMPLETED" and ev.onDisk:  # the runner's file is gone, the scheduler and the disk agree
        return Verdict(Cause.COMPLETED, started=True)
    if ev.jobCancelled:  # a pending task of an array somebody cancelled leaves no record of its own
        return Verdict(Cause.CANCELLED, started=False)
    return Verdict(Cause.VANISHED, started=False)


def _bareStop(seen: str | None, preemptible: bool) -> Cause:
    """A runner stopped by SIGTERM: the state it saw its own job in, else the likelier of the two."""
    seen = normaliseState(seen)
    if seen in SCHEDULER_CAUSES and seen != "TIMEOUT":
        return SCHEDULER_CAUSES[seen]
    return Cause.PREEMPTED if preemptible else Cause.CANCELLED
