"""The command line: ``pyexputils submit | watch | status | missing | show | cancel`` (run from the project root).

Bad input (a file, a key, a value) prints one line ``pyexputils: error: ...`` and exits 2, with nothing
submitted; a script that sbatch rejects is reported with sbatch's own message (exit 2 as well).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from pyexputils import cli_analysis
from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription, getConfig, loadExperiment
from pyexputils.runner.backend import LiveTask
from pyexputils.runner.command import buildCommand
from pyexputils.runner.ledger import Ledger, LedgerBusy, noteCancelled
from pyexputils.runner.manifest import Manifest, stateDir
from pyexputils.runner.plan import indexRanges
from pyexputils.runner.status import IndexOutcome, outcomes
from pyexputils.runner.submit import (
    SubmitOptions,
    chooseBackend,
    listMissing,
    liveIndices,
    relPath,
    resultsRoot,
    submit,
    summary,
    writeScripts,
)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyexputils", description="Experiment sweeps on Slurm (or locally).")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def exps(q: argparse.ArgumentParser, backend: bool = True) -> None:
        q.add_argument("experiments", nargs="+", metavar="EXP", help="experiment files (JSON/YAML)")
        q.add_argument("--runs", type=_positive, default=1, help="runs per setting (default 1)")
        if backend:
            q.add_argument("--backend", choices=("slurm", "local", "auto"), help="default: config backend (auto)")

    s = sub.add_parser("submit", help="submit every missing index")
    exps(s)
    s.add_argument("--dry-run", action="store_true", help="print the plan and scripts; submit and write nothing")
    s.add_argument("--out", metavar="DIR", help="with --dry-run: write the scripts to DIR instead of printing them")
    s.add_argument("--test-only", action="store_true", help="validate every script with sbatch --test-only first")
    s.add_argument("--throttle", type=_positive, help="at most N tasks of each array at once (%%N)")
    s.add_argument("--runs-per-task", type=_positive, help="indices per array task (default: slurm.runs_per_task, auto)")
    s.add_argument("--parallel", type=_positive, help="indices at once inside a task (default: slurm.parallel, 1)")
    s.add_argument("--watch", action="store_true", help="then watch: resubmit until every index is done or final")

    w = sub.add_parser("watch", help="resubmit what ended without results until every index is done or final")
    exps(w)
    w.add_argument("--throttle", type=_positive, help="at most N tasks of each array at once (%%N)")
    w.add_argument("--runs-per-task", type=_positive, help="indices per array task (default: slurm.runs_per_task, auto)")
    w.add_argument("--parallel", type=_positive, help="indices at once inside a task (default: slurm.parallel, 1)")
    for q in (s, w):
        q.add_argument("--poll", type=float, default=10.0, metavar="S", help="seconds between rounds (default 10)")
        q.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 3)")
        q.add_argument("--quiet", action="store_true", help="no progress bar: log lines only")
        q.add_argument("--json", action="store_true", help="one JSON event per line on stdout")

    st = sub.add_parser("status", help="done / missing / queued / running / failed per experiment")
    exps(st)
    st.add_argument("--json", action="store_true", help="print JSON")

    m = sub.add_parser("missing", help="the missing indices as ranges (0-99,140)")
    exps(m, backend=False)

    sh = sub.add_parser("show", help="parameters, save path and command of one index")
    sh.add_argument("experiment", metavar="EXP")
    sh.add_argument("index", type=int, metavar="INDEX")
    sh.add_argument("--runs", type=_positive, help="runs per setting: an index past runs x settings is an error")

    c = sub.add_parser("cancel", help="cancel the live jobs of these experiments")
    c.add_argument("experiments", nargs="+", metavar="EXP")
    c.add_argument("--backend", choices=("slurm", "local", "auto"))
    COMMANDS.update(cli_analysis.register(sub))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(COMMANDS[args.cmd](args))
    except PyExpUtilsError as e:
        print(f"pyexputils: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyexputils: interrupted", file=sys.stderr)
        return 130


# --- commands ------------------------------------------------------------------------------------------------
def cmdSubmit(a: argparse.Namespace) -> int:
    if a.out and not a.dry_run:
        raise PyExpUtilsError("--out goes with --dry-run (a real submit keeps its scripts under the results root)")
    config = getConfig()
    backend = chooseBackend(config, a.backend)
    opts = SubmitOptions(runs=a.runs, dry_run=a.dry_run, test_only=a.test_only, throttle=a.throttle,
                         runs_per_task=a.runs_per_task, parallel=a.parallel)  # fmt: skip
    if a.watch and a.dry_run:
        raise PyExpUtilsError("--watch cannot go with --dry-run")
    if a.watch:
        return cmdWatch(a)
    out = submit(a.experiments, config, backend, opts)
    sys.stdout.write(summary(out, a.dry_run))
    if a.dry_run:
        if a.out:
            for path in writeScripts(out, a.out):
                print(f"wrote {path}")
        else:
            for job in out.jobs:
                print(f"\n# ---- {job.tag}: {job.array_size} tasks, manifest {relPath(job.manifest_path)} ----")
                sys.stdout.write(job.script)
        if a.test_only:
            print(f"sbatch --test-only accepted {len(out.jobs)} scripts")
    if out.rejected:
        print(f"pyexputils: error: {out.rejected.splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def cmdWatch(a: argparse.Namespace) -> int:
    from pyexputils.runner.watch import WatchOptions, watch

    if a.poll <= 0:
        raise PyExpUtilsError(f"--poll {a.poll}: expected a positive number of seconds")
    config = getConfig()
    backend = chooseBackend(config, a.backend)
    sub = SubmitOptions(runs=a.runs, throttle=a.throttle, runs_per_task=a.runs_per_task, parallel=a.parallel)
    o = WatchOptions(runs=a.runs, poll=a.poll, timeout=a.timeout, quiet=a.quiet, json=a.json, submit=sub)
    return watch(a.experiments, config, backend, o)


def cmdMissing(a: argparse.Namespace) -> int:
    exps = _load(a.experiments, a.runs)
    for path, exp in exps:
        ranges = indexRanges(listMissing(exp, a.runs))
        print(ranges if len(exps) == 1 else f"{path}: {ranges}")
    return 0


def cmdShow(a: argparse.Namespace) -> int:
    config = getConfig()
    exp: ExperimentDescription = loadExperiment(a.experiment)
    i = exp.checkIndex(a.index, a.runs if a.runs is not None else a.index // exp.numPermutations() + 1)
    P = exp.numPermutations()
    print(f"experiment: {a.experiment}")
    print(f"index: {i} (setting {i % P} of {P}, run {i // P})")
    print("parameters: " + json.dumps(exp.getPermutation(i), default=str))
    print(f"save path: {exp.interpolateSavePath(i)}")
    if config.command:
        print(f"command: {buildCommand(config.command, exp, i, os.path.realpath(a.experiment))}")
    else:
        print(f"command: (none: {config.path or 'config.json'} has no command)")
    return 0


def cmdCancel(a: argparse.Namespace) -> int:
    config = getConfig()
    exps = {os.path.realpath(p) for p, _ in _load(a.experiments, 1)}
    backend = chooseBackend(config, a.backend)
    root = resultsRoot(config)
    live = backend.query()
    jobs = _jobsOf(live, root, exps)
    if not jobs:
        print("nothing to cancel: no live jobs of these experiments")
        return 0
    noteCancelled(root, sorted(jobs))  # first: a watch must never take these for preemptions
    backend.cancel(sorted(jobs))
    try:
        with Ledger.open(root, wait=2.0) as ledger:
            ledger.markCancelled(sorted(jobs))
    except LedgerBusy:
        pass  # a watch holds the ledger; it reads the note
    tasks = sum(1 for t in live if t.job_id in jobs)
    print(f"cancelled {len(jobs)} jobs ({tasks} live array tasks): {' '.join(sorted(jobs))}")
    return 0


def cmdStatus(a: argparse.Namespace) -> int:
    config = getConfig()
    exps = _load(a.experiments, a.runs)
    backend = chooseBackend(config, a.backend)
    root = resultsRoot(config)
    live = backend.query()
    rows = [experimentStatus(path, exp, a.runs, live, root) for path, exp in exps]
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    causes = sorted({c for r in rows for c in r["failed"]})
    head = ["experiment", "total", "done", "missing", "queued", "running", "not submitted", "no record"] + causes
    table = [head]
    for r in rows:
        table.append([r["experiment"], *(str(r[k]) for k in ("total", "done", "missing", "queued", "running", "not_submitted", "no_record")),
                      *(str(r["failed"].get(c, 0)) for c in causes)])  # fmt: skip
    widths = [max(len(row[c]) for row in table) for c in range(len(head))]
    for row in table:
        print("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths))).rstrip())
    return 0


# --- helpers ---------------------------------------------------------------------------------------------------
def _load(paths: Sequence[str], runs: int) -> list[tuple[str, ExperimentDescription]]:
    out = []
    for p in paths:
        if not os.path.isfile(p):
            raise PyExpUtilsError(f"{p}: no such experiment file")
        exp: ExperimentDescription = loadExperiment(p)
        exp.validateSavePath(runs)
        out.append((p, exp))
    return out


def _jobsOf(live: Sequence[LiveTask], root: str, exps: set[str]) -> set[str]:
    cache: dict[str, Manifest] = {}
    liveIndices(live, root, cache)
    return {t.job_id for t in live if t.tag in cache and cache[t.tag].experiment in exps}


def experimentStatus(path: str, exp: ExperimentDescription, runs: int, live: Sequence[LiveTask], root: str) -> dict[str, Any]:
    """Counts of one experiment: done, missing, queued, running, and the missing ones by their last cause."""
    full = os.path.realpath(path)
    missing = listMissing(exp, runs)
    running = liveIndices([t for t in live if t.state in ("RUNNING", "COMPLETING", "CONFIGURING")], root, {}).get(full, set())
    queued = liveIndices(live, root, {}).get(full, set()) - running
    rest = [i for i in missing if i not in running and i not in queued]
    failed: dict[str, int] = {}
    notSubmitted = noRecord = 0
    if rest and os.path.isfile(os.path.join(stateDir(root), "ledger.sqlite")):
        with Ledger.open(root, lock=False) as ledger:
            latest = ledger.latest(full)
            files: dict[str, dict[int, IndexOutcome]] = {}
            manifests: dict[str, Manifest | None] = {}
            for i in rest:
                att = latest.get(i)
                if att is None:
                    notSubmitted += 1
                    continue
                if att.tag not in manifests:
                    sub = ledger.byTag(att.tag)
                    try:
                        manifests[att.tag] = Manifest.read(sub.manifest) if sub else None
                    except PyExpUtilsError:
                        manifests[att.tag] = None
                m = manifests[att.tag]
                if m is None:
                    noRecord += 1
                    continue
                sp = m.statusPath(att.task)
                if sp not in files:
                    files[sp] = outcomes([sp])
                o = files[sp].get(i)
                if o is None or o.state == "RUNNING":
                    noRecord += 1
                else:
                    failed[o.state] = failed.get(o.state, 0) + 1
    else:
        notSubmitted = len(rest)
    total = exp.numPermutations() * runs
    return {
        "experiment": path, "total": total, "done": total - len(missing), "missing": len(missing),
        "queued": len(queued & set(missing)), "running": len(running & set(missing)),
        "not_submitted": notSubmitted, "no_record": noRecord, "failed": failed,
    }  # fmt: skip


COMMANDS = {"submit": cmdSubmit, "watch": cmdWatch, "status": cmdStatus, "missing": cmdMissing, "show": cmdShow, "cancel": cmdCancel}
