"""Why an attempt at one index ended: evidence from Slurm, the runner's status file and the disk (pure).

Evidence is weighed in this order:

1. results on disk: done means COMPLETED, whatever anybody else says;
2. the scheduler says the task is still live (squeue): ACTIVE, never resubmitted;
3. the scheduler says how the task ended (squeue within MinJobAge, or sacct) and that is a cause the
   runner cannot see itself (TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL): that cause, unless the runner
   recorded a finer one for this index (FAILED with an exit code, or an index it never started);
4. the runner's own record for the index (``end``/``skip`` events);
5. the runner started the index and wrote nothing more, and the task is gone: the runner was killed
   without warning (node failure, SIGKILL): NODE_FAIL;
6. nothing anywhere: VANISHED (e.g. a pending array task cancelled by an admin).

``CANCELLED`` by the runner (it got SIGTERM without a time-limit warning) is the user's cancellation only
if the ledger says the user cancelled; otherwise somebody else stopped the job (preemption seen without
sacct, an admin): PREEMPTED.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyexputils.runner.status import IndexOutcome

# Slurm job states that are still live (may still run the index)
LIVE_STATES = frozenset(
    {
        "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_FED",
        "REQUEUE_HOLD", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
    }
)  # fmt: skip
# ended states whose cause only the scheduler knows
SCHEDULER_CAUSES = {
    "TIMEOUT": "TIMEOUT",
    "OUT_OF_MEMORY": "OUT_OF_MEMORY",
    "PREEMPTED": "PREEMPTED",
    "NODE_FAIL": "NODE_FAIL",
    "BOOT_FAIL": "NODE_FAIL",
    "DEADLINE": "TIMEOUT",
}
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def normaliseState(state: str | None) -> str | None:
    """``CANCELLED by 0`` -> ``CANCELLED``; ``None``/empty stays None."""
    if not state:
        return None
    return state.split()[0].rstrip("+").upper()


@dataclass(frozen=True)
class Evidence:
    """What is known about one index's latest attempt."""

    done: bool  # results on disk
    schedulerState: str | None  # squeue (live or recently ended) or sacct state of its array task
    outcome: IndexOutcome | None  # the runner's last record for the index
    userCancelled: bool = False  # the ledger records a `pyexputils cancel` of this attempt


@dataclass(frozen=True)
class Verdict:
    """The cause of an attempt's end (or ACTIVE), and whether the index ever started in it."""

    cause: str  # ACTIVE, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, PREEMPTED, NODE_FAIL, CANCELLED, VANISHED
    started: bool
    exit: int | None = None


def classify(ev: Evidence) -> Verdict:
    """The cause of one index's latest attempt; see the module docstring for the order of evidence."""
    out = ev.outcome
    started = out is not None and out.started
    if ev.done:
        return Verdict("COMPLETED", started=True)
    state = normaliseState(ev.schedulerState)
    if state in LIVE_STATES:
        return Verdict("ACTIVE", started=started)
    exit = None if out is None else out.exit
    if state in SCHEDULER_CAUSES:
        if out is not None and out.state == "FAILED":
            return Verdict("FAILED", started=True, exit=exit)
        return Verdict(SCHEDULER_CAUSES[state], started=started, exit=exit)
    if out is not None and out.state != "RUNNING":
        if out.state == "CANCELLED":
            return Verdict("CANCELLED" if ev.userCancelled else "PREEMPTED", started=started, exit=exit)
        if out.state == "COMPLETED":
            # the runner saw it succeed but the results are not there (removed since): run it again
            return Verdict("VANISHED", started=started, exit=exit)
        return Verdict(out.state, started=started, exit=exit)
    if state == "CANCELLED" or ev.userCancelled:
        return Verdict("CANCELLED" if ev.userCancelled else "PREEMPTED", started=started)
    if out is not None:  # started, never ended, and the task is gone: killed without warning
        return Verdict("NODE_FAIL", started=True)
    if state == "FAILED":  # the task failed before the runner wrote anything (bad log folder, ...)
        return Verdict("FAILED", started=False)
    return Verdict("VANISHED", started=False)
