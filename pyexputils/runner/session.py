"""The session: one per command. It owns what a sweep's state is made of and answers for it.

A :class:`Session` is made from the project (the nearest ``config.json``/``config.yaml`` in the current
folder or above) and a backend name. It owns

- the project root, the results root and the state folder (:class:`pyexputils.runner.statedir.StateDir`);
- the experiments of the command (:class:`Sweep`): loaded, checked, with typed options
  (:mod:`pyexputils.runner.options`) and their runs (``--runs``, else those remembered from the last
  submit, else 1);
- the backend (asked for its limits once per partition);
- :meth:`Session.snapshot`: one look at the scheduler (live tasks, how unresolved jobs ended), with the
  live tasks resolved to indices through the ledger (or a manifest), jobs the ledger lacks adopted;
- :meth:`Session.standing`: one verdict per index, joining the disk, the ledger, the snapshot and the
  runner's status files through :func:`pyexputils.runner.judge.judgeIndex`;
- :meth:`Session.plan` and :meth:`Session.send`: plan, render, write manifests and scripts, submit, record.

``submit``, ``watch``, ``status``, ``show``, ``missing``, ``cancel`` and ``retry`` are loops over these.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import partial
from importlib import resources as pkgfiles
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pyexputils.errors import ConfigError, ExperimentError, PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription, getConfig
from pyexputils.models.loader import loadMapping
from pyexputils.results import doneMask
from pyexputils.results.indices import doneAt
from pyexputils.runner.backend import JOB_PREFIX, Backend, JobSpec, Limits, LiveTask, QueueFull, SubmitRejected
from pyexputils.runner.bundles import Bundles, IndexSet, countRuns, splitBySetting
from pyexputils.runner.causes import RUNNING_STATES, Cause, Evidence, Verdict, isLive, normaliseState
from pyexputils.runner.command import checkCommand
from pyexputils.runner.durations import Durations, SubmissionInfo
from pyexputils.runner.judge import CHUNK, NO_EVIDENCE, PENDING_STATES, Facts, IndexStatus, Judged, LiveIndices, Spans, State, completedRuns, indexSpans, judgeAll
from pyexputils.runner.ledger import Ledger, LedgerView, Submission, TaskRange
from pyexputils.runner.packed import Packed
from pyexputils.runner.manifest import Manifest, writeAtomic
from pyexputils.runner.options import ExperimentOptions, parseSlurm, settingGroups
from pyexputils.runner.plan import ArrayPlan, Plan, Request, plan
from pyexputils.runner.planfit import Measured, fit
from pyexputils.runner.policy import Measure, Resources
from pyexputils.runner.render import checkLogPath, checkTemplate, makeTag, newSubmissionId, outputPath, renderScript, sbatchOptions, slug  # fmt: skip
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.outcomes import Outcomes

_TAG = re.compile(r"^(?P<slug>.+)-\d{14}[0-9a-f]{4}-\d+$")


def tagSlug(tag: str) -> str | None:
    """The experiment part of a tag (``sarsa`` of ``sarsa-20240101120000ab12-0``)."""
    m = _TAG.match(tag)
    return m.group("slug") if m else None


@dataclass
class Sweep:
    """One experiment of the command."""

    path: str  # absolute, symlinks resolved: its key in the ledger
    shown: str  # as the user gave it
    exp: ExperimentDescription
    options: ExperimentOptions
    runs: int
    runsNote: str = ""  # how the runs were chosen, when it is worth saying
    remembered: int | None = None  # the runs the ledger holds for it
    measured: Durations | None = None  # its measured run times (Session.measure)

    @property
    def total(self) -> int:
        return self.exp.numPermutations() * self.runs

    @property
    def slug(self) -> str:
        name, file = self.exp.getExperimentName(), self.exp.getFileName()
        return slug(file if name == file else f"{name}-{file}")


@dataclass
class Snapshot:
    """One look at the scheduler, resolved to indices."""

    live: dict[str, LiveIndices]  # experiment -> the indices live tasks hold (read as {index: state})
    ended: dict[tuple[str, int | None], str]  # (job id, task) -> how it ended, where the scheduler still knows
    unresolved: list[LiveTask]  # live tasks of ours whose indices nothing here knows
    preemptible: bool
    jobs: dict[str, set[str]] = field(default_factory=dict)  # experiment -> job ids of its live tasks
    ending: set[str] = field(default_factory=set)  # job ids with a task being stopped (COMPLETING)
    adopted: list[str] = field(default_factory=list)  # tags adopted into the ledger in this look


class StatusMap(Mapping[int, IndexStatus]):
    """``Standing.statuses``: the indices with an attempt or in a live task, each built on demand."""

    def __init__(self, judged: Judged) -> None:
        self._j = judged
        self._keys: npt.NDArray[np.int64] | None = None

    def keys_(self) -> npt.NDArray[np.int64]:
        if self._keys is None:
            mask = self._j.facts.view.attempt > 0
            self._j.facts.live.fill(mask, True)
            self._keys = np.flatnonzero(mask).astype(np.int64)
        return self._keys

    def __getitem__(self, i: int) -> IndexStatus:
        if i not in self:
            raise KeyError(i)
        return self._j.status(int(i))

    def __contains__(self, i: object) -> bool:
        if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self._j.facts.n:
            return False
        return bool(self._j.facts.view.attempt[int(i)] > 0) or int(i) in self._j.facts.live

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys_().tolist())

    def __len__(self) -> int:
        return len(self.keys_())


@dataclass
class Standing:
    """Where every index of one sweep stands (see :func:`pyexputils.runner.judge.judgeAll`): a state per
    index in an array; an :class:`IndexStatus` is built only for the indices asked about."""

    sweep: Sweep
    onDisk: npt.NDArray[np.bool_]  # the seed's rule, per index
    statuses: Mapping[int, IndexStatus]  # indices with an attempt or in a live task
    verdicts: Sequence[tuple[int, int, Verdict]]  # newly known verdicts (index, attempt, verdict): to record
    unknown: str | None = None  # why its indices cannot be submitted now
    judged: Judged | None = None

    @property
    def _j(self) -> Judged:
        assert self.judged is not None
        return self.judged

    def status(self, index: int) -> IndexStatus:
        got = self._j.status(index)
        if self.unknown and got.state in PENDING_STATES:
            got = replace(got, state=State.UNKNOWN, reason=self.unknown)
        return got

    def latestTasks(self, idx: npt.NDArray[np.int64]) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The ``tag`` and ``task`` of :meth:`status` of the sorted indices ``idx``, as arrays (:meth:`Judged.latestTasks`)."""
        return self._j.latestTasks(idx)

    def counts(self) -> Counter[State]:
        c = self._j.counts()
        if self.unknown:
            c[State.UNKNOWN] += c.pop(State.MISSING, 0) + c.pop(State.RETRY, 0)
        return +c

    def causes(self, state: State) -> Counter[Cause]:
        return self._j.causes(state)

    def partial(self) -> int:
        return self._j.partial()

    def _shown(self, states: Iterable[State]) -> list[State]:
        """The judged states that show as ``states`` (with ``unknown``, MISSING and RETRY show as UNKNOWN)."""
        wanted = set(states)
        if self.unknown:
            shown = wanted - PENDING_STATES
            if State.UNKNOWN in wanted:
                shown |= PENDING_STATES
            wanted = shown
        return sorted(wanted)

    def indexArray(self, states: Iterable[State]) -> npt.NDArray[np.int64]:
        """The indices in ``states``, sorted, as an array (8 bytes an index)."""
        return self._j.indices(self._shown(states))

    def indexMask(self, states: Iterable[State]) -> npt.NDArray[np.bool_]:
        """True at the indices in ``states`` (a byte an index)."""
        return self._j.mask(self._shown(states))

    def indices(self, states: Iterable[State]) -> list[int]:
        return self.indexArray(states).tolist()  # type: ignore[no-any-return]

    def pending(self) -> dict[Resources, IndexSet]:
        """What ``submit``/``watch`` send: MISSING and RETRY indices, by the resources each asks (compact:
        a fresh sweep's MISSING indices are one range)."""
        if self.unknown:
            return {}
        retry: dict[Resources, list[int]] = {}
        base = self.sweep.options.base
        fresh = self._j.mask([State.MISSING])
        if fresh.any():
            retry[base] = []
        for i, s in self._j.slow.items():
            if s.state is State.RETRY:
                retry.setdefault(s.resources or base, []).append(i)
        out = {r: IndexSet.of(sorted(v)) for r, v in retry.items() if r != base}
        if base in retry:
            fresh[retry[base]] = True
            out = {base: IndexSet.fromMask(fresh), **out}
        return {r: out[r] for r in retry}


@dataclass(frozen=True)
class Batch:
    """Indices of one sweep to submit asking ``resources`` per run."""

    sweep: Sweep
    indices: Sequence[int]
    resources: Resources


@dataclass(frozen=True)
class _Part:
    """Indices of one batch that share their options (``slurm.by``)."""

    sweep: Sweep
    indices: Sequence[int]
    resources: Resources
    options: ExperimentOptions


@dataclass
class Planned:
    """What a submit would send: the plan, its jobs (rendered), and the limits that shaped it."""

    plan: Plan
    jobs: list[tuple[JobSpec, Resources, Sweep]]
    limits: Limits
    deferred: int = 0


@dataclass
class Sent:
    submitted: list[tuple[JobSpec, str]] = field(default_factory=list)
    rejected: str | None = None  # the scheduler's refusal (the rest was not sent)
    full: str | None = None  # the queue took no more (the rest was not sent, it may go later)
    unsent: int = 0  # indices not sent because of either


@dataclass
class Round:
    """One look at a sweep: the scheduler, every index's standing, and what was planned and sent."""

    snapshot: Snapshot
    standings: list[Standing]
    planned: Planned | None = None
    sent: Sent | None = None
    measured: dict[str, Durations] = field(default_factory=dict)  # experiment -> its measurements


class Session:
    """See the module docstring."""

    def __init__(self, config: Config | None = None, backend: str | Backend | None = None, python: str = sys.executable) -> None:  # fmt: skip
        self.config = config if config is not None else getConfig()
        self.where = self.config.path or "config"
        self.root = self.config.root
        self.state = StateDir(self.config.underRoot(self.config.results_root))
        self.logDir = self.config.underRoot(self.config.log_path)
        self.python = python
        self._backend: Backend | None = backend if isinstance(backend, Backend) else None
        self._backendName = backend if isinstance(backend, str) else None
        self._limits: dict[str | None, Limits] = {}
        self._templates: dict[str | None, str] = {}
        self._provenance: dict[str, object] | None = None
        # a session that looks again and again (watch): the whole results folder is listed at most every
        # ``diskRescan`` seconds; between, only the indices whose attempt ended since are looked at
        self.diskRescan: float | None = None
        self._disk: dict[str, tuple[float, int, npt.NDArray[np.bool_]]] = {}

    # --- the project ------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """``--backend``, else the config's; with ``auto``, the one the last submission here used (so
        that a sweep run locally on a machine with Slurm is still looked at locally), else Slurm when it
        answers, else local."""
        if self._backend is None:
            name = self._backendName
            if name in (None, "auto") and self.config.backend == "auto":
                name = self._lastBackend() or name
            self._backend = makeBackend(self.config, name)
        return self._backend

    def _lastBackend(self) -> str | None:
        ledger = self.readLedger()
        if ledger is None:
            return None
        with ledger:
            return ledger.lastBackend()

    def relPath(self, path: str) -> str:
        """``path`` relative to the current folder when that is shorter."""
        rel = os.path.relpath(path)
        return path if rel.startswith("../..") else rel

    def readLedger(self) -> Ledger | None:
        return Ledger.read(self.state)

    def openLedger(self, wait: float = 30.0) -> Ledger:
        """The ledger for writing (its lock held); a wait for the lock is said on stderr."""
        return Ledger.open(self.state, wait=wait, onWait=lambda line: print(f"pyexputils: {line}", file=sys.stderr, flush=True))

    def load(self, paths: Sequence[str], runs: int | None = None, cli: Mapping[str, object] | None = None,
             ledger: Ledger | None = None, command: bool = False) -> list[Sweep]:  # fmt: skip
        """The experiments, checked (save paths, path components, options; with ``command``, for sending: the
        command and the partition); their runs: ``runs``, else those remembered in the ledger, else 1."""
        if not paths:
            raise PyExpUtilsError("no experiment files given")
        if command and not self.config.command:
            raise ConfigError(f"{self.where}: no command: say what one index runs, e.g. \"python main.py --exp {{experiment}} --idx {{index}}\"")  # fmt: skip
        checkLogPath(outputPath(self.logDir, "x", self.root), self.where)
        reader = ledger if ledger is not None else self.readLedger()
        out: list[Sweep] = []
        seen: set[str] = set()
        try:
            for shown in paths:
                if not os.path.isfile(shown):
                    raise PyExpUtilsError(f"{shown}: no such experiment file")
                full = os.path.realpath(shown)
                if full in seen:
                    continue
                seen.add(full)
                exp = ExperimentDescription(loadMapping(shown, ExperimentError), path=shown, config=self.config)
                remembered = reader.runs(full) if reader is not None else None
                n = runs if runs is not None else (remembered or 1)
                note = ""
                if runs is not None and remembered is not None and runs != remembered:
                    note = f"--runs {runs} (submitted with {remembered} runs before)"
                elif runs is None and remembered is not None:
                    note = f"{remembered} runs (remembered from its last submit)"
                checkSize(shown, exp.numPermutations(), n)
                exp.validateSavePath(n)
                exp.checkPathComponents(n)
                if command and self.config.command:
                    checkCommand(self.config.command, exp, self.where)
                own = exp.description.get("slurm", {})
                layers = [(self.config.slurm, self.where)] + ([(own, exp.path or full)] if "slurm" in exp.description else [])
                options = parseSlurm(layers, cli)
                if options.by:
                    settingGroups(exp, options.by, shown)  # a parameter or value the sweep lacks: said now
                if command:
                    self.limits(options)  # an unknown partition is bad input, found before anything is written
                out.append(Sweep(full, shown, exp, options, n, note, remembered))
        finally:
            if ledger is None and reader is not None:
                reader.close()
        return out

    # --- the scheduler ----------------------------------------------------------------------------
    def snapshot(self, ledger: Ledger | None, sweeps: Sequence[Sweep] = (), adopt: bool = False) -> Snapshot:
        """One ``query`` (and, with a ledger, one ``ended`` for its unresolved jobs), resolved to indices.
        ``adopt`` (a writable ledger): record live jobs and orphan manifests the ledger lacks."""
        b = self.backend
        liveTasks = b.query()
        adopted: list[str] = []
        if adopt and ledger is not None:
            adopted = self._adopt(ledger, liveTasks)
        ended = b.ended(ledger.unresolvedJobs(b.name)) if ledger is not None else {}
        parts: dict[str, list[LiveIndices]] = {}
        jobs: dict[str, set[str]] = {}
        unresolved: list[LiveTask] = []
        byTag: dict[str, list[LiveTask]] = {}
        for t in liveTasks:
            if t.tag is not None and isLive(t.state):
                byTag.setdefault(t.tag, []).append(t)
        for tag, tasks in byTag.items():
            found = self._resolveRanges(ledger, tag)
            if found is None:
                unresolved += tasks
                continue
            experiment, rows = found
            jobs.setdefault(experiment, set()).update(t.job_id for t in tasks)
            whole = any(t.task is None for t in tasks)  # the whole job: every task of it
            running = [t.task for t in tasks if normaliseState(t.state) in RUNNING_STATES]
            heldTasks = None if whole else [t.task for t in tasks if t.task is not None]
            runTasks = None if None in running else [r for r in running if r is not None]
            plain, packed = [r for r in rows if r[4] is None], [r for r in rows if r[4] is not None]
            held, run = heldRanges(plain, heldTasks), heldRanges(plain, runTasks)
            if packed:  # a fitted plan's classes: scattered indices, as masks
                parts.setdefault(experiment, []).append(LiveIndices(held, run, heldMask(packed, heldTasks), heldMask(packed, runTasks)))
            else:
                parts.setdefault(experiment, []).append(LiveIndices(held, run))
        live = {experiment: LiveIndices.merge(p) for experiment, p in parts.items()}
        ours = {s.slug for s in sweeps}
        here = os.path.realpath(self.root)
        unresolved = [t for t in unresolved if (tagSlug(t.tag or "") in ours or not sweeps)
                      and (t.workdir is None or os.path.realpath(t.workdir) == here)]  # not another project's  # fmt: skip
        ending = {t.job_id for t in liveTasks if t.state in ("COMPLETING", "SIGNALING")}
        return Snapshot(live, ended, unresolved, b.preemptible(), jobs=jobs, ending=ending, adopted=adopted)

    def _resolveRanges(self, ledger: Ledger | None, tag: str) -> tuple[str, list[TaskRange]] | None:
        """(experiment, its attempt ranges (lo, n, task, per)) of a live tag: from the ledger, else from its manifest."""
        if ledger is not None:
            found = ledger.taskRangesOf(tag)
            if found is not None and found[1]:
                return found
        try:
            m = Manifest.read(self.state.manifest(tag))
        except PyExpUtilsError:
            return None
        if isinstance(m.tasks, Bundles):  # a plan's: its ranges, without a list per task
            return m.experiment, [(lo, n, task, per, None if p is None else Packed(p)) for lo, n, task, per, _, p in m.tasks.attemptRanges(1)]
        rows: list[TaskRange] = []
        for task, bundle in enumerate(m.tasks):  # a range of its own for each run of contiguous indices
            lo, hi = indexSpans(np.asarray(bundle, dtype=np.int64))
            rows += [(a, b - a, task, b - a, None) for a, b in zip(lo.tolist(), hi.tolist())]
        return m.experiment, rows

    def _adopt(self, ledger: Ledger, live: Sequence[LiveTask]) -> list[str]:
        """Record what the ledger lacks: live jobs with a manifest (their submitter died between sbatch and
        the ledger), and manifests of jobs no longer live whose runner left status files (the job ran).
        A manifest with neither, older than a minute, is removed (sbatch was never reached)."""
        known = ledger.tags()
        adopted: list[str] = []
        for t in live:
            if t.tag is None or t.tag in known or t.tag in adopted or not os.path.isfile(self.state.manifest(t.tag)):
                continue
            try:
                m = Manifest.read(self.state.manifest(t.tag))
            except PyExpUtilsError:
                continue
            ledger.adopt(m, self.state.manifest(t.tag), t.job_id, self.backend.name)
            adopted.append(t.tag)
        liveTags = {t.tag for t in live if t.tag}
        if os.path.isdir(self.state.manifests):
            for entry in os.scandir(self.state.manifests):
                tag = entry.name[: -len(".json")]
                if not entry.name.endswith(".json") or entry.name.startswith(".") or tag in known or tag in liveTags:
                    continue
                try:
                    m = Manifest.read(entry.path)
                except PyExpUtilsError:
                    continue
                if os.path.isdir(self.state.statusOf(tag)):
                    ledger.adopt(m, entry.path, "unknown", self.backend.name)
                    adopted.append(tag)
                elif time.time() - entry.stat().st_mtime > 60:
                    os.unlink(entry.path)
        return adopted

    def limits(self, options: ExperimentOptions) -> Limits:
        """The cluster's limits for the sweep's partition, with its block's overrides (asked once per partition)."""
        if options.partition not in self._limits:
            self._limits[options.partition] = self.backend.limits(options.partition)
        return options.withLimits(self._limits[options.partition])

    # --- the one verdict per index -----------------------------------------------------------------
    def standing(self, sweep: Sweep, snap: Snapshot, ledger: Ledger | None) -> Standing:
        """Every index of ``sweep``: the disk, the ledger, the snapshot and the status files, judged
        (:func:`pyexputils.runner.judge.judgeAll`). Costs a few array operations per sweep, plus what is
        to be judged one by one: the attempts that ended without completing, and those that ended since
        their verdicts were last recorded (their runner's status files are read: never a live task's)."""
        f = self.facts(sweep, snap, ledger)
        judged = judgeAll(f)
        unknown = None
        mine = [t for t in snap.unresolved if tagSlug(t.tag or "") == sweep.slug]
        if mine:
            jobs = sorted({t.job_id for t in mine})
            unknown = (f"job {', '.join(jobs)} ({JOB_PREFIX}{mine[0].tag}) is live and neither the ledger nor a manifest says "
                       f"which indices it runs: wait until it ends, or cancel it (scancel {' '.join(jobs)})")  # fmt: skip
        return Standing(sweep, f.onDisk, StatusMap(judged), judged.verdicts, unknown, judged)

    def onDisk(self, sweep: Sweep) -> tuple[npt.NDArray[np.bool_], bool]:
        """The seed's rule per index (:func:`pyexputils.results.doneMask`), and whether the results folder
        was listed now (False: the mask of an earlier listing, within ``diskRescan`` seconds)."""
        now = time.monotonic()
        got = self._disk.get(sweep.path)
        if self.diskRescan is not None and got is not None and got[1] == sweep.runs and now - got[0] < self.diskRescan:
            return got[2], False
        mask = doneMask(sweep.exp, sweep.runs)
        if self.diskRescan is not None:
            self._disk[sweep.path] = (now, sweep.runs, mask)
        return mask, True

    def facts(self, sweep: Sweep, snap: Snapshot, ledger: Ledger | None) -> Facts:
        """What is known of every index of ``sweep``, as arrays (:class:`pyexputils.runner.judge.Facts`)."""
        onDisk, walked = self.onDisk(sweep)
        n = len(onDisk)
        live = (snap.live.get(sweep.path) or LiveIndices()).clip(n)
        view = ledger.view(sweep.path, n) if ledger is not None else LedgerView.none(n)
        o = sweep.options
        measure = partial(self._measure, sweep)
        if ledger is None or not view.tags:
            return Facts(onDisk, live, view, o.base, o.policy, [], lambda i: NO_EVIDENCE, measure=measure)
        runRes = ledger.runResources()
        subs = {x.tag: x for x in ledger.submissions(sweep.path)}
        jobOf = [subs[t].job_id if t in subs else "unknown" for t in view.tags]
        cancelledTags = ledger.cancelledTags()
        cancelled = [t in cancelledTags for t in view.tags]
        # the runner's records of the latest attempts that ended unresolved (not live, no verdict, not reset)
        open_ = view.attempt > 0
        open_ &= view.recorded < 0
        live.fill(open_, False)
        for i, a in view.resets.items():
            if 0 <= i < n and 0 < view.attempt[i] <= a:
                open_[i] = False
        keys: set[int] = set()  # (submission, task) of each such attempt: its runner's file
        for a in range(0, n, CHUNK):  # index arrays a chunk at a time: nothing per index beyond the mask
            part = open_[a : a + CHUNK]
            if not part.any():
                continue
            idx = a + np.flatnonzero(part)
            if not walked:  # what can have changed on disk since the last listing
                onDisk[idx] = doneAt(sweep.exp, idx)
            keys.update(np.unique(view.tagOf(idx) << 32 | view.taskOf(idx)).tolist())
        files: dict[tuple[int, int], Outcomes] = {}
        runs: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]] = []  # ranges the runner says COMPLETED, verdict id
        table: dict[Verdict, int] = {}
        cancelledJobs = {job for (job, _), state in snap.ended.items() if normaliseState(state) == "CANCELLED"}
        for key in sorted(keys):
            t, task = key >> 32, key & 0xFFFFFFFF
            outs = files[(t, task)] = Outcomes.read([os.path.join(self.state.statusOf(view.tags[t]), f"{task}.jsonl")])
            if any(normaliseState(k[7]) == "CANCELLED" for k in outs.kindsUsed()):
                cancelledJobs.add(jobOf[t])
            for lo, hi, k in zip(outs.lo.tolist(), outs.hi.tolist(), outs.kind.tolist()):
                state, exit, *_, started, _ = outs.kinds[k]
                if state != Cause.COMPLETED or hi <= 0 or lo >= n:
                    continue
                vid = table.setdefault(Verdict(Cause.COMPLETED, started, exit), len(table))
                for c in range(max(lo, 0), min(hi, n), CHUNK):  # those of its indices whose latest attempt this file holds
                    idx = c + np.flatnonzero(open_[c : min(c + CHUNK, hi, n)])
                    idx = idx[(view.tagOf(idx) == t) & (view.taskOf(idx) == task)]
                    if len(idx):
                        (clo, chi), _ = completedRuns(idx, np.zeros(len(idx), dtype=np.int16))
                        runs.append((clo, chi, vid))
        del open_
        for k, x in enumerate(view.table):  # an array of which a task was seen cancelled in an earlier round
            if x.cause is Cause.CANCELLED and x.started:
                for r in np.unique(view.row[view.recorded == k]).tolist():
                    cancelledJobs.add(jobOf[int(view.rows[3][r])])
        z = np.zeros(0, dtype=np.int64)
        doneLo, doneHi = np.concatenate([z, *(r[0] for r in runs)]), np.concatenate([z, *(r[1] for r in runs)])
        doneId = np.concatenate([np.zeros(0, dtype=np.int16), *(np.full(len(r[0]), r[2], dtype=np.int16) for r in runs)])
        order = np.argsort(doneLo, kind="stable")  # disjoint: an index's latest attempt is in one file
        done, doneId, doneTable = (doneLo[order], doneHi[order]), doneId[order], list(table)

        def evidence(i: int) -> Evidence:
            t, task = view.tagOf(i), view.taskOf(i)
            job = jobOf[t]
            outs = files.get((t, task))
            return Evidence(snap.ended.get((job, task)) or snap.ended.get((job, None)), None if outs is None else outs.get(i),
                            cancelled[t], bool(onDisk[i]), snap.preemptible, job in cancelledJobs, job in snap.ending)  # fmt: skip

        return Facts(onDisk, live, view, o.base, o.policy, [runRes.get(t, o.base) for t in view.tags], evidence,
                     done, doneId, doneTable, measure)  # fmt: skip

    def logPaths(self, tag: str, index: int) -> tuple[str, str]:
        """stdout and stderr of one index in one submission."""
        base = os.path.join(self.logDir, tag, str(index))
        return base + ".out", base + ".err"

    def round(self, ledger: Ledger | None, sweeps: Sequence[Sweep], send: bool = True, testOnly: bool = False,
              onSubmit: Callable[[JobSpec, str], None] | None = None, planning: bool = True) -> Round:  # fmt: skip
        """What ``submit`` does once and ``watch`` every round: look, judge every index, record the newly
        known verdicts, plan what is to be sent (MISSING and RETRY indices) and, with ``send`` and a
        writable ledger, send it. ``testOnly``: every script goes through ``sbatch --test-only`` first.
        ``planning=False`` (``status``, ``missing``, ``show``): look and judge only."""
        writable = ledger is not None and ledger.writable
        snap = self.snapshot(ledger, sweeps, adopt=writable)
        measured = self.measure(ledger, sweeps, snap, save=writable) if planning or send or writable else {}
        standings = [self.standing(s, snap, ledger) for s in sweeps]
        if writable:
            assert ledger is not None
            for st in standings:
                if st.verdicts:
                    ledger.addVerdicts(st.sweep.path, st.verdicts)
                if send and st.sweep.runs != st.sweep.remembered:  # a submit or watch remembers its runs
                    ledger.setRuns(st.sweep.path, st.sweep.runs)
                    st.sweep.remembered = st.sweep.runs
        batches = [Batch(st.sweep, idx, res) for st in standings for res, idx in st.pending().items()] if planning or send else []
        planned = self.plan(batches) if batches else None
        if testOnly and planned is not None:
            for job, _, _ in planned.jobs:
                self.backend.submit(job, test_only=True)
        sent = None
        if send and writable and planned is not None and planned.jobs:
            assert ledger is not None
            sent = self.send(ledger, planned, onSubmit)
        return Round(snap, standings, planned, sent, measured)

    # --- measured run times ------------------------------------------------------------------------
    def measure(self, ledger: Ledger | None, sweeps: Sequence[Sweep], snap: Snapshot, save: bool = False) -> dict[str, Durations]:  # fmt: skip
        """Each sweep's measurements (:mod:`pyexputils.runner.durations`) with the status files of its arrays
        that ended since folded in; written back with ``save`` (a writer: the ledger's lock is held)."""
        out: dict[str, Durations] = {}
        for sw in sweeps:
            d = Durations.load(self.state, sw.path, sw.exp.numPermutations())
            if ledger is not None:
                subs = [SubmissionInfo(x.tag, x.job_id, x.array_size, x.resources) for x in ledger.submissions(sw.path)]
                d.refresh(self.state, subs, snap.jobs.get(sw.path, set()))
            if save and d.changed:
                try:
                    d.save()
                except OSError as e:
                    print(f"pyexputils: {d.path}: measurements not saved ({e.strerror})", file=sys.stderr)
            sw.measured = out[sw.path] = d
        return out

    def _measure(self, sweep: Sweep, index: int) -> Measure | None:
        """What runs of ``index``'s setting measured, in the units of its resources (memory per CPU with
        ``mem_per_cpu``)."""
        m = sweep.measured.measure(index) if sweep.measured is not None else None
        if m is not None and m.mem_mb is not None and sweep.options.base.mem_key == "mem_per_cpu":
            m = Measure(m.p95_s, m.mem_mb / max(1, sweep.options.plan.cpus_per_task))
        return m

    # --- submitting ---------------------------------------------------------------------------------
    def plan(self, batches: Sequence[Batch]) -> Planned:
        """Plan and render ``batches`` (writes nothing): split by the ``slurm.by`` options of their settings,
        fitted to measured run times where there are any, per partition, within the cluster's limits."""
        groups: dict[str | None, list[tuple[str, _Part]]] = {}
        for k, b in enumerate(batches):
            for part in self._parts(b):
                groups.setdefault(part.options.partition, []).append((f"{b.sweep.path}#{k}", part))
        queued = self.backend.queued() if groups else 0
        arrays: list[ArrayPlan] = []
        deferred: dict[str, list[IndexSet]] = {}
        notes: list[str] = []
        jobs: list[tuple[JobSpec, Resources, Sweep]] = []
        submission = newSubmissionId()
        counter = 0
        limits = Limits()
        measured: dict[str, Measured | None] = {}
        for b in batches:
            if b.sweep.path not in measured:
                measured[b.sweep.path] = b.sweep.measured.measured() if b.sweep.measured is not None else None
        for partition, items in groups.items():
            limits = self.limits(items[0][1].options)
            keyed = [(f"{key}#{n}", part) for n, (key, part) in enumerate(items)]
            requests = [Request(key, part.indices, part.options.withResources(part.resources)) for key, part in keyed]
            # first attempts and retries asking the same: fitted; an escalation asks what the policy chose
            sized = {key: measured[part.sweep.path] for key, part in keyed if part.resources == part.options.base}
            fitted, fitNotes = fit(requests, {k: m for k, m in sized.items() if m is not None}, limits.max_time_minutes)
            p = plan(fitted, limits, queued)
            queued += p.tasks
            arrays += [replace(a, key=a.key.rsplit("#", 1)[0]) for a in p.arrays]
            notes += fitNotes + p.notes
            for key, idx in p.deferred.items():
                deferred.setdefault(key.rsplit("#", 2)[0], []).append(idx)
            byKey = dict(keyed)
            for a in p.arrays:
                part = byKey[a.key]
                tag = makeTag(part.sweep.slug, submission, counter)
                counter += 1
                jobs.append((self._job(a, tag, part.sweep, part.resources, part.options), part.resources, part.sweep))
        whole = Plan(arrays, {k: IndexSet.union(v) for k, v in deferred.items()}, notes)
        return Planned(whole, jobs, limits, sum(len(v) for v in whole.deferred.values()))

    def _parts(self, b: Batch) -> list[_Part]:
        """``b``'s indices by the ``slurm.by`` options of their settings; a first attempt asks its group's
        resources, an escalation keeps what the policy chose."""
        if not len(b.indices):
            return []
        o = b.sweep.options
        if not o.by:
            return [_Part(b.sweep, b.indices, b.resources, o)]
        group, rules = settingGroups(b.sweep.exp, o.by, b.sweep.shown)
        out = []
        for g, members in enumerate(splitBySetting(IndexSet.of(b.indices), group, len(rules))):
            if len(members):
                v = o.variant(rules[g])
                res = v.base if b.resources == o.base else b.resources
                out.append(_Part(b.sweep, members, res, v))
        return out

    def _job(self, a: ArrayPlan, tag: str, sweep: Sweep, res: Resources, o: ExperimentOptions) -> JobSpec:
        opts = sbatchOptions(a, tag, outputPath(self.logDir, tag, self.root), o.plan.signal_seconds)
        manifest = Manifest(
            tag=tag, experiment=sweep.path, project=self.root, command=self.config.command or "", tasks=a.tasks,
            parallel=a.parallel, require=list(self.config.require), log_dir=self.logDir, status_dir=self.state.status,
            time_limit_s=None if res.minutes is None else res.minutes * 60,  # per run, as escalated
            job_time_limit_s=None if a.time_minutes is None else a.time_minutes * 60,
        )  # fmt: skip
        if o.plan.grace_s is not None:
            manifest.grace_s = o.plan.grace_s
        script = renderScript(self.template(o), a, opts, tag, self.state.manifest(tag), self.root, self.python, sweep.path)
        return JobSpec(
            tag=tag, manifest_path=self.state.manifest(tag), manifest=manifest, array_size=a.size, script=script,
            options=opts, time_limit_minutes=a.time_minutes, cpus_per_task=a.cpus_per_task, throttle=a.throttle,
            workdir=self.root,
        )  # fmt: skip

    def template(self, o: ExperimentOptions) -> str:
        """The sbatch template: ``slurm.template``, else ``<project>/templates/sbatch.sh``, else the package's."""
        if o.template not in self._templates:
            self._templates[o.template] = self._loadTemplate(o)
        return self._templates[o.template]

    def _loadTemplate(self, o: ExperimentOptions) -> str:
        candidates = []
        if o.template:
            path = self.config.underRoot(o.template)
            if not os.path.isfile(path):
                raise ConfigError(f"{o.where.get('template', self.where)}: slurm.template {o.template!r}: no such file")
            candidates.append(path)
        candidates.append(os.path.join(self.root, "templates", "sbatch.sh"))
        for path in candidates:
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                checkTemplate(text, path)
                return text
        return pkgfiles.files("pyexputils").joinpath("templates/sbatch.sh").read_text(encoding="utf-8")

    def send(self, ledger: Ledger, planned: Planned, onSubmit: Callable[[JobSpec, str], None] | None = None) -> Sent:
        """For each job: attempt numbers, manifest and script written, log folder made, per-run resources
        recorded (before sbatch: a job whose submitter dies right after is adopted with them), submitted,
        recorded. Stops at a refusal (``rejected``) or a full queue (``full``)."""
        sent = Sent()
        for k, (job, res, sweep) in enumerate(planned.jobs):
            m = job.manifest
            attempts: Mapping[int, int] | npt.NDArray[np.int32]
            if isinstance(m.tasks, Bundles):  # a plan's: attempts as an array, no object per index
                attempts = ledger.nextAttemptArray(m.experiment, m.tasks.indices)
                m.attempt = int(attempts.max())
            else:
                attempts = ledger.nextAttempts(m.experiment, (i for t in m.tasks for i in t))
                m.attempt = max(attempts.values())
            m.skip_done = m.attempt == 1  # an index run again is not skipped for what its folder holds
            try:
                m.write(job.manifest_path)
                writeAtomic(self.state.script(job.tag), job.script)
                os.makedirs(os.path.join(m.log_dir, job.tag), exist_ok=True)
            except OSError as e:
                raise PyExpUtilsError(f"{e.filename or self.state.path}: cannot write ({e.strerror}); nothing more was submitted") from None  # fmt: skip
            ledger.setResources(job.tag, res)
            try:
                jobId = self.backend.submit(job)
            except (SubmitRejected, QueueFull) as e:
                os.unlink(job.manifest_path)
                if isinstance(e, QueueFull):
                    sent.full = str(e)
                else:
                    sent.rejected = str(e)
                sent.unsent = sum(countRuns(j.manifest.tasks) for j, _, _ in planned.jobs[k:])
                return sent
            ledger.record(Submission(job.tag, jobId, self.backend.name, m.experiment, job.array_size, dict(job.options),
                                     m.attempt, time.time(), job.manifest_path, provenance=self.provenance()),
                          m.tasks, attempts)  # fmt: skip
            sent.submitted.append((job, jobId))
            if onSubmit is not None:
                onSubmit(job, jobId)
        return sent

    def provenance(self) -> dict[str, object]:
        """The project's git commit (and whether its tree was dirty), the command line, pyexputils' version."""
        if self._provenance is None:
            from pyexputils import __version__

            info: dict[str, object] = {"argv": sys.argv, "version": __version__}
            try:
                head = subprocess.run(["git", "-C", self.root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
                if head.returncode == 0:
                    info["git_commit"] = head.stdout.strip()
                    dirty = subprocess.run(["git", "-C", self.root, "status", "--porcelain", "--untracked-files=no"],
                                           capture_output=True, text=True, timeout=30)  # fmt: skip
                    info["git_dirty"] = bool(dirty.stdout.strip())
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._provenance = info
        return self._provenance


def heldRanges(rows: Sequence[TaskRange], tasks: Sequence[int] | None) -> Spans:
    """The index ranges that array ``tasks`` (None: all) hold, of attempt ranges (lo, n, task, per): index
    ``lo + k`` in task ``task + k // per``. Costs the ranges and the tasks, nothing per index."""
    lo, n, task, per = (np.asarray([r[k] for r in rows], dtype=np.int64) for k in range(4))
    if tasks is None:
        return lo, lo + n
    wanted = np.unique(np.asarray(tasks, dtype=np.int64))
    a = np.searchsorted(wanted, task)
    b = np.searchsorted(wanted, task + -(-n // per))
    whole = b - a == -(-n // per)  # every task of the range: the whole range (a range of one task, often)
    los, his = [lo[whole]], [(lo + n)[whole]]
    for k in np.flatnonzero((b > a) & ~whole).tolist():  # some of its tasks: by runs of consecutive tasks
        mine = wanted[a[k] : b[k]]
        brk = np.flatnonzero(np.diff(mine) != 1) + 1
        first, last = mine[np.append(0, brk)], mine[np.append(brk, len(mine)) - 1]
        los.append(lo[k] + (first - task[k]) * per[k])
        his.append(np.minimum(lo[k] + (last - task[k] + 1) * per[k], lo[k] + n[k]))
    return np.concatenate(los), np.concatenate(his)


def heldMask(rows: Sequence[TaskRange], tasks: Sequence[int] | None) -> npt.NDArray[np.bool_]:
    """The indices that array ``tasks`` (None: all) hold, of packed attempt rows (lo, n, task, per, members),
    as a mask (a byte an index up to the rows' last), filled a block of members at a time."""
    mask = np.zeros(max(int(r[4].last) for r in rows if r[4] is not None) + 1 if rows else 0, dtype=bool)
    wanted = None if tasks is None else np.unique(np.asarray(tasks, dtype=np.int64))
    for _, n, task, per, members in rows:
        assert members is not None
        if wanted is None:
            for _, chunk in members.chunks():
                mask[chunk] = True
            continue
        mine = wanted[(wanted >= task) & (wanted < task + -(-n // per))] - task
        for t in mine.tolist():  # the members of each wanted task: positions t * per … (t + 1) * per − 1
            for a in range(t * per, min(n, (t + 1) * per), 1 << 16):
                mask[members.positions(a, min(n, (t + 1) * per, a + (1 << 16)))] = True
    return mask


MAX_INDICES = 100_000_000  # a sweep is judged with a few bytes per index in memory: beyond this, refused


def checkSize(shown: str, settings: int, runs: int) -> None:
    """A sweep too large to judge in memory is refused at once, in one line (not after minutes of work)."""
    total = settings * runs
    if total > MAX_INDICES:
        raise ExperimentError(f"{shown}: {total:,} indices ({settings:,} settings x {runs} runs) are more than pyexputils "
                              f"can follow in one sweep ({MAX_INDICES:,}): split it into several experiment files")  # fmt: skip


def makeBackend(config: Config, name: str | None = None) -> Backend:
    """``name`` (``--backend``), else the config's ``backend``; ``auto``: Slurm when it answers, else local."""
    from pyexputils.runner import slurm

    choice = name or config.backend
    if choice in BACKENDS:
        return BACKENDS[choice](config)
    if choice == "auto":
        choice = "slurm" if slurm.available() else "local"
    if choice == "slurm":
        return slurm.SlurmBackend()
    if choice == "local":
        from pyexputils.runner.local import LocalBackend

        return LocalBackend.fromConfig(config)
    where = f"{config.path}: backend" if name is None and config.path else "backend"
    raise ConfigError(f"{where} {choice!r}: expected {', '.join(['slurm', 'local', 'auto', *BACKENDS])}")


BACKENDS: dict[str, Callable[[Config], Backend]] = {}  # more backends by name (tests register a fake one)
