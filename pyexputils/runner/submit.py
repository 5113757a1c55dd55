"""Submit: experiments -> missing indices -> plan -> manifests -> scripts -> backend, recorded in the ledger.

Order of a real submit (everything checkable is checked before anything is written or submitted):

1. load the experiment files, the config's ``command``, save paths and options of each; the template;
2. take the ledger's lock; ask the backend for its limits and its live tasks (one ``squeue``); a live job
   whose tag the ledger lacks (the submitter died between sbatch and the ledger) is adopted from its
   manifest; indices in live tasks are not planned again;
3. find the missing indices (``pyexputils.results.listMissingResults``), plan, render;
4. per array: write its manifest (atomically) and a copy of its script under ``<results root>/.pyexputils``,
   create its log folder, ``backend.submit``, record it in the ledger. A rejection stops the submit there:
   sbatch's message is reported, the rejected array is not recorded (arrays before it were submitted and
   are recorded);
5. ``backend.finish()`` (the local backend runs the work here).

``--dry-run`` does 1-3 without the lock and without writing anything, and prints the summary and scripts.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Sequence, TextIO

from pyexputils.errors import ConfigError, PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription, loadExperiment
from pyexputils.results import listMissingResults
from pyexputils.runner.backend import Backend, JobSpec, Limits, LiveTask, SubmitRejected
from pyexputils.runner.command import checkCommand
from pyexputils.runner.ledger import Ledger, Submission, manifestPath
from pyexputils.runner.manifest import Manifest, stateDir, writeAtomic
from pyexputils.runner.plan import ArrayPlan, Plan, PlanOptions, Request, limitsWithOverrides, plan
from pyexputils.runner.policy import Resources
from pyexputils.runner.render import (
    checkOptions,
    checkTemplate,
    makeTag,
    newSubmissionId,
    outputPath,
    renderScript,
    sbatchOptions,
)


# --- the project --------------------------------------------------------------------------------------
def projectRoot(config: Config) -> str:
    """The folder of config.json (the current folder when there is none)."""
    return os.path.dirname(os.path.abspath(config.path)) if config.path else os.path.abspath(".")


def underProject(config: Config, path: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(projectRoot(config), path))


def resultsRoot(config: Config) -> str:
    """The absolute results root (the ledger, manifests and status files live under it)."""
    return underProject(config, config.results_root)


def slurmBlock(config: Config, exp: ExperimentDescription) -> dict[str, Any]:
    """The config's ``slurm`` block with the experiment's own ``slurm`` block over it."""
    own = exp.description.get("slurm", {})
    if not isinstance(own, dict):
        raise ConfigError(f"{exp.path}: slurm must be a mapping of options, got {own!r}")
    return {**config.slurm, **own}


def loadTemplate(config: Config, slurm: dict[str, Any]) -> tuple[str, str]:
    """(text, where) of the sbatch template: ``slurm.template``, else ``<project>/templates/sbatch.sh``,
    else the one shipped in the package."""
    where = config.path or "config"
    candidates = []
    if slurm.get("template"):
        candidates.append(underProject(config, str(slurm["template"])))
        if not os.path.isfile(candidates[0]):
            raise ConfigError(f"{where}: slurm.template {slurm['template']!r}: no such file")
    candidates.append(os.path.join(projectRoot(config), "templates", "sbatch.sh"))
    for path in candidates:
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                text = f.read()
            checkTemplate(text, path)
            return text, path
    text = resources.files("pyexputils").joinpath("templates/sbatch.sh").read_text(encoding="utf-8")
    return text, "pyexputils/templates/sbatch.sh"


def listMissing(exp: ExperimentDescription, runs: int) -> list[int]:
    """The indices of ``runs`` runs whose results are not on disk."""
    return listMissingResults(exp, runs)


def chooseBackend(config: Config, name: str | None = None) -> Backend:
    """``name`` (``--backend``), else config ``backend``; ``auto``: Slurm when it answers, else local."""
    from pyexputils.runner import slurm

    choice = name or config.backend
    if choice == "auto":
        choice = "slurm" if slurm.available() else "local"
    if choice == "slurm":
        return slurm.SlurmBackend()
    if choice == "local":
        from pyexputils.runner.local import LocalBackend

        return LocalBackend.fromConfig(config)
    raise ConfigError(f"backend {choice!r}: expected slurm, local or auto")


# --- the submission ------------------------------------------------------------------------------------
@dataclass
class ExpState:
    """One experiment as the submit saw it."""

    path: str  # absolute
    exp: ExperimentDescription
    total: int
    missing: int  # not on disk
    queued: int  # missing but in a live task (not planned again)
    options: PlanOptions


@dataclass
class Outcome:
    experiments: list[ExpState]
    plan: Plan
    jobs: list[JobSpec]
    limits: Limits
    backend: str
    submitted: list[tuple[str, str]] = field(default_factory=list)  # (tag, job id)
    adopted: list[str] = field(default_factory=list)
    rejected: str | None = None  # sbatch's message


@dataclass
class SubmitOptions:
    runs: int = 1
    dry_run: bool = False
    test_only: bool = False
    throttle: int | None = None
    runs_per_task: int | None = None
    parallel: int | None = None
    python: str = sys.executable


def _cliOverrides(slurm: dict[str, Any], o: SubmitOptions) -> dict[str, Any]:
    out = dict(slurm)
    for key in ("throttle", "runs_per_task", "parallel"):
        if getattr(o, key) is not None:
            out[key] = getattr(o, key)
    return out


def liveIndices(live: Sequence[LiveTask], root: str, cache: dict[str, Manifest]) -> dict[str, set[int]]:
    """Indices in live tasks, per experiment (absolute path), from the manifests of their tags."""
    out: dict[str, set[int]] = {}
    for t in live:
        if t.tag is None:
            continue
        m = cache.get(t.tag)
        if m is None:
            path = manifestPath(root, t.tag)
            if not os.path.isfile(path):
                continue  # not ours (another results root) or lost
            try:
                m = cache[t.tag] = Manifest.read(path)
            except PyExpUtilsError:
                continue
        tasks = range(len(m.tasks)) if t.task is None else [t.task]
        bucket = out.setdefault(m.experiment, set())
        for k in tasks:
            if 0 <= k < len(m.tasks):
                bucket.update(m.tasks[k])
    return out


Loaded = tuple[list[tuple[str, ExperimentDescription, dict[str, Any]]], str]


def load(paths: Sequence[str], config: Config, o: SubmitOptions) -> Loaded:
    """Step 1: the experiments (absolute path, description, resolved slurm block) and the template, checked."""
    where = config.path or "config"
    if not config.command:
        raise ConfigError(f"{where}: no command: say what one index runs, e.g. \"python main.py --exp {{experiment}} --idx {{index}}\"")
    if o.runs < 1:
        raise PyExpUtilsError(f"--runs {o.runs}: expected a whole number >= 1")
    if not paths:
        raise PyExpUtilsError("no experiment files given")
    exps: list[tuple[str, ExperimentDescription, dict[str, Any]]] = []
    seen: set[str] = set()
    for path in paths:
        if not os.path.isfile(path):
            raise PyExpUtilsError(f"{path}: no such experiment file")
        full = os.path.realpath(path)
        if full in seen:
            continue
        seen.add(full)
        exp: ExperimentDescription = loadExperiment(path)
        exp.validateSavePath(o.runs)
        checkCommand(config.command, exp, where)
        block = _cliOverrides(slurmBlock(config, exp), o)
        opts = PlanOptions.fromSlurm(block, (exp.path or full) if "slurm" in exp.description else where)
        logDir = underProject(config, config.log_path)
        checkOptions(opts.sbatch, outputPath(logDir, "x", projectRoot(config)), where)
        exps.append((full, exp, block))
    template, _ = loadTemplate(config, dict(config.slurm))
    return exps, template


def clusterLimits(config: Config, backend: Backend) -> Limits:
    """The backend's limits (for the config's partition) with the config's overrides."""
    partition = config.slurm.get("partition")
    return limitsWithOverrides(backend.limits(str(partition) if partition else None), config.slurm, config.path or "config")


def prepare(
    loaded: Loaded, config: Config, backend: Backend, o: SubmitOptions, live: Sequence[LiveTask], limits: Limits
) -> Outcome:
    """Steps 2-3 (after :func:`load`): everything up to the rendered scripts; writes nothing."""
    where = config.path or "config"
    root = resultsRoot(config)
    exps, template = loaded
    cache: dict[str, Manifest] = {}
    busy = liveIndices(live, root, cache)
    states: list[ExpState] = []
    requests: list[Request] = []
    for full, exp, block in exps:
        opts = PlanOptions.fromSlurm(block, (exp.path or full) if "slurm" in exp.description else where)
        missing = listMissing(exp, o.runs)
        inLive = busy.get(full, set())
        todo = [i for i in missing if i not in inLive] if inLive else missing
        states.append(ExpState(full, exp, exp.numPermutations() * o.runs, len(missing), len(missing) - len(todo), opts))
        requests.append(Request(full, todo, opts))
    p = plan(requests, limits, backend.queued())
    submission = newSubmissionId()
    logDir = underProject(config, config.log_path)
    project = projectRoot(config)
    byKey = {s.path: s for s in states}
    jobs: list[JobSpec] = []
    counters: dict[str, int] = {}
    for a in p.arrays:
        st = byKey[a.key]
        k = counters[a.key] = counters.get(a.key, -1) + 1
        name, file = st.exp.getExperimentName(), st.exp.getFileName()
        tag = makeTag(file if name == file else f"{name}-{file}", submission, k)
        jobs.append(_job(a, tag, st, config, root, logDir, project, template, o))
    return Outcome(states, p, jobs, limits, backend.name)


def _job(a: ArrayPlan, tag: str, st: ExpState, config: Config, root: str, logDir: str, project: str, template: str, o: SubmitOptions) -> JobSpec:  # fmt: skip
    where = config.path or "config"
    opts = sbatchOptions(a, tag, outputPath(logDir, tag, project), where, st.options.signal_seconds)
    mpath = manifestPath(root, tag)
    manifest = Manifest(
        tag=tag,
        experiment=st.path,
        project=project,
        command=config.command or "",
        tasks=a.tasks,
        parallel=a.parallel,
        require=list(config.require),
        log_dir=logDir,
        status_dir=os.path.join(stateDir(root), "status"),
        time_limit_s=None if st.options.time_minutes is None else st.options.time_minutes * 60,
        job_time_limit_s=None if a.time_minutes is None else a.time_minutes * 60,
    )
    script = renderScript(template, a, opts, tag, mpath, project, o.python, st.path)
    return JobSpec(
        tag=tag, manifest_path=mpath, manifest=manifest, array_size=a.size, script=script, options=opts,
        time_limit_minutes=a.time_minutes, cpus_per_task=a.cpus_per_task, throttle=a.throttle, workdir=project,
    )  # fmt: skip


def adopt(ledger: Ledger, live: Sequence[LiveTask], root: str, backend: str) -> list[str]:
    """Record live jobs whose tags the ledger lacks, from their manifests; returns their tags."""
    known = ledger.tags()
    adopted: list[str] = []
    for t in live:
        if t.tag is None or t.tag in known or t.tag in adopted:
            continue
        path = manifestPath(root, t.tag)
        if not os.path.isfile(path):
            continue
        try:
            m = Manifest.read(path)
        except PyExpUtilsError:
            continue
        ledger.adopt(m, path, t.job_id, backend)
        adopted.append(t.tag)
    return adopted


def submit(paths: Sequence[str], config: Config, backend: Backend, o: SubmitOptions, log: TextIO = sys.stderr) -> Outcome:
    """The whole submit (see the module docstring); dry runs write nothing."""
    root = resultsRoot(config)
    loaded = load(paths, config, o)
    limits = clusterLimits(config, backend)
    if o.dry_run:
        live = backend.query()
        out = prepare(loaded, config, backend, o, live, limits)
        if o.test_only:
            for job in out.jobs:
                backend.submit(job, test_only=True)
        return out
    with Ledger.open(root) as ledger:
        live = backend.query()
        adopted = adopt(ledger, live, root, backend.name)
        out = prepare(loaded, config, backend, o, live, limits)
        out.adopted = adopted
        if o.test_only:
            for job in out.jobs:
                backend.submit(job, test_only=True)
        submitted, out.rejected = sendJobs(ledger, backend, [(job, None) for job in out.jobs], root)
        out.submitted = [(job.tag, jobId) for job, jobId in submitted]
        backend.finish()
    return out


def sendJobs(
    ledger: Ledger, backend: Backend, jobs: Sequence[tuple[JobSpec, Resources | None]], root: str,
    onSubmit: Callable[[JobSpec, str], None] | None = None,
) -> tuple[list[tuple[JobSpec, str]], str | None]:
    """Step 4 for each job: attempt numbers, manifest and script written, log folder made, submitted,
    recorded. Stops at the first rejection and returns sbatch's message with what went through.
    A job's per-run resources are recorded (by tag) before sbatch: a process killed between sbatch and
    the ledger leaves a job that is adopted later with the resources it really asked for."""
    submitted: list[tuple[JobSpec, str]] = []
    for job, res in jobs:
        attempts = ledger.nextAttempts(job.manifest.experiment, (i for t in job.manifest.tasks for i in t))
        job.manifest.attempt = max(attempts.values())
        job.manifest.write(job.manifest_path)
        writeAtomic(os.path.join(stateDir(root), "scripts", f"{job.tag}.sh"), job.script)
        os.makedirs(os.path.join(job.manifest.log_dir, job.tag), exist_ok=True)
        if res is not None:
            ledger.setResources(job.tag, res)
        try:
            jobId = backend.submit(job)
        except SubmitRejected as e:
            os.unlink(job.manifest_path)
            return submitted, str(e)
        ledger.record(
            Submission(job.tag, jobId, backend.name, job.manifest.experiment, job.array_size, dict(job.options),
                       job.manifest.attempt, time.time(), job.manifest_path),
            job.manifest.tasks, attempts,
        )  # fmt: skip
        submitted.append((job, jobId))
        if onSubmit is not None:
            onSubmit(job, jobId)
    return submitted, None


@dataclass(frozen=True)
class Group:
    """Indices of one experiment to submit with one set of options (``watch``: per escalated resources)."""

    experiment: str  # absolute path, as in :func:`load`
    indices: list[int]
    options: PlanOptions
    resources: Resources | None = None


def makeJobs(
    loaded: Loaded, config: Config, backend: Backend, o: SubmitOptions, groups: Sequence[Group]
) -> tuple[list[tuple[JobSpec, Resources | None]], int]:
    """Plan and render ``groups`` (no listing of results: the caller chose the indices); returns the jobs,
    each with its group's resources, and the number of indices deferred for lack of queue slots."""
    root = resultsRoot(config)
    exps, template = loaded
    byPath = {full: exp for full, exp, _ in exps}
    partition = config.slurm.get("partition")
    limits = limitsWithOverrides(backend.limits(str(partition) if partition else None), config.slurm, config.path or "config")
    keyed = {f"{g.experiment}#{k}": g for k, g in enumerate(groups)}
    p = plan([Request(key, g.indices, g.options) for key, g in keyed.items()], limits, backend.queued())
    submission = newSubmissionId()
    logDir = underProject(config, config.log_path)
    project = projectRoot(config)
    jobs: list[tuple[JobSpec, Resources | None]] = []
    for k, a in enumerate(p.arrays):
        g = keyed[a.key]
        exp = byPath[g.experiment]
        st = ExpState(g.experiment, exp, 0, len(g.indices), 0, g.options)
        name, file = exp.getExperimentName(), exp.getFileName()
        tag = makeTag(file if name == file else f"{name}-{file}", submission, k)
        jobs.append((_job(a, tag, st, config, root, logDir, project, template, o), g.resources))
    return jobs, sum(len(v) for v in p.deferred.values())


def adoptOrphans(ledger: Ledger, live: Sequence[LiveTask], root: str, backend: str) -> list[str]:
    """Manifests the ledger lacks whose jobs are no longer live: adopted (job id unknown) when their runner
    left status files (the job ran), removed when it did not (sbatch was never reached, or the job never
    started and left no trace: its indices are simply missing)."""
    folder = os.path.dirname(manifestPath(root, "x"))
    if not os.path.isdir(folder):
        return []
    known = ledger.tags() | {t.tag for t in live if t.tag}
    adopted: list[str] = []
    for entry in os.scandir(folder):
        if not entry.name.endswith(".json") or entry.name.startswith("."):
            continue
        tag = entry.name[: -len(".json")]
        if tag in known:
            continue
        try:
            m = Manifest.read(entry.path)
        except PyExpUtilsError:
            continue
        if os.path.isdir(os.path.join(m.status_dir, m.tag)):
            ledger.adopt(m, entry.path, "unknown", backend)
            adopted.append(tag)
        elif time.time() - entry.stat().st_mtime > 60:
            os.unlink(entry.path)
    return adopted


# --- reporting -------------------------------------------------------------------------------------------
def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths))).rstrip() for r in rows)  # fmt: skip


def relPath(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def summary(out: Outcome, dry: bool) -> str:
    """The plan in words and a table: experiments, missing runs, arrays, tasks, runs per task, core-hours."""
    rows = [["experiment", "settings", "total", "missing", "queued", "planned", "arrays", "tasks", "runs/task", "parallel", "time/task", "cpus/task"]]  # fmt: skip
    for s in out.experiments:
        arrays = [a for a in out.plan.arrays if a.key == s.path]
        first = arrays[0] if arrays else None
        rows.append([
            relPath(s.path), str(s.exp.numPermutations()), str(s.total), str(s.missing), str(s.queued),
            str(sum(a.runs for a in arrays)), str(len(arrays)), str(sum(a.size for a in arrays)),
            str(first.runs_per_task) if first else "-", str(first.parallel) if first else "-",
            _minutes(first.time_minutes) if first else "-", str(first.cpus_per_task) if first else "-",
        ])  # fmt: skip
    coreHours = sum(a.coreMinutes() for a in out.plan.arrays) / 60
    head = "dry run: nothing submitted" if dry else "submitted"
    lines = [
        f"pyexputils submit ({head}; backend {out.backend})",
        _table(rows),
        f"total: {sum(s.missing for s in out.experiments)} missing runs, {out.plan.runs} planned in "
        f"{len(out.plan.arrays)} arrays of {out.plan.tasks} tasks; {coreHours:.1f} core-hours requested"
        + ("" if all(a.time_minutes for a in out.plan.arrays) else " (some without a time limit: not counted)"),
        f"limits: {out.limits.describe()}",
    ]
    for note in out.plan.notes:
        lines.append(f"plan: {note}")
    for key, idx in out.plan.deferred.items():
        lines.append(f"deferred: {relPath(key)}: {len(idx)} indices (submit again when the queue has room)")
    if out.adopted:
        lines.append(f"adopted from the queue (missing in the ledger): {', '.join(out.adopted)}")
    for tag, job in out.submitted:
        lines.append(f"job {job}: {tag}")
    if out.rejected:
        lines.append(f"rejected: {out.rejected}")
    return "\n".join(lines) + "\n"


def _minutes(m: int | None) -> str:
    if m is None:
        return "default"
    return f"{m // 60}:{m % 60:02d}:00"


def writeScripts(out: Outcome, folder: str) -> list[str]:
    """``--dry-run --out DIR``: each script as ``DIR/<tag>.sh`` (and its manifest, for inspection)."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for job in out.jobs:
        path = os.path.join(folder, f"{job.tag}.sh")
        with open(path, "w", encoding="utf-8") as f:
            f.write(job.script)
        written.append(path)
    return written


def coreHours(out: Outcome) -> float:
    return math.fsum(a.coreMinutes() for a in out.plan.arrays) / 60
