"""What ``submit`` and ``retry`` report beyond their summary (used by :mod:`pyexputils.cli`):

- on the local backend, the dry run's plan of processes (no sbatch script: the commands each runner process
  runs, in order) and, once the work has run here, which runs failed (``submit`` exits 1 then);
- ``--json``: the same report as one JSON object.
"""
from __future__ import annotations

import os
import shlex
from collections import Counter
from itertools import islice
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import numpy.typing as npt

from pyexputils.runner.backend import JobSpec
from pyexputils.runner.bundles import IndexSet, countRuns
from pyexputils.runner.command import buildCommand
from pyexputils.runner.inspect import formatSpans, spans, taskSpans
from pyexputils.runner.judge import State
from pyexputils.runner.session import Round, Session, Sweep

SHOWN_COMMANDS = 3  # a dry run prints this many commands of each runner process set


def indexSpans(indices: Iterable[int] | npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Inclusive spans of consecutive indices, from their ranges (no Python object per index)."""
    lo, n = IndexSet.of(indices).ranges()
    return list(zip(lo.tolist(), (lo + n - 1).tolist()))


def isLocal(s: Session) -> bool:
    return s.backend.name == "local"


def ranHere(s: Session) -> bool:
    """The backend ran the work in this process, to its end (the local backend, not detached)."""
    return isLocal(s) and not getattr(s.backend, "detach", False)


def _sweep(r: Round, job: JobSpec) -> Sweep:
    return next(st.sweep for st in r.standings if st.sweep.path == job.manifest.experiment)


def localCommands(s: Session, r: Round, job: JobSpec) -> Iterator[tuple[int, int, str]]:
    """(runner process, index, command) of every run of one local job, in the order they start (one at a time)."""
    sweep = _sweep(r, job)
    command = s.config.command or ""
    return ((t, i, buildCommand(command, sweep.exp, i, sweep.path)) for t, bundle in enumerate(job.manifest.tasks) for i in bundle)


def localScript(s: Session, r: Round, job: JobSpec) -> str:
    """A plain shell script of what one local job runs (``--dry-run --out``): no ``#SBATCH``, no runner."""
    lines = ["#!/bin/bash", f"# {job.tag}: what the local backend runs, {job.array_size} runner processes "
             f"({job.manifest.parallel} run(s) at a time in each); each run's stdout/stderr goes to "
             f"{s.relPath(os.path.join(s.logDir, job.tag))}/<index>.out|.err", f"cd {shlex.quote(s.root)}"]  # fmt: skip
    last = None
    for t, i, cmd in localCommands(s, r, job):
        if t != last:
            lines.append(f"# runner process {t}")
            last = t
        lines.append(f"{cmd}  # index {i}")
    return "\n".join(lines) + "\n"


def localPlan(s: Session, r: Round) -> str:
    """The dry run's plan of processes on the local backend."""
    out: list[str] = []
    assert r.planned is not None
    for job, _, _ in r.planned.jobs:
        runs = countRuns(job.manifest.tasks)
        limit = "" if job.time_limit_minutes is None else f"; a process still running after {job.time_limit_minutes} min is stopped"
        out.append(f"\n# {job.tag}: {runs} runs in {job.array_size} runner processes "
                   f"({job.manifest.parallel} at a time in each{limit}), from {s.relPath(s.root) or '.'}:")  # fmt: skip
        for t, i, cmd in islice(localCommands(s, r, job), SHOWN_COMMANDS):
            out.append(f"  [process {t}, index {i}] {cmd}")
        if runs > SHOWN_COMMANDS:
            out.append(f"  ... and {runs - SHOWN_COMMANDS} more (--out DIR writes them all)")
    return "\n".join(out) + "\n"


def localOutcome(s: Session, r: Round) -> list[dict[str, Any]]:
    """After the local backend ran the sent work here: look again (recording how each run ended) and say,
    per experiment, how many of the sent runs failed and how. Empty when nothing ran here."""
    if r.sent is None or not r.sent.submitted or not ranHere(s):
        return []
    sent: dict[str, set[int]] = {}
    for job, _ in r.sent.submitted:
        sent.setdefault(job.manifest.experiment, set()).update(i for t in job.manifest.tasks for i in t)
    with s.openLedger() as ledger:
        after = s.round(ledger, [st.sweep for st in r.standings], send=False)
    out = []
    for st in after.standings:
        mine = sorted(sent.get(st.sweep.path, ()))
        bad = [i for i in mine if st.status(i).state not in (State.DONE, State.QUEUED, State.RUNNING)]
        if mine:
            causes = Counter(str(st.status(i).cause or st.status(i).state) for i in bad)
            out.append({"experiment": st.sweep.shown, "ran": len(mine), "failed": len(bad), "indices": formatSpans(spans(bad)),
                        "causes": dict(sorted(causes.items())),
                        "final": sum(1 for i in bad if st.status(i).state is State.FINAL)})  # fmt: skip
    return out


def outcomeLines(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    for row in rows:
        if not row["failed"]:
            continue
        causes = ", ".join(f"{c} {n}" for c, n in row["causes"].items())
        again = "pyexputils retry" if row["final"] == row["failed"] else "pyexputils watch"
        out.append(f"{row['experiment']}: {row['failed']} of {row['ran']} runs failed ({causes}): {row['indices']}; "
                   f"`pyexputils errors {row['experiment']}` says why, `{again} {row['experiment']}` runs them again")  # fmt: skip
    return out


def submitJson(s: Session, r: Round, dry: bool, outcome: Sequence[dict[str, Any]], scripts: bool = False) -> dict[str, Any]:
    """``submit --json`` / ``retry --json``: the standing of each experiment, the plan, what was sent."""
    from pyexputils.cli import statusRow  # here: pyexputils.cli imports this module

    arrays = r.planned.plan.arrays if r.planned else []
    jobs: list[dict[str, Any]] = []
    if r.planned is not None:
        sentIds = {job.tag: jobId for job, jobId in (r.sent.submitted if r.sent else [])}
        for (job, res, sweep), arr in zip(r.planned.jobs, arrays):
            if not dry and job.tag not in sentIds:
                continue
            entry: dict[str, Any] = {
                "experiment": sweep.shown, "tag": job.tag, "job": sentIds.get(job.tag), "tasks": job.array_size,
                "runs": countRuns(job.manifest.tasks),
                "indices": formatSpans(taskSpans(job.manifest.tasks)),
                "time_minutes": job.time_limit_minutes, "parallel": job.manifest.parallel,
            }  # fmt: skip
            if not isLocal(s):
                entry["cpus_per_task"] = job.cpus_per_task
                entry.update(settings=arr.label or None, runs_per_task=arr.runs_per_task,  # what it costs (issue 12)
                             predicted_task_s=None if arr.predicted_s is None else round(arr.predicted_s, 1),
                             core_hours=round(arr.coreMinutes() / 60, 4) if arr.time_minutes else None,
                             core_hours_predicted=None if arr.predicted_core_minutes is None else round(arr.predicted_core_minutes / 60, 4))  # fmt: skip
            if scripts:
                entry["script"] = localScript(s, r, job) if isLocal(s) else job.script
            jobs.append(entry)
    out: dict[str, Any] = {
        "backend": s.backend.name, "dry_run": dry, "experiments": [statusRow(s, st) for st in r.standings],
        "planned": sum(a.runs for a in arrays), "jobs": jobs,
        "notes": list(r.planned.plan.notes) if r.planned else [],
        "deferred": {s.relPath(k): formatSpans(indexSpans(v)) for k, v in r.planned.plan.deferred.items()} if r.planned else {},
        "adopted": list(r.snapshot.adopted),
        "rejected": r.sent.rejected if r.sent else None, "queue_full": r.sent.full if r.sent else None,
    }  # fmt: skip
    if not isLocal(s):
        out["core_hours"] = round(sum(a.coreMinutes() for a in arrays) / 60, 3)
    if outcome:
        out["ran"] = list(outcome)
    return out
