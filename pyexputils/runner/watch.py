"""Watch: keep a sweep going until every index has its result or a final cause.

One round (every ``poll`` seconds):

1. ask the backend once for its live tasks (one ``squeue``, which also shows tasks that ended less than
   MinJobAge ago) and, where the site has accounting, once for how the unresolved jobs ended (one
   ``sacct``); if Slurm cannot be asked, say so, back off and ask again: "cannot ask" never means "gone";
2. adopt live jobs the ledger lacks (a watch or submit killed between sbatch and the ledger);
3. per experiment: list the missing indices (one listing per folder); for each, classify its latest
   attempt (:mod:`pyexputils.runner.causes`) from the scheduler, the runner's status file and the disk,
   record the verdict in the ledger, and let the policy (:mod:`pyexputils.runner.policy`) decide:
   resubmit (more time after TIMEOUT, more memory after OUT_OF_MEMORY, the same after PREEMPTED,
   NODE_FAIL, VANISHED) or stop with a final cause;
4. submit what is to be resubmitted, grouped by resources, through the same plan and ledger as ``submit``.

An index is resubmitted only once its latest attempt is known to have ended (not live in squeue): one
index never runs twice at the same time. The ledger's lock is held for the whole watch; a second watch
(or submit) on the same results root refuses while it runs. Killed at any point and started again, a
watch finds everything in the ledger, the manifests and the queue.
"""
from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

import numpy as np

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.runner.backend import Backend, BackendError, JobSpec, LiveTask, SubmitRejected
from pyexputils.runner.causes import Evidence, Verdict, classify
from pyexputils.runner.ledger import Ledger, LedgerBusy, manifestPath
from pyexputils.runner.manifest import Manifest
from pyexputils.results import doneMask
from pyexputils.runner.plan import PlanOptions
from pyexputils.runner.policy import Decision, Policy, Resources, decide
from pyexputils.runner.status import IndexOutcome, outcomes
from pyexputils.runner.submit import (
    Group,
    SubmitOptions,
    adopt,
    adoptOrphans,
    load,
    makeJobs,
    relPath,
    resultsRoot,
    sendJobs,
)

BACKOFF_S = (5.0, 10.0, 20.0, 40.0, 60.0)


@dataclass
class WatchOptions:
    runs: int = 1
    poll: float = 10.0  # seconds between rounds
    timeout: float | None = None  # give up after this many seconds (exit 3)
    quiet: bool = False  # no progress line, only log lines
    json: bool = False  # one JSON event per line on stdout
    submit: SubmitOptions = field(default_factory=SubmitOptions)


@dataclass(frozen=True)
class Final:
    """An index that ended with a cause retrying cannot fix."""

    experiment: str
    index: int
    cause: str
    reason: str
    log: str | None  # the stderr log of its last attempt


@dataclass
class Tally:
    """Where a sweep stands after one round."""

    total: int = 0
    done: int = 0
    active: int = 0
    resubmitted: int = 0
    deferred: int = 0
    finals: list[Final] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)  # verdicts recorded so far, by cause

    @property
    def live(self) -> int:
        """Indices queued or running after this round (its own submissions included)."""
        return self.active + self.resubmitted

    @property
    def settled(self) -> bool:
        return self.active == 0 and self.resubmitted == 0 and self.deferred == 0


class Display:
    """A live progress line on a terminal; plain log lines otherwise; JSON events with ``--json``."""

    def __init__(self, o: WatchOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> None:
        self.o = o
        self.out = out
        self.err = err
        self.live = not o.quiet and not o.json and err.isatty()
        self._last = ""

    def event(self, kind: str, **fields: Any) -> None:
        if self.o.json:
            self.out.write(json.dumps({"event": kind, "time": round(time.time(), 3), **fields}) + "\n")
            self.out.flush()

    def log(self, text: str) -> None:
        if self.o.json:
            return
        if self.live and self._last:
            self.err.write("\r\033[K")
        self.err.write(f"watch: {text}\n")
        if self.live and self._last:
            self.err.write(self._last)
        self.err.flush()

    def progress(self, t: Tally, note: str = "") -> None:
        causes = " ".join(f"{c}:{n}" for c, n in sorted(t.causes.items()) if c != "COMPLETED")
        pct = t.done / t.total if t.total else 1.0
        bar = "#" * int(pct * 30) + "-" * (30 - int(pct * 30))
        line = (
            f"[{bar}] {t.done}/{t.total} done, {t.live} queued/running, {len(t.finals)} final"
            + (f" | ended so far: {causes}" if causes else "")
            + (f" | {note}" if note else "")
        )
        self.event("progress", total=t.total, done=t.done, active=t.live, submitted=t.resubmitted, deferred=t.deferred, final=len(t.finals), causes=dict(t.causes), note=note)
        if self.live:
            self._last = line
            self.err.write("\r\033[K" + line)
            self.err.flush()
        elif not self.o.json and not self.o.quiet and line != self._last:
            self._last = line
            self.err.write(f"watch: {line}\n")
            self.err.flush()

    def close(self) -> None:
        if self.live and self._last:
            self.err.write("\n")
            self.err.flush()


class Watcher:
    """One ``watch``: see the module docstring. ``run()`` returns the exit code (0 all done, 1 finals)."""

    def __init__(self, paths: Sequence[str], config: Config, backend: Backend, o: WatchOptions, display: Display) -> None:
        self.config = config
        self.backend = backend
        self.o = o
        self.d = display
        self.root = resultsRoot(config)
        self.submitOptions = SubmitOptions(**{**o.submit.__dict__, "runs": o.runs})
        self.loaded = load(paths, config, self.submitOptions)
        self.where = config.path or "config"
        self._outcomes: dict[tuple[str, int], dict[int, IndexOutcome]] = {}
        self._manifests: dict[str, Manifest | None] = {}
        self._policies: dict[str, tuple[Policy, PlanOptions, Resources]] = {}

    def _policy(self, full: str, exp: ExperimentDescription, block: dict[str, Any]) -> tuple[Policy, PlanOptions, Resources]:
        """The policy, plan options and first resources of one experiment (asks the backend's limits once)."""
        if full not in self._policies:
            where = (exp.path or full) if "slurm" in exp.description else self.where
            policy = Policy.fromOptions(block, where)
            opts = PlanOptions.fromSlurm(block, where)
            if policy.max_time_minutes is None:
                limits = self.backend.limits(str(block["partition"]) if block.get("partition") else None)
                if limits.max_time_minutes is not None:
                    policy = Policy(**{**policy.__dict__, "max_time_minutes": limits.max_time_minutes})
            base = Resources(opts.time_minutes, opts.mem_mb, "mem") if opts.mem_mb is not None else _memPerCpu(opts)
            self._policies[full] = (policy, opts, base)
        return self._policies[full]

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        try:
            ledger = Ledger.open(self.root, wait=0)
        except LedgerBusy as e:
            raise LedgerBusy(f"{e} (is another watch running on {relPath(self.root)}?)") from None
        start = time.monotonic()
        failures = 0
        try:
            while True:
                tally = self.round(ledger)
                if tally is None:  # Slurm could not be asked
                    pause = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                    failures += 1
                    self.d.log(f"Slurm is not answering; trying again in {pause:.0f} s")
                    self._sleep(min(pause, self.o.poll * 2), start)
                    continue
                failures = 0
                if tally.settled:
                    return self.report(tally)
                if self.o.timeout is not None and time.monotonic() - start > self.o.timeout:
                    self.d.log(f"gave up after {self.o.timeout:.0f} s with {tally.live} indices still queued/running")
                    self.d.event("timeout", active=tally.live)
                    return 3
                self._sleep(self.o.poll, start)
        finally:
            self.d.close()
            ledger.close()

    def _sleep(self, seconds: float, start: float) -> None:
        if self.o.timeout is not None:
            seconds = max(0.0, min(seconds, self.o.timeout - (time.monotonic() - start) + 0.1))
        time.sleep(seconds)

    def report(self, t: Tally) -> int:
        self.d.event("end", total=t.total, done=t.done, final=[f.__dict__ for f in t.finals])
        if not t.finals:
            self.d.log(f"all {t.total} runs done")
            return 0
        self.d.log(f"{t.done}/{t.total} runs done; {len(t.finals)} ended with a final cause:")
        for f in t.finals[:50]:
            self.d.log(f"  {relPath(f.experiment)} index {f.index}: {f.cause} ({f.reason}); log {f.log or '-'}")
        if len(t.finals) > 50:
            self.d.log(f"  ... and {len(t.finals) - 50} more (pyexputils status --json)")
        return 1

    # --- one round ---------------------------------------------------------------------------------
    def round(self, ledger: Ledger) -> Tally | None:
        try:
            live = self.backend.query()
            unresolved = ledger.unresolvedJobs()
            ended = self.backend.ended(unresolved) if unresolved else {}
        except BackendError as e:
            self.d.event("unreachable", error=str(e))
            return None
        for tag in adopt(ledger, live, self.root, self.backend.name) + adoptOrphans(ledger, live, self.root, self.backend.name):
            self.d.log(f"adopted {tag} (submitted by a process that stopped before recording it)")
        states = _liveStates(live)
        self._outcomes.clear()
        self._manifests.clear()
        tally = Tally()
        groups: list[Group] = []
        try:
            for full, exp, block in self.loaded[0]:
                groups += self._experiment(ledger, full, exp, block, states, ended, tally)
        except BackendError as e:
            self.d.event("unreachable", error=str(e))
            return None
        if groups:
            try:
                jobs, deferred = makeJobs(self.loaded, self.config, self.backend, self.submitOptions, groups)
                tally.deferred = deferred
                submitted, rejected = sendJobs(ledger, self.backend, jobs, self.root, self._submitted)
            except SubmitRejected:
                raise
            except BackendError as e:  # sbatch kept failing (transient errors): what went through is recorded
                self.d.event("unreachable", error=str(e))
                return None
            tally.resubmitted += sum(len(t) for job, _ in submitted for t in job.manifest.tasks)
            if rejected:
                raise PyExpUtilsError(rejected)
            self.backend.finish()
        tally.causes = Counter(ledger.causeCounts())
        self.d.progress(tally)
        return tally

    def _experiment(
        self, ledger: Ledger, full: str, exp: ExperimentDescription, block: dict[str, Any],
        states: dict[tuple[str, int | None], str], ended: dict[tuple[str, int | None], str], tally: Tally,
    ) -> list[Group]:  # fmt: skip
        policy, opts, base = self._policy(full, exp, block)

        done = doneMask(exp, self.o.runs)
        tally.total += int(done.size)
        tally.done += int(done.sum())
        latest = ledger.latest(full)
        history = ledger.verdicts(full)
        resolved = ledger.resolvedAttempts(full)
        resources = ledger.runResources()
        cancelled = ledger.cancelledTags()
        newVerdicts: list[tuple[int, int, Verdict]] = []
        todo: dict[Resources, list[int]] = {}
        for idx in np.flatnonzero(~done).tolist():
            a = latest.get(idx)
            if a is None:
                todo.setdefault(base, []).append(idx)
                continue
            hist = history.get(idx, [])
            if a.attempt not in resolved.get(idx, ()):
                state = states.get((a.job_id, a.task)) or states.get((a.job_id, None)) or ended.get((a.job_id, a.task))
                outcome = self._outcome(a.tag, a.task).get(idx)
                v = classify(Evidence(False, state, outcome, userCancelled=a.tag in cancelled))
                if v.cause == "ACTIVE":
                    tally.active += 1
                    continue
                newVerdicts.append((idx, a.attempt, v))
                hist = hist + [v]
            current = resources.get(a.tag, base)
            d: Decision = decide(hist, current, policy)
            if d.resources is None:
                log = self._log(a.tag, idx)
                tally.finals.append(Final(full, idx, d.final or hist[-1].cause, d.reason, log))
                continue
            todo.setdefault(d.resources, []).append(idx)
        # done indices whose latest attempt has no verdict yet: COMPLETED, for the history
        doneIdx = np.flatnonzero(done)
        if latest and doneIdx.size:
            for idx in doneIdx.tolist():
                a = latest.get(idx)
                if a is not None and a.attempt not in resolved.get(idx, ()):
                    newVerdicts.append((idx, a.attempt, Verdict("COMPLETED", True)))
        if newVerdicts:
            ledger.addVerdicts(full, newVerdicts)
            for idx, attempt, v in newVerdicts:
                if v.cause != "COMPLETED":
                    self.d.event("ended", experiment=full, index=idx, attempt=attempt, cause=v.cause, exit=v.exit)
        return [Group(full, idx, _withResources(opts, res), res) for res, idx in todo.items()]

    def _submitted(self, job: JobSpec, jobId: str) -> None:
        n = sum(len(t) for t in job.manifest.tasks)
        res = " ".join(f"{k} {job.options[k]}" for k in ("time", "mem", "mem_per_cpu") if job.options.get(k) is not None)
        self.d.log(f"submitted {n} run{'s' if n != 1 else ''} of {relPath(job.manifest.experiment)} as job {jobId} (attempt {job.manifest.attempt}, {res or 'default resources'})")
        self.d.event("submitted", experiment=job.manifest.experiment, tag=job.tag, job=jobId, runs=n,
                     indices=sorted(i for t in job.manifest.tasks for i in t), attempt=job.manifest.attempt,
                     time_limit=job.options.get("time"), mem=job.options.get("mem") or job.options.get("mem_per_cpu"))  # fmt: skip

    def _outcome(self, tag: str, task: int) -> dict[int, IndexOutcome]:
        key = (tag, task)
        if key not in self._outcomes:
            m = self._manifest(tag)
            self._outcomes[key] = outcomes([m.statusPath(task)]) if m is not None else {}
        return self._outcomes[key]

    def _manifest(self, tag: str) -> Manifest | None:
        """The manifest of ``tag`` (read once per round), None when it cannot be read."""
        if tag not in self._manifests:
            try:
                self._manifests[tag] = Manifest.read(manifestPath(self.root, tag))
            except PyExpUtilsError:
                self._manifests[tag] = None
        return self._manifests[tag]

    def _log(self, tag: str, idx: int) -> str | None:
        m = self._manifest(tag)
        if m is None:
            return None
        return relPath(m.logPaths(idx)[1])


def _liveStates(live: Sequence[LiveTask]) -> dict[tuple[str, int | None], str]:
    return {(t.job_id, t.task): t.state for t in live}


def _memPerCpu(opts: PlanOptions) -> Resources:
    from pyexputils.runner.resources import parseMemMB

    mpc = opts.sbatch.get("mem_per_cpu")
    return Resources(opts.time_minutes, parseMemMB(mpc) if mpc is not None else None, "mem_per_cpu")


def _withResources(opts: PlanOptions, res: Resources) -> PlanOptions:
    """``opts`` asking ``res`` per run."""
    sbatch = dict(opts.sbatch)
    mem = opts.mem_mb
    if res.mem_key == "mem_per_cpu" and res.mem_mb is not None:
        sbatch["mem_per_cpu"] = f"{res.mem_mb}M"
    elif res.mem_mb is not None:
        mem = res.mem_mb
    return PlanOptions(**{**opts.__dict__, "time_minutes": res.minutes, "mem_mb": mem, "sbatch": sbatch})


def watch(paths: Sequence[str], config: Config, backend: Backend, o: WatchOptions) -> int:
    """Run a watch to its end; the exit code (0 all done, 1 some final causes, 3 gave up)."""
    return Watcher(paths, config, backend, o, Display(o)).run()


__all__ = ["Final", "Tally", "WatchOptions", "Watcher", "watch"]
