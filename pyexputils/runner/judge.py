"""The one decision of an index's state (pure): done, queued, running, to submit, to retry, final or unknown.

:func:`judgeIndex` is the only place that decides it; ``submit``, ``watch``, ``status``, ``show``,
``missing`` and ``cancel`` all read its answer (through :meth:`pyexputils.runner.session.Session.standing`).

The done rule of the scheduler: an index whose latest recorded attempt is still live, or ended other than
COMPLETED, is not done, whatever its save folder holds (a run that checkpoints its results has the file long
before it finished); it shows as live, or as its cause with ``partial`` set when the folder is there. An
index with no recorded attempt follows the seed's rule (the save folder exists, with every ``require``
file): the rule of ``listMissingResults``, which analysis keeps.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pyexputils.runner.causes import RUNNING_STATES, Cause, Evidence, Verdict, classify, isLive, normaliseState
from pyexputils.runner.policy import Measure, Policy, Resources, decide


class State(str, enum.Enum):
    """Where one index stands."""

    DONE = "DONE"  # its results, and no attempt says otherwise
    QUEUED = "QUEUED"  # in a live task that has not started
    RUNNING = "RUNNING"  # in a live task that runs
    MISSING = "MISSING"  # never submitted (or its results were removed after it completed): to submit
    RETRY = "RETRY"  # its latest attempt ended without results; the policy resubmits it
    FINAL = "FINAL"  # ended with a cause retrying cannot fix (or the policy's bounds were reached)
    UNKNOWN = "UNKNOWN"  # a live job may run it but nothing here says which indices: never submitted meanwhile

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PENDING_STATES = frozenset({State.MISSING, State.RETRY})  # what submit / watch send
ESCALATED = frozenset({Cause.TIMEOUT, Cause.OUT_OF_MEMORY})  # causes whose retry asks more


@dataclass(frozen=True)
class IndexStatus:
    """One index's standing."""

    index: int
    state: State
    cause: Cause | None = None  # how its latest attempt ended (None: live, or never submitted)
    attempts: int = 0  # attempts recorded so far
    exit: int | None = None
    partial: bool = False  # not done, but its save folder (with any require files) is on disk
    reason: str = ""  # why it is final, or what is unknown
    resources: Resources | None = None  # what its next attempt asks (MISSING, RETRY)
    tag: str | None = None  # the submission of its latest attempt
    task: int | None = None


@dataclass(frozen=True)
class Latest:
    """An index's latest recorded attempt, and what is known of it."""

    attempt: int
    tag: str
    task: int
    recorded: Verdict | None  # its verdict in the ledger, once resolved
    evidence: Evidence  # to classify it while unresolved
    history: Sequence[Verdict]  # verdicts of its earlier attempts since it last completed (or was retried)
    resources: Resources  # what it asked for
    measured: Callable[[], Measure | None] | None = None  # what runs of its setting measured (asked when escalating)


def judgeIndex(index: int, onDisk: bool, live: str | None, latest: Latest | None, base: Resources, policy: Policy) -> tuple[IndexStatus, Verdict | None]:  # fmt: skip
    """The state of one index, and the verdict of its latest attempt when it is newly known (to record).

    ``onDisk``: the seed's rule holds for its save folder; ``live``: the scheduler state of a live task that
    holds it (None when none does)."""
    if live is not None and isLive(live):
        state = State.RUNNING if normaliseState(live) in RUNNING_STATES else State.QUEUED
        attempts = 0 if latest is None else latest.attempt
        tag, task = (None, None) if latest is None else (latest.tag, latest.task)
        return IndexStatus(index, state, None, attempts, partial=onDisk, tag=tag, task=task), None
    if latest is None:
        if onDisk:
            return IndexStatus(index, State.DONE), None
        return IndexStatus(index, State.MISSING, resources=base), None
    v = latest.recorded or classify(latest.evidence)
    new = v if latest.recorded is None else None
    at = latest
    if new is not None and v.cause is Cause.VANISHED and latest.evidence.jobEnding:
        # gone without a trace while another task of its array is being stopped: a scancel of the whole
        # array shows on that task only once it has ended (KillWait); decided then, never resubmitted meanwhile
        return IndexStatus(index, State.UNKNOWN, None, at.attempt, tag=at.tag, task=at.task, partial=onDisk,
                           reason="it left the queue without a record while its array job is being stopped"), None  # fmt: skip

    def ended(state: State, cause: Cause, **kw: Any) -> IndexStatus:
        return IndexStatus(index, state, cause, at.attempt, v.exit, tag=at.tag, task=at.task, **kw)

    if v.cause is Cause.COMPLETED:
        if onDisk:
            return ended(State.DONE, Cause.COMPLETED), new
        return ended(State.MISSING, Cause.COMPLETED, reason="its results were removed after it completed", resources=base), new
    d = decide([*latest.history, v], latest.resources, policy, latest.measured() if latest.measured and v.cause in ESCALATED else None)
    if d.resources is None:
        return ended(State.FINAL, d.final or v.cause, partial=onDisk, reason=d.reason), new
    return ended(State.RETRY, v.cause, partial=onDisk, resources=d.resources), new


def sinceLast(verdicts: Mapping[int, Verdict], attempt: int, reset: int = 0) -> list[Verdict]:
    """The verdicts of the attempts before ``attempt`` since the index last completed, or was given a fresh
    budget by ``retry`` (``reset``: the attempt up to which it was), oldest first: what the policy counts."""
    if not verdicts or (len(verdicts) == 1 and attempt in verdicts):
        return []
    out: list[Verdict] = []
    for n in sorted(verdicts):
        if n >= attempt:
            break
        if n > reset:
            out = [] if verdicts[n].cause is Cause.COMPLETED else [*out, verdicts[n]]
    return out
