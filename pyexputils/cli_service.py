"""``pyexputils service status | logs | stop`` and the ``--detach`` / ``--daemon`` starts of a watcher service.

See :mod:`pyexputils.runner.service`. Run from the project (any folder below its config).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time
from typing import Any

from pyexputils.cli_analysis import Handler
from pyexputils.display import table
from pyexputils.errors import PyExpUtilsError
from pyexputils.models import getConfig
from pyexputils.runner.backend import BackendError
from pyexputils.runner.service import Chain, Mode, liveOf, runWatcher, startService, stopService
from pyexputils.runner.session import Session
from pyexputils.runner.statedir import StateDir

def register(sub: Any) -> dict[str, Handler]:
    """Add ``service`` to the command line's subparsers."""
    p = sub.add_parser("service", help="the detached watcher of a sweep (submit --watch --detach): status, logs, stop")
    ss = p.add_subparsers(dest="service_cmd", required=True, metavar="ACTION")
    st = ss.add_parser("status", help="which watcher runs, where the sweep stands, how it ended")
    st.add_argument("--json", action="store_true", help="print JSON")
    lg = ss.add_parser("logs", help="the log of the running (else the last) watcher")
    lg.add_argument("--tail", type=int, default=50, metavar="N", help="last N lines (0: all; default 50)")
    lg.add_argument("--job", metavar="ID", help="this watcher job's log")
    lg.add_argument("--all", action="store_true", help="every watcher's log, oldest first")
    sp = ss.add_parser("stop", help="end the watcher chain (or daemon); --cancel also cancels the sweep's jobs")
    sp.add_argument("--cancel", action="store_true", help="also cancel the live jobs of the watched experiments")
    rn = ss.add_parser("run", help="(internal) one watcher: what a watcher job or the daemon runs")
    rn.add_argument("--chain", required=True)
    rn.add_argument("--daemon", action="store_true")
    return {"service": cmdService}


def cmdService(a: argparse.Namespace) -> int:
    if a.service_cmd == "run":
        return runWatcher(a.chain, daemon=a.daemon)
    s = Session(getConfig())
    chain = Chain.read(s.state)
    if a.service_cmd == "status":
        return status(s, chain, a.json)
    if chain is None:
        print(f"no watcher service has run for {s.relPath(s.state.resultsRoot)} (pyexputils submit EXP --watch --detach starts one)")
        return 0
    if a.service_cmd == "logs":
        return logs(s.state, chain, a.tail, a.job, a.all)
    return stop(s, chain, a.cancel)


def detach(a: argparse.Namespace, s: Session) -> int:
    """``--detach`` / ``--daemon``: start the service and say how to follow it."""
    mode = Mode.DAEMON if a.daemon else Mode.SLURM
    cli = {k: getattr(a, k, None) for k in ("throttle", "runs_per_task", "parallel")}
    chain, who = startService(s, a.experiments, a.runs, cli, mode, poll=a.poll)
    if mode is Mode.DAEMON:
        print(f"watch daemon pid {who} keeps the sweep going on this machine; log {s.relPath(s.state.serviceFile('daemon.log'))}")
    else:
        print(f"watcher job {who} ({chain.name}) keeps the sweep going; its log: {s.relPath(s.state.watcherLog(who))}")
    print("follow it: pyexputils service status | pyexputils service logs | pyexputils service stop")
    return 0


def status(s: Session, chain: Chain | None, asJson: bool) -> int:
    from pyexputils.cli import statusRow  # the one status row (cli imports this module)

    if chain is None:
        if asJson:
            print(json.dumps({"chain": None}))
        else:
            print(f"no watcher service has run for {s.relPath(s.state.resultsRoot)} (pyexputils submit EXP --watch --detach starts one)")
        return 0
    state = s.state
    try:
        live = liveOf(chain, state)
        liveErr = None
    except BackendError as e:
        live, liveErr = None, str(e)
    stopped = chain.stopped(state)
    summary = _readJson(state.serviceFile("summary.json"))
    ended = summary if summary and summary.get("chain") == chain.id else None
    problem = _problem(state, chain)
    rows: list[dict[str, Any]] = []
    sweepErr = None
    existing = [s.relPath(p) for p in chain.experiments if os.path.exists(p)]
    if existing:
        s2 = Session(s.config, chain.backend)
        try:
            ledger = s2.readLedger()
            try:
                sweeps = s2.load(existing, chain.runs, ledger=ledger)
                rows = [statusRow(s2, st) for st in s2.round(ledger, sweeps, send=False).standings]
            finally:
                if ledger is not None:
                    ledger.close()
        except PyExpUtilsError as e:  # the service's own state is still worth showing
            sweepErr = str(e).splitlines()[0]
    log = _currentLog(state, chain, live)
    if asJson:
        print(json.dumps({
            "chain": chain.id, "mode": chain.mode, "name": chain.name, "started": chain.started, "stopped": stopped,
            "running": live.running if live else None, "pending": live.pending if live else None, "error": liveErr,
            "ended": ended, "problem": problem, "log": log, "experiments": rows, "sweep_error": sweepErr,
        }, indent=2))  # fmt: skip
        return 0
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(chain.started))
    print(f"watcher service of {s.relPath(state.resultsRoot)}: chain {chain.id} ({chain.mode}), started {started}")
    if liveErr:
        print(f"  cannot ask Slurm: {liveErr}")
    elif live is not None:
        what = "daemon pid" if chain.mode is Mode.DAEMON else "watcher job"
        if live.running:
            print(f"  running: {what} {' '.join(live.running)}" + (f"; successor queued: {' '.join(live.pending)}" if live.pending else ""))
        elif live.pending:
            print(f"  queued: {what} {' '.join(live.pending)} (waiting to start)")
        else:
            print("  nothing runs: " + ("it was stopped (pyexputils service stop)" if stopped else
                                        "the sweep ended" if ended else "the chain broke off (see the log)"))  # fmt: skip
    if ended:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ended["time"]))
        causes = ", ".join(f"{c} {n}" for c, n in sorted(ended["final_causes"].items()))
        print(f"  ended {at}: {ended['done']}/{ended['total']} done, {ended['final']} final" + (f" ({causes})" if causes else ""))
    if problem:
        print(f"  problem: {problem}")
        print("  (if this site does not allow sbatch inside jobs: pyexputils service stop, then pyexputils watch EXP... --daemon)")
    if sweepErr:
        print(f"  cannot read the sweep: {sweepErr}")
    if rows:
        keys = ["runs", "total", "done", "queued", "running", "missing", "retry", "final", "unknown"]
        head = ["experiment", "runs", "total", "done", "queued", "running", "to submit", "to retry", "final", "unknown"]
        print("\n".join("  " + line for line in table([head] + [[r["experiment"], *(str(r[k]) for k in keys)] for r in rows]).splitlines()))
    if log:
        print(f"  log: {s.relPath(log)}")
    return 0


def logs(state: StateDir, chain: Chain, tail: int, job: str | None, every: bool) -> int:
    if chain.mode is Mode.DAEMON:
        paths = [state.serviceFile("daemon.log")]
    elif job:
        paths = [state.watcherLog(job)]
    else:
        found = _watcherLogs(state)
        paths = found if every else found[-1:]
        if not every:
            try:
                live = liveOf(chain, state)
                running = [state.watcherLog(j) for j in live.running if os.path.exists(state.watcherLog(j))]
                paths = running[:1] or paths
            except BackendError:
                pass
    if not paths or not all(os.path.exists(p) for p in paths):
        missing = paths[0] if paths else os.path.dirname(state.watcherLog("x"))
        raise PyExpUtilsError(f"{missing}: no watcher log yet")
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        if len(paths) > 1 or every:
            print(f"==> {p} <==")
        for line in lines[-tail:] if tail > 0 else lines:
            print(line)
    return 0


def stop(s: Session, chain: Chain, cancel: bool) -> int:
    stopped = stopService(s.state, chain)
    what = "daemon pid" if chain.mode is Mode.DAEMON else "watcher jobs"
    print(f"stopped the watcher service (chain {chain.id})" + (f": cancelled {what} {' '.join(stopped)}" if stopped else ": nothing was running"))
    if cancel:
        from pyexputils.cli import cmdCancel

        existing = [s.relPath(p) for p in chain.experiments if os.path.exists(p)]
        if existing:
            return cmdCancel(argparse.Namespace(experiments=existing, backend=chain.backend))
    return 0


def _watcherLogs(state: StateDir) -> list[str]:
    def jobId(path: str) -> int:
        m = re.search(r"watcher-(\d+)\.log$", path)
        return int(m.group(1)) if m else -1

    return sorted(glob.glob(state.watcherLog("*")), key=jobId)


def _currentLog(state: StateDir, chain: Chain, live: Any) -> str | None:
    if chain.mode is Mode.DAEMON:
        return state.serviceFile("daemon.log")
    if live is not None:
        for j in live.running:
            return state.watcherLog(j)
    found = _watcherLogs(state)
    return found[-1] if found else None


def _problem(state: StateDir, chain: Chain) -> str | None:
    try:
        with open(state.serviceFile("problem.txt"), encoding="utf-8") as f:
            line = f.read().strip()
    except FileNotFoundError:
        return None
    when, _, text = line.partition(" ")
    return text if when.isdigit() and int(when) >= int(chain.started) else None


def _readJson(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


__all__ = ["detach", "register"]
