"""The command line: ``pyexputils submit | watch | status | missing | show | cancel | retry`` (and analysis).

Run from the project (the folder of ``config.json`` or any folder below it). Every command is a thin loop
over :class:`pyexputils.runner.session.Session`; this module parses arguments and prints. Bad input (a
file, a key, a value) prints one line ``pyexputils: error: ...`` and exits 2, with nothing submitted or
deleted; a script that sbatch rejects is reported with sbatch's own message (exit 2 as well).
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import Any, Sequence

from pyexputils import cli_analysis, cli_inspect, cli_report, cli_service
from pyexputils.display import WatchDisplay, costTable, efficiencyTable, minutes, table
from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription, getConfig, loadExperiment
from pyexputils.runner.causes import Cause
from pyexputils.runner.command import buildCommand
from pyexputils.runner.judge import State
from pyexputils.runner.ledger import LedgerBusy, noteCancelled
from pyexputils.runner.plan import indexRanges
from pyexputils.results.indices import rangesText
from pyexputils.runner.service import Mode, preflight
from pyexputils.runner.session import BACKENDS, Round, Session, Standing
from pyexputils.runner.watch import Watcher, WatchOptions

Handler = cli_analysis.Handler


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return n


def _cause(text: str) -> Cause:
    try:
        return Cause.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyexputils", description="Experiment sweeps on Slurm (or locally).")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    backends = ("slurm", "local", "auto") + tuple(b for b in BACKENDS if b not in ("slurm", "local", "auto"))

    def exps(q: argparse.ArgumentParser, backend: bool = True) -> None:
        q.add_argument("experiments", nargs="+", metavar="EXP", help="experiment files (JSON/YAML)")
        q.add_argument("--runs", type=_positive, help="runs per setting (default: as at the last submit, else 1)")
        if backend:
            q.add_argument("--backend", choices=backends, help="default: config backend (auto)")

    def sending(q: argparse.ArgumentParser) -> None:
        q.add_argument("--throttle", type=_positive, help="at most N tasks of each array at once (%%N)")
        q.add_argument("--runs-per-task", type=_positive, help="indices per array task (default: slurm.runs_per_task, auto)")
        q.add_argument("--parallel", type=_positive, help="indices at once inside a task (default: slurm.parallel, 1)")

    def watching(q: argparse.ArgumentParser) -> None:
        q.add_argument("--poll", type=float, metavar="S", help="seconds between rounds (default 10; detached: watch.poll, 30)")
        q.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds (exit 3)")
        q.add_argument("--quiet", action="store_true", help="no progress bar: log lines only")
        q.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
        q.add_argument("--detach", action="store_true", help="watch from a chain of watcher jobs on the cluster and return at once")
        q.add_argument("--daemon", action="store_true", help="watch from a process detached on this machine and return at once")

    s = sub.add_parser("submit", help="submit every index that is not done (and may be sent)")
    exps(s)
    sending(s)
    s.add_argument("--dry-run", action="store_true", help="print the plan and scripts; submit and write nothing")
    s.add_argument("--out", metavar="DIR", help="with --dry-run: write the scripts to DIR instead of printing them")
    s.add_argument("--test-only", action="store_true", help="validate every script with sbatch --test-only first")
    s.add_argument("--watch", action="store_true", help="then watch: resubmit until every index is done or final")
    watching(s)

    w = sub.add_parser("watch", help="resubmit what ended without results until every index is done or final")
    exps(w)
    sending(w)
    watching(w)

    st = sub.add_parser("status", help="per experiment: done, queued, running, to submit, to retry, final")
    exps(st)
    st.add_argument("--json", action="store_true", help="print JSON")
    st.add_argument("--efficiency", action="store_true",
                    help="per array: used / requested time and memory, from the runner's records (like seff)")  # fmt: skip

    m = sub.add_parser("missing", help="the indices that are not done, as ranges (0-99,140)")
    exps(m)
    m.add_argument("--json", action="store_true", help="print JSON")

    sh = sub.add_parser("show", help="parameters, save path, command and state of one index")
    sh.add_argument("experiment", metavar="EXP")
    sh.add_argument("index", type=int, metavar="INDEX")
    sh.add_argument("--runs", type=_positive, help="runs per setting: an index past runs x settings is an error")
    sh.add_argument("--backend", choices=backends)
    sh.add_argument("--json", action="store_true", help="print JSON")

    c = sub.add_parser("cancel", help="cancel the live jobs of these experiments (their indices end CANCELLED: final)")
    c.add_argument("experiments", nargs="+", metavar="EXP")
    c.add_argument("--backend", choices=backends)
    c.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("retry", help="give indices that ended with a final cause a fresh budget and submit them")
    exps(r)
    sending(r)
    r.add_argument("--cause", type=_cause, action="append", metavar="CAUSE",
                   help="only indices that ended with this cause (FAILED, CANCELLED, TIMEOUT, ...); repeatable")  # fmt: skip
    r.add_argument("--json", action="store_true", help="print JSON")

    COMMANDS.update(cli_analysis.register(sub))
    COMMANDS.update(cli_service.register(sub))
    COMMANDS.update(cli_inspect.register(sub, backends))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(COMMANDS[args.cmd](args))
    except PyExpUtilsError as e:
        print(f"pyexputils: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pyexputils missing ... | head`
        sys.stderr.close()
        return 0
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            print(f"pyexputils: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("pyexputils: interrupted", file=sys.stderr)
        return 130


def _session(a: argparse.Namespace) -> Session:
    return Session(getConfig(), getattr(a, "backend", None))


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(a, k, None) for k in ("throttle", "runs_per_task", "parallel")}


# --- submit ----------------------------------------------------------------------------------------------
def cmdSubmit(a: argparse.Namespace) -> int:
    if a.out and not a.dry_run:
        raise PyExpUtilsError("--out goes with --dry-run (a real submit keeps its scripts under the results root)")
    if a.watch and a.dry_run:
        raise PyExpUtilsError("--watch cannot go with --dry-run")
    detached = _detached(a)
    if detached and not a.watch:
        raise PyExpUtilsError("--detach and --daemon go with --watch (submit EXP --watch --detach)")
    if a.watch and not detached:
        return cmdWatch(a)
    s = _session(a)
    if detached:
        preflight(s, Mode.DAEMON if a.daemon else Mode.SLURM)  # nothing is submitted when no service can start
        if s.backend.name == "local":  # its pool would run here, in the foreground: the daemon submits instead
            return cmdWatch(a)
    if a.dry_run:
        ledger = s.readLedger()
        try:
            sweeps = s.load(a.experiments, a.runs, _overrides(a), ledger=ledger, command=True)
            r = s.round(ledger, sweeps, send=False, testOnly=a.test_only)
        finally:
            if ledger is not None:
                ledger.close()
    else:
        sweeps = s.load(a.experiments, a.runs, _overrides(a), command=True)  # checked before anything is written
        with s.openLedger() as ledger:
            r = s.round(ledger, sweeps, testOnly=a.test_only)
        s.backend.finish()  # the local backend runs the work here: the ledger's lock is not held meanwhile
    ran = [] if a.dry_run else cli_report.localOutcome(s, r)  # the local backend ran it here: how did it end?
    if a.json:
        print(json.dumps(cli_report.submitJson(s, r, a.dry_run, ran, scripts=a.dry_run and not a.out), indent=1))
    else:
        sys.stdout.write(submitSummary(s, r, a.dry_run))
    if a.dry_run and r.planned is not None:
        local = cli_report.isLocal(s)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            for job, _, _ in r.planned.jobs:
                path = os.path.join(a.out, f"{job.tag}.sh")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(cli_report.localScript(s, r, job) if local else job.script)
                if not a.json:
                    print(f"wrote {path}")
        elif local and not a.json:
            sys.stdout.write(cli_report.localPlan(s, r))
        elif not a.json:
            for job, _, _ in r.planned.jobs:
                print(f"\n# ---- {job.tag}: {job.array_size} tasks, manifest {s.relPath(job.manifest_path)} ----")
                sys.stdout.write(job.script)
        if a.test_only and not a.json:
            print(f"sbatch --test-only accepted {len(r.planned.jobs)} scripts")
    if r.sent is not None and r.sent.rejected:
        print(f"pyexputils: error: {r.sent.rejected.splitlines()[0]}", file=sys.stderr)
        return 2
    for line in [] if a.json else cli_report.outcomeLines(ran):
        print(line)
    if detached:
        return cli_service.detach(a, s)
    return 1 if any(row["failed"] for row in ran) else 0


def submitSummary(s: Session, r: Round, dry: bool) -> str:
    """The plan in words and a table: per experiment, where it stands and what is sent. On the local backend
    in local terms: runner processes on this machine, no core-hours or sbatch limits."""
    local = s.backend.name == "local"
    rows = [["experiment", "runs", "total", "done", "queued/running", "to submit", "to retry", "final", "planned",
             *(["processes", "runs/process", "parallel", "time limit"] if local else
               ["arrays", "tasks", "runs/task", "parallel", "time/task", "cpus/task"])]]  # fmt: skip
    arrays = r.planned.plan.arrays if r.planned else []
    notes: list[str] = []
    for st in r.standings:
        c = st.counts()
        mine = [arr for arr in arrays if arr.key.rsplit("#", 1)[0] == st.sweep.path]
        first = mine[0] if mine else None
        rows.append([
            st.sweep.shown, str(st.sweep.runs), str(st.sweep.total), str(c[State.DONE]), str(c[State.QUEUED] + c[State.RUNNING]),
            str(c[State.MISSING]), str(c[State.RETRY]), str(c[State.FINAL]), str(sum(arr.runs for arr in mine)),
            *([] if local else [str(len(mine))]), str(sum(arr.size for arr in mine)),
            str(first.runs_per_task) if first else "-", str(first.parallel) if first else "-",
            minutes(first.time_minutes) if first else "-", *([] if local else [str(first.cpus_per_task) if first else "-"]),
        ])  # fmt: skip
        notes += _standingNotes(st)
    head = "dry run: nothing submitted" if dry else ("submitted" if not local else "nothing to run" if r.sent is None or not r.sent.submitted
                                                      else "ran on this machine" if cli_report.ranHere(s) else "started in the background")  # fmt: skip
    planned = sum(arr.runs for arr in arrays)
    lines = [f"pyexputils submit ({head}; backend {s.backend.name})", table(rows)]
    if local:
        workers = r.planned.limits.cpus if r.planned is not None else None
        lines.append(f"total: {planned} runs planned in {sum(arr.size for arr in arrays)} runner processes on this machine"
                     + (f", {workers} at a time ({r.planned.limits.source.get('cpus', 'workers')})" if workers and r.planned else ""))  # fmt: skip
    else:
        coreHours = sum(arr.coreMinutes() for arr in arrays) / 60
        lines.append(f"total: {planned} planned in {len(arrays)} arrays of {sum(arr.size for arr in arrays)} tasks; "
                     f"{coreHours:.1f} core-hours requested"
                     + ("" if all(arr.time_minutes for arr in arrays) else " (some without a time limit: not counted)"))  # fmt: skip
    if dry and not local and r.planned is not None and r.planned.jobs:
        lines += ["arrays:", costTable([(job.tag, arr) for (job, _, _), arr in zip(r.planned.jobs, arrays)])]
        fitted = [arr for arr in arrays if arr.predicted_core_minutes is not None]
        if fitted:
            lines.append(f"fitted to measured run times: {sum(a.runs for a in fitted)} runs in {len(fitted)} arrays, "
                         f"{sum(a.coreMinutes() for a in fitted) / 60:.2f} core-hours asked, "
                         f"{sum(a.predicted_core_minutes or 0 for a in fitted) / 60:.2f} predicted")  # fmt: skip
    if r.planned is not None:
        if not local:
            lines.append(f"limits: {r.planned.limits.describe()}")
        lines += [f"plan: {n}" for n in r.planned.plan.notes]
        for key, idx in r.planned.plan.deferred.items():
            lines.append(f"deferred: {s.relPath(key)}: {len(idx)} indices (no room in the queue: submit again later)")
    lines += notes
    if r.snapshot.adopted:
        lines.append(f"adopted from the queue (missing in the ledger): {', '.join(r.snapshot.adopted)}")
    if r.sent is not None:
        lines += [f"job {job_id}: {job.tag}" for job, job_id in r.sent.submitted]
        if r.sent.rejected:
            lines.append(f"rejected: {r.sent.rejected}")
        if r.sent.full:
            lines.append(f"queue full: {r.sent.full}: {r.sent.unsent} runs not submitted; submit again later, or watch")
    return "\n".join(lines) + "\n"


def _standingNotes(st: Standing) -> list[str]:
    out = []
    if st.sweep.runsNote:
        out.append(f"{st.sweep.shown}: {st.sweep.runsNote}")
    finals = st.causes(State.FINAL)
    if finals:
        causes = ", ".join(f"{c} {n}" for c, n in sorted(finals.items()))
        out.append(f"{st.sweep.shown}: {sum(finals.values())} final ({causes}), not submitted: "
                   f"pyexputils retry {st.sweep.shown} runs them again")  # fmt: skip
    if st.unknown:
        out.append(f"{st.sweep.shown}: nothing submitted: {st.unknown}")
    return out


# --- watch -----------------------------------------------------------------------------------------------
def cmdWatch(a: argparse.Namespace) -> int:
    if _detached(a):
        s = _session(a)
        s.load(a.experiments, a.runs, _overrides(a), command=True)  # checked before anything starts
        return cli_service.detach(a, s)
    o = WatchOptions(runs=a.runs, poll=a.poll or 10.0, timeout=a.timeout, cli=_overrides(a))
    return Watcher(_session(a), a.experiments, o, WatchDisplay(quiet=a.quiet, json=a.json)).run()


def _detached(a: argparse.Namespace) -> bool:
    """Whether the watch is detached (--detach, --daemon); checks the watch's flags."""
    if a.poll is not None and not a.poll > 0:
        raise PyExpUtilsError(f"--poll {a.poll}: expected a positive number of seconds")
    if a.detach and a.daemon:
        raise PyExpUtilsError("--detach (watcher jobs) or --daemon (a process here): one of them")
    if (a.detach or a.daemon) and a.timeout is not None:
        raise PyExpUtilsError("--timeout is for a watch on this terminal; a detached one ends with the sweep (or service stop)")
    return bool(a.detach or a.daemon)


# --- status, missing, show -------------------------------------------------------------------------------
def _look(a: argparse.Namespace, paths: Sequence[str], runs: int | None) -> tuple[Session, Round]:
    """Every index of these experiments judged, read-only (no lock, nothing written)."""
    s = _session(a)
    ledger = s.readLedger()
    try:
        sweeps = s.load(paths, runs, ledger=ledger)
        return s, s.round(ledger, sweeps, send=False, planning=False)
    finally:
        if ledger is not None:
            ledger.close()


def cmdStatus(a: argparse.Namespace) -> int:
    s, r = _look(a, a.experiments, a.runs)
    rows = [statusRow(s, st) for st in r.standings]
    if a.efficiency:
        ledger = s.readLedger()
        try:
            measured = s.measure(ledger, [st.sweep for st in r.standings], r.snapshot)
        finally:
            if ledger is not None:
                ledger.close()
        for row, st in zip(rows, r.standings):
            d = measured.get(st.sweep.path)
            row["efficiency"] = d.efficiency() if d is not None else []
            row["efficiency_total"] = efficiencyTotal(row["efficiency"])
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    head = ["experiment", "runs", "total", "done", "queued", "running", "to submit", "to retry", "final", "unknown"]
    keys = ["runs", "total", "done", "queued", "running", "missing", "retry", "final", "unknown"]
    print(table([head] + [[row["experiment"], *(str(row[k]) for k in keys)] for row in rows]))
    for row, st in zip(rows, r.standings):
        parts = [f"{what} by cause: " + ", ".join(f"{c} {n}" for c, n in sorted(row[key].items()))
                 for what, key in (("to retry", "retry_causes"), ("final", "final_causes")) if row[key]]  # fmt: skip
        if row["partial"]:
            parts.append(f"{row['partial']} not done but with results on disk (cut off, or failed after writing)")
        for part in parts:
            print(f"  {st.sweep.shown}: {part}")
        for note in _standingNotes(st):
            if "final" not in note:
                print(f"  {note}")
    for row in rows if a.efficiency else []:
        if not row["efficiency"]:
            print(f"{row['experiment']}: no array has an ended task yet: nothing to measure")
            continue
        t = row["efficiency_total"]
        print(f"{row['experiment']}: efficiency per array (used / requested, from the runner's records):")
        print(efficiencyTable(row["efficiency"]))
        if t["time_efficiency"] is not None:
            print(f"  total: {t['core_hours_used']:.2f} of {t['core_hours_requested']:.2f} core-hours requested used "
                  f"({t['time_efficiency']:.0%}), {t['timeouts']} TIMEOUT")  # fmt: skip
    return 0


def efficiencyTotal(arrays: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the arrays with a time limit: core-hours requested and used, their ratio, TIMEOUTs."""
    timed = [x for x in arrays if x["core_hours_requested"] is not None]
    asked = sum(x["core_hours_requested"] for x in timed)
    used = sum(x["core_hours_used"] for x in timed)
    return {"core_hours_requested": round(asked, 4), "core_hours_used": round(used, 4),
            "time_efficiency": round(used / asked, 4) if asked else None, "timeouts": sum(x["timeouts"] for x in arrays)}  # fmt: skip


def statusRow(s: Session, st: Standing) -> dict[str, Any]:
    c = st.counts()
    return {
        "experiment": st.sweep.shown, "runs": st.sweep.runs, "total": st.sweep.total, "done": c[State.DONE],
        "queued": c[State.QUEUED], "running": c[State.RUNNING], "missing": c[State.MISSING], "retry": c[State.RETRY],
        "final": c[State.FINAL], "unknown": c[State.UNKNOWN], "partial": st.partial(),
        "retry_causes": {str(k): v for k, v in st.causes(State.RETRY).items()},
        "final_causes": {str(k): v for k, v in st.causes(State.FINAL).items()},
    }  # fmt: skip


def cmdMissing(a: argparse.Namespace) -> int:
    _, r = _look(a, a.experiments, a.runs)
    notDone = [x for x in State if x is not State.DONE]
    if a.json:
        print(json.dumps([{"experiment": st.sweep.shown, "runs": st.sweep.runs, "total": st.sweep.total, "count": len(idx),
                           "indices": rangesText(idx)} for st in r.standings for idx in [st.indexArray(notDone)]], indent=1))  # fmt: skip
        return 0
    for st in r.standings:
        ranges = rangesText(st.indexMask(notDone))
        print(ranges if len(r.standings) == 1 else f"{st.sweep.shown}: {ranges}")
    return 0


def cmdShow(a: argparse.Namespace) -> int:
    config = getConfig()
    exp: ExperimentDescription = loadExperiment(a.experiment)
    s = _session(a)
    ledger = s.readLedger()
    try:
        runs = a.runs if a.runs is not None else (ledger.runs(os.path.realpath(a.experiment)) if ledger else None)
        i = exp.checkIndex(a.index, runs if runs is not None else a.index // exp.numPermutations() + 1)
        sweeps = s.load([a.experiment], max(runs or 1, i // exp.numPermutations() + 1), ledger=ledger)
        r = s.round(ledger, sweeps, send=False, planning=False)
        submissions = {x.tag: x for x in ledger.submissions(sweeps[0].path)} if ledger else {}
    finally:
        if ledger is not None:
            ledger.close()
    P = exp.numPermutations()
    st = r.standings[0].status(i)
    if a.json:
        sub = submissions.get(st.tag) if st.tag else None
        print(json.dumps({
            "experiment": a.experiment, "index": i, "setting": i % P, "settings": P, "run": i // P,
            "parameters": exp.getPermutation(i), "save_path": exp.interpolateSavePath(i),
            "command": buildCommand(config.command, exp, i, os.path.realpath(a.experiment)) if config.command else None,
            "state": str(st.state), "cause": None if st.cause is None else str(st.cause), "reason": st.reason or None,
            "partial": st.partial, "attempts": st.attempts, "exit": st.exit,
            "logs": None if not st.tag else [s.relPath(p) for p in s.logPaths(st.tag, i)],
            "submission": None if sub is None else {"job": sub.job_id, "tag": sub.tag, "backend": sub.backend, "provenance": sub.provenance},
        }, indent=1, default=str))  # fmt: skip
        return 0
    print(f"experiment: {a.experiment}")
    print(f"index: {i} (setting {i % P} of {P}, run {i // P})")
    print("parameters: " + json.dumps(exp.getPermutation(i), default=str))
    print(f"save path: {exp.interpolateSavePath(i)}")
    if config.command:
        print(f"command: {buildCommand(config.command, exp, i, os.path.realpath(a.experiment))}")
    else:
        print(f"command: (none: {config.path or 'config.json'} has no command)")
    state = f"{st.state}" + (f" ({st.cause})" if st.cause and st.state is not State.DONE else "")
    print(f"state: {state}" + (f": {st.reason}" if st.reason else "") + (" [results on disk are partial]" if st.partial else ""))
    print(f"attempts: {st.attempts}" + ("" if st.exit is None else f", last exit code {st.exit}"))
    if st.tag:
        out, err = s.logPaths(st.tag, i)
        print(f"logs: {s.relPath(out)} {s.relPath(err)}")
        sub = submissions.get(st.tag)
        if sub is not None:
            prov = sub.provenance
            commit = f"git {str(prov['git_commit'])[:12]}{' (dirty)' if prov.get('git_dirty') else ''}" if prov.get("git_commit") else "no git"
            print(f"submitted: job {sub.job_id} ({st.tag}), {commit}, pyexputils {prov.get('version', '?')}")
    return 0


# --- cancel, retry ---------------------------------------------------------------------------------------
def cmdCancel(a: argparse.Namespace) -> int:
    s, r = _look(a, a.experiments, None)
    jobs = sorted({j for st in r.standings for j in r.snapshot.jobs.get(st.sweep.path, set())})
    held = sum(len(r.snapshot.live.get(st.sweep.path, {})) for st in r.standings)
    if a.json:
        print(json.dumps({"cancelled": jobs, "indices": held,
                          "not_cancelled": {st.sweep.shown: st.unknown for st in r.standings if st.unknown}}))  # fmt: skip
    for st in r.standings:
        if st.unknown and not a.json:  # not ours for sure: the user decides
            print(f"{st.sweep.shown}: not cancelled: {st.unknown}")
    if not jobs:
        if not a.json:
            print("nothing to cancel: no live jobs of these experiments")
        return 0
    noteCancelled(s.state, jobs)  # first: a watch must never take these for preemptions
    s.backend.cancel(jobs)
    try:
        with s.openLedger(wait=2.0) as ledger:
            ledger.markCancelled(jobs)
    except LedgerBusy:
        pass  # a watch holds the ledger; it reads the note
    if not a.json:
        print(f"cancelled {len(jobs)} jobs ({held} indices queued or running): {' '.join(jobs)}")
    return 0


def cmdRetry(a: argparse.Namespace) -> int:
    s = _session(a)
    causes = set(a.cause or Cause)
    sweeps = s.load(a.experiments, a.runs, _overrides(a), command=True)
    with s.openLedger() as ledger:
        first = s.round(ledger, sweeps, send=False)
        retried = []
        for st in first.standings:
            picked = {i: st.status(i).attempts for i in st.indices([State.FINAL]) if st.status(i).cause in causes}
            if picked:
                ledger.reset(st.sweep.path, picked)
                retried.append({"experiment": st.sweep.shown, "count": len(picked), "indices": indexRanges(sorted(picked))})
                if not a.json:
                    print(f"{st.sweep.shown}: retrying {len(picked)} indices: {indexRanges(sorted(picked))}")
        if not retried:
            which = "" if a.cause is None else " (" + ", ".join(sorted(map(str, causes))) + ")"
            print(json.dumps({"retried": []}) if a.json else f"nothing to retry: no index ended with a final cause{which}")
            return 0
        r = s.round(ledger, sweeps)
    s.backend.finish()
    ran = cli_report.localOutcome(s, r)
    if a.json:
        print(json.dumps({"retried": retried, **cli_report.submitJson(s, r, False, ran)}, indent=1))
    else:
        sys.stdout.write(submitSummary(s, r, False))
    if r.sent is not None and r.sent.rejected:
        print(f"pyexputils: error: {r.sent.rejected.splitlines()[0]}", file=sys.stderr)
        return 2
    for line in [] if a.json else cli_report.outcomeLines(ran):
        print(line)
    return 1 if any(row["failed"] for row in ran) else 0


COMMANDS: dict[str, Handler] = {
    "submit": cmdSubmit, "watch": cmdWatch, "status": cmdStatus, "missing": cmdMissing, "show": cmdShow,
    "cancel": cmdCancel, "retry": cmdRetry,
}  # fmt: skip
