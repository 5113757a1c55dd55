"""Watch: keep a sweep going until every index has its result or a final cause.

Round after round (a tenth of the watch's age apart, from 0.25 s up to ``poll``: :func:`nextPause`), one :meth:`pyexputils.runner.session.Session.round`: one look at the scheduler (one
``squeue``, plus one ``sacct`` where the site has it), every index judged
(:func:`pyexputils.runner.judge.judgeIndex`), newly known verdicts recorded, and what is to be sent (never
submitted, or ended without results and allowed another attempt by the policy) planned and submitted
through the same path as ``submit``. If Slurm cannot be asked, the watch says so and backs off: "cannot
ask" never means "gone". A full queue (a submit limit) is waited out, not an error.

An index is resubmitted only once no live task holds it: one index never runs twice at the same time. The
ledger's lock is held for the whole watch; a second watch (or submit) on the same results root refuses
while it runs. Killed at any point and started again, a watch finds everything in the ledger, the
manifests and the queue.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.backend import BackendError, JobSpec
from pyexputils.runner.bundles import countRuns
from pyexputils.runner.causes import Cause
from pyexputils.runner.inspect import formatSpans, taskSpans
from pyexputils.runner.judge import NewVerdicts, State
from pyexputils.runner.ledger import Ledger, LedgerBusy
from pyexputils.runner.session import Round, Session, Sweep

BACKOFF_S = (5.0, 10.0, 20.0, 40.0, 60.0)
SHOWN_FINALS = 10  # finals listed one per line at the end of a watch; `errors` groups them all
MIN_PAUSE_S = 0.25  # the shortest pause between rounds
AGE_SHARE = 0.1  # the next round comes this share of the watch's age later (at least MIN_PAUSE_S)


def nextPause(poll: float, roundSeconds: float, age: float) -> float:
    """Seconds until the next round: ``AGE_SHARE`` of the watch's ``age``, at least ``MIN_PAUSE_S`` (a sweep of
    seconds is followed closely, one of hours every ``poll`` seconds: the wait after the last result stays a
    small share of the sweep's time, and Slurm is asked about 10 x ln(T / 2.5 s) times in a watch's first T
    seconds); never less than the last round took (a watch spends at most half its time in rounds), at most
    ``poll``."""
    return min(poll, max(MIN_PAUSE_S, AGE_SHARE * age, roundSeconds))


@dataclass
class WatchOptions:
    runs: int | None = None  # None: as remembered from the last submit
    poll: float = 10.0  # at most this many seconds between rounds (sooner after a change: nextPause)
    timeout: float | None = None  # give up after this many seconds (exit 3)
    cli: Mapping[str, Any] = field(default_factory=dict)  # --runs-per-task, --parallel, --throttle
    rescan: float = 300.0  # list the whole results folder at most this often; between, only what ended is looked at


@dataclass(frozen=True)
class Final:
    """An index that ended with a cause retrying cannot fix."""

    experiment: str
    index: int
    cause: Cause
    reason: str
    log: str | None  # the stderr log of its last attempt


@dataclass
class Tally:
    """Where a sweep stands after one round."""

    total: int = 0
    done: int = 0
    active: int = 0  # queued or running before this round's submissions
    resubmitted: int = 0  # sent in this round
    deferred: int = 0  # to send, but no room in the queue now
    unknown: int = 0  # held back: a live job nothing here can resolve may run them
    finals: list[Final] = field(default_factory=list)
    causes: Counter[str] = field(default_factory=Counter)  # verdicts recorded so far, by cause

    @property
    def live(self) -> int:
        """Indices queued or running after this round (its own submissions included)."""
        return self.active + self.resubmitted

    @property
    def settled(self) -> bool:
        return self.live == 0 and self.deferred == 0 and self.unknown == 0


class Display(Protocol):
    """Where a watch reports (the command line's, or a quiet one)."""

    def event(self, kind: str, **fields: Any) -> None: ...
    def log(self, text: str) -> None: ...
    def progress(self, t: Tally, note: str = "") -> None: ...
    def close(self) -> None: ...


class Watcher:
    """One ``watch``: see the module docstring. ``run()`` returns the exit code (0 all done, 1 finals, 3 gave up)."""

    def __init__(self, session: Session, paths: Sequence[str], o: WatchOptions, display: Display) -> None:
        self.s = session
        self.paths = list(paths)
        self.o = o
        self.d = display
        self._said: set[str] = set()
        self.s.diskRescan = o.rescan

    def run(self) -> int:
        sweeps = self.s.load(self.paths, self.o.runs, self.o.cli, command=True)  # checked before anything is written
        ledger = self.openLedger()
        start = time.monotonic()
        failures = 0
        try:
            for sw in sweeps:
                if sw.runsNote:
                    self.d.log(f"{sw.shown}: {sw.runsNote}")
            while True:
                began = time.monotonic()
                tally = self.round(ledger, sweeps)
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
                    return self.timedOut(tally)
                self._sleep(nextPause(self.o.poll, time.monotonic() - began, began - start), start)
        finally:
            self.d.close()
            ledger.close()

    def openLedger(self) -> Ledger:
        """The ledger, locked for the whole watch (a watch never waits for another one)."""
        try:
            return self.s.openLedger(wait=0)
        except LedgerBusy as e:
            raise LedgerBusy(f"{e} (is another watch running on {self.s.relPath(self.s.state.resultsRoot)}? "
                             "pyexputils service status tells)") from None  # fmt: skip

    def timedOut(self, t: Tally) -> int:
        """``timeout`` seconds passed with the sweep not settled: exit 3."""
        self.d.log(f"gave up after {self.o.timeout:.0f} s with {t.live} indices still queued/running")
        self.d.event("timeout", active=t.live)
        return 3

    def _sleep(self, seconds: float, start: float) -> None:
        if self.o.timeout is not None:
            seconds = max(0.0, min(seconds, self.o.timeout - (time.monotonic() - start) + 0.1))
        time.sleep(seconds)

    def report(self, t: Tally) -> int:
        self.d.event("end", total=t.total, done=t.done, final=[{**f.__dict__, "cause": str(f.cause)} for f in t.finals])
        if not t.finals:
            self.d.log(f"all {t.total} runs done")
            return 0
        self.d.log(f"{t.done}/{t.total} runs done; {len(t.finals)} ended with a final cause:")
        for f in t.finals[:SHOWN_FINALS]:
            self.d.log(f"  {self.s.relPath(f.experiment)} index {f.index}: {f.cause} ({f.reason}); log {f.log or '-'}")
        exps = " ".join(sorted({self.s.relPath(f.experiment) for f in t.finals}))
        more = f"... and {len(t.finals) - SHOWN_FINALS} more; " if len(t.finals) > SHOWN_FINALS else ""
        self.d.log(f"  {more}pyexputils errors {exps} groups them by their error, pyexputils ls {exps} --state FINAL lists them")
        return 1

    def round(self, ledger: Ledger, sweeps: Sequence[Sweep]) -> Tally | None:
        """One round; None when the scheduler could not be asked (nothing was decided)."""
        try:
            r = self.s.round(ledger, sweeps, onSubmit=self._submitted)
        except BackendError as e:
            self.d.event("unreachable", error=str(e))
            return None
        finally:
            self.s.backend.finish()
        for tag in r.snapshot.adopted:
            self.d.log(f"adopted {tag} (submitted by a process that stopped before recording it)")
        tally = self.tally(r)
        tally.causes = Counter(ledger.causeCounts([s.path for s in sweeps]))
        self.d.progress(tally)
        return tally

    def tally(self, r: Round) -> Tally:
        t = Tally()
        for st in r.standings:
            ended = st.verdicts.failed() if isinstance(st.verdicts, NewVerdicts) else st.verdicts  # not one per completed index
            for idx, attempt, v in ended:
                if v.cause is not Cause.COMPLETED:
                    self.d.event("ended", experiment=st.sweep.path, index=idx, attempt=attempt, cause=str(v.cause), exit=v.exit)
            c = st.counts()
            t.total += st.sweep.total
            t.done += c[State.DONE]
            t.active += c[State.QUEUED] + c[State.RUNNING]
            t.unknown += c[State.UNKNOWN]
            if st.unknown and st.unknown not in self._said:
                self._said.add(st.unknown)
                self.d.log(f"{st.sweep.shown}: nothing of it is submitted while {st.unknown}")
            for i in st.indices([State.FINAL]):
                s = st.status(i)
                log = self.s.relPath(self.s.logPaths(s.tag, i)[1]) if s.tag else None
                t.finals.append(Final(st.sweep.path, i, s.cause or Cause.FAILED, s.reason, log))
        if r.planned is not None:
            t.deferred = r.planned.deferred
        if r.sent is not None:
            t.resubmitted = sum(countRuns(job.manifest.tasks) for job, _ in r.sent.submitted)
            if r.sent.rejected:
                raise PyExpUtilsError(r.sent.rejected)
            if r.sent.full:
                t.deferred += r.sent.unsent
                self.d.log(f"{r.sent.full}; {r.sent.unsent} runs wait for room (trying again next round)")
        return t

    def _submitted(self, job: JobSpec, jobId: str) -> None:
        """Said when a job is submitted; its indices as ranges (``0-99,140``, as ``submit --json`` says them):
        a line the size of its ranges, not of its runs."""
        n = countRuns(job.manifest.tasks)
        res = " ".join(f"{k} {job.options[k]}" for k in ("time", "mem", "mem_per_cpu") if job.options.get(k) is not None)
        self.d.log(f"submitted {n} run{'s' if n != 1 else ''} of {self.s.relPath(job.manifest.experiment)} as job {jobId} (attempt {job.manifest.attempt}, {res or 'default resources'})")  # fmt: skip
        self.d.event("submitted", experiment=job.manifest.experiment, tag=job.tag, job=jobId, runs=n,
                     indices=formatSpans(taskSpans(job.manifest.tasks)), attempt=job.manifest.attempt,
                     time_limit=job.options.get("time"), mem=job.options.get("mem") or job.options.get("mem_per_cpu"))  # fmt: skip


__all__ = ["Final", "Tally", "WatchOptions", "Watcher", "nextPause"]
