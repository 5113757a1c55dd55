"""What to do after an attempt ended: resubmit (with which resources) or stop with a final cause (pure).

Keys of the ``slurm`` block (config or experiment):

- ``max_attempts`` (5): attempts per index in all; an index cut off before it started (its bundle ran
  out of time first) does not use one up.
- ``max_failed_retries`` (1): resubmissions after the program itself failed (non-zero exit, or no
  ``require`` files): code bugs don't heal. A task that failed before the index started (the job died
  before the runner could start it) is not the program's failure: retried within ``max_attempts``.
- ``time_factor`` (2.0): time x factor after TIMEOUT, rounded up to whole minutes, capped by the
  partition's MaxTime (or ``max_time``); a run that timed out at the cap ends TIMEOUT (final).
- ``mem_factor`` (2.0): memory x factor after OUT_OF_MEMORY, capped by ``max_mem`` (or the node's);
  a run out of memory at the cap ends OUT_OF_MEMORY (final).
- Where other runs of the same setting were measured (:mod:`pyexputils.runner.durations`): after a
  TIMEOUT, their p95 run time x 1.25 when that is more than the time asked (instead of x ``time_factor``);
  after an OUT_OF_MEMORY, their peak memory x 1.25 likewise. Both capped as above.
- PREEMPTED, NODE_FAIL, VANISHED: same resources again (within ``max_attempts``).
- CANCELLED (by ``pyexputils cancel``): final, unless ``resubmit_cancelled`` is true.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.resources import formatMinutes

NOT_STARTED_FREE = frozenset({Cause.TIMEOUT, Cause.CANCELLED, Cause.PREEMPTED})


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 5
    max_failed_retries: int = 1
    time_factor: float = 2.0
    mem_factor: float = 2.0
    max_time_minutes: int | None = None  # partition MaxTime, or slurm.max_time
    max_mem_mb: int | None = None  # slurm.max_mem, or the node's memory
    resubmit_cancelled: bool = False


@dataclass(frozen=True)
class Resources:
    """The resources one index asks for: minutes per run, and memory (MB) as ``mem`` or ``mem_per_cpu``."""

    minutes: int | None  # None: no time given (the partition's default)
    mem_mb: int | None = None
    mem_key: str = "mem"  # which sbatch option carries mem_mb

    def options(self) -> dict[str, str]:
        """As ``slurm`` block options."""
        out = {} if self.minutes is None else {"time": formatMinutes(self.minutes)}
        if self.mem_mb is not None:
            out[self.mem_key] = f"{self.mem_mb}M"
        return out


@dataclass(frozen=True)
class Measure:
    """What earlier runs of the same setting measured: p95 run time (seconds) and peak memory (MB)."""

    p95_s: float | None = None
    mem_mb: float | None = None


MEASURED_MARGIN = 1.25  # an escalation from measurements asks this much over them


@dataclass(frozen=True)
class Decision:
    """Resubmit with ``resources``, or stop: ``final`` is the final cause and ``reason`` says why."""

    resources: Resources | None
    final: Cause | None = None
    reason: str = ""


def attemptsUsed(history: Sequence[Verdict]) -> int:
    """Attempts that count against ``max_attempts`` (not those cut off before the index started)."""
    return sum(1 for v in history if v.started or v.cause not in NOT_STARTED_FREE)


def decide(history: Sequence[Verdict], current: Resources, policy: Policy, measured: Measure | None = None) -> Decision:
    """What to do after the last attempt in ``history`` (oldest first, since the index last completed or was
    retried) ended, asking ``current``; ``measured``: what other runs of its setting took (escalations ask
    that, with a margin, when it is more than ``current``, instead of ``current x factor``)."""
    last = history[-1]
    cause = last.cause
    if cause is Cause.COMPLETED:
        raise ValueError("decide() needs an attempt that ended without its results, got COMPLETED")
    used = attemptsUsed(history)
    if len(history) >= 3 * policy.max_attempts:  # a hard bound, whatever the causes
        return Decision(None, cause, f"{len(history)} attempts in all")
    if cause is Cause.CANCELLED and not policy.resubmit_cancelled:
        return Decision(None, Cause.CANCELLED, "cancelled (scancel or pyexputils cancel); pyexputils retry resubmits it")
    if used >= policy.max_attempts:
        return Decision(None, cause, f"{used} attempts used (max_attempts = {policy.max_attempts})")
    if cause is Cause.FAILED:
        if not last.started:  # the job failed before the index ran: not the program's failure
            return Decision(current)
        failures = sum(1 for v in history if v.cause is Cause.FAILED and v.started)
        if failures > policy.max_failed_retries:
            return Decision(
                None, Cause.FAILED, f"failed {failures} times (max_failed_retries = {policy.max_failed_retries})"
            )
        return Decision(current)
    if cause is Cause.TIMEOUT:
        if not last.started:  # its bundle ran out of time before it began: same resources
            return Decision(current)
        if current.minutes is None:
            return Decision(None, Cause.TIMEOUT, "timed out, and no slurm.time to raise (the partition's default applied)")
        minutes = _escalate(current.minutes, policy.time_factor, policy.max_time_minutes,
                            None if measured is None or measured.p95_s is None else measured.p95_s * MEASURED_MARGIN / 60)  # fmt: skip
        if minutes is None:
            return Decision(None, Cause.TIMEOUT, f"timed out at the time cap of {formatMinutes(current.minutes)}")
        return Decision(replace(current, minutes=minutes))
    if cause is Cause.OUT_OF_MEMORY:
        if current.mem_mb is None:
            return Decision(None, Cause.OUT_OF_MEMORY, "out of memory and no mem/mem_per_cpu option to raise")
        mem = _escalate(current.mem_mb, policy.mem_factor, policy.max_mem_mb,
                        None if measured is None or measured.mem_mb is None else measured.mem_mb * MEASURED_MARGIN)  # fmt: skip
        if mem is None:
            return Decision(None, Cause.OUT_OF_MEMORY, f"out of memory at the memory cap of {current.mem_mb}M")
        return Decision(replace(current, mem_mb=mem))
    return Decision(current)  # PREEMPTED, NODE_FAIL, VANISHED (same resources), or CANCELLED with resubmit_cancelled


def _escalate(value: int, factor: float, cap: int | None, measured: float | None = None) -> int | None:
    """``value`` x ``factor`` rounded up (at least +1), or ``measured`` rounded up when that is more than
    ``value``; capped; None when ``value`` is at the cap already."""
    if cap is not None and value >= cap:
        return None
    if measured is not None and measured > value:
        raised = max(value + 1, math.ceil(measured))
    else:
        raised = max(value + 1, math.ceil(value * factor))
    return raised if cap is None else min(raised, cap)
