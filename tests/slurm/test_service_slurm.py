"""The detached watcher service on the real local Slurm (issue 9): `submit --watch --detach` returns at once and a
chain of watcher jobs keeps the sweep going through handovers, a watcher cancelled with scancel, killed by its
time limit or by its node going down; `service stop` ends the chain; a site that forbids sbatch inside jobs is
said; `notify` runs once per sweep end.

Phase A runs five scenarios at once (each a project of its own, so a chain of its own); phase B (root only)
takes the node down. One module fixture runs them (about 4 minutes); each test checks its scenario. Every
scenario checks, from the watchers' own logs, that no two watchers of a chain ever ran at the same time, and
from the runner's status files that no index ran twice at once. The module prints a table of watchers,
handovers and the gaps between them (and appends it to $PYX_SERVICE_TABLE if set).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import faultlib as fl

pytestmark = pytest.mark.slurm
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (scontrol update)")
STAMP = re.compile(r"^\[[^\]]* (\d+\.\d+)\] (.*)$")


@dataclass
class Watcher:
    job: str
    start: float  # its first log line
    end: float  # its last log line
    lines: list[str]
    text: str  # the whole log, Slurm's own lines too

    def has(self, what: str) -> bool:
        return any(what in line for line in self.lines)


def watchers(root: Path) -> list[Watcher]:
    """Every watcher job's log in ``root``'s results, in start order."""
    out = []
    for path in (root / "results" / ".pyexputils" / "service" / "logs").glob("watcher-*.log"):
        text = path.read_text(errors="replace")
        stamped = [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, text.splitlines()) if m]
        if stamped:
            out.append(Watcher(path.stem.split("-")[1], stamped[0][0], stamped[-1][0], [t for _, t in stamped], text))
    return sorted(out, key=lambda w: w.start)


def gaps(ws: list[Watcher]) -> list[float]:
    """Seconds from each watcher's last line to the next one's first (negative: they overlapped)."""
    return [round(b.start - a.end, 2) for a, b in zip(ws, ws[1:])]


def outsiders(root: Path) -> list[str]:
    """Processes of ours (pyexputils in their command line) working in ``root`` outside any Slurm job."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "pyexputils" not in cmd or os.readlink(f"/proc/{pid}/cwd") != str(root):
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if b"SLURM_JOB_ID=" not in environ:
            found.append(f"{pid}: {cmd}")
    return found


def project(root: Path, cases: list[str], watch: dict[str, Any], slurm: dict[str, Any] | None = None) -> str:
    exp = fl.makeProject(root, root.name, cases, slurm or {})
    cfg = json.loads((root / "config.json").read_text())
    cfg["watch"] = {"poll": 2, "notify": "cat >> notified.jsonl", **watch}
    (root / "config.json").write_text(json.dumps(cfg))
    return exp


def notes(root: Path) -> list[dict[str, Any]]:
    path = root / "notified.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def chainJobs(root: Path) -> list[str]:
    chain = json.loads((root / "results" / ".pyexputils" / "service" / "chain.json").read_text())
    out = subprocess.run(["squeue", "--me", "-h", "-n", chain["name"], "-o", "%i %T"], capture_output=True, text=True)
    return out.stdout.split()


@dataclass
class Run:
    """One scenario's outcome."""

    name: str
    root: Path
    exp: str
    submit: subprocess.CompletedProcess[str] | None = None
    submitSeconds: float = 0.0
    wall: float = 0.0
    outsiders: list[str] | None = None
    extra: dict[str, Any] | None = None
    error: str | None = None

    @property
    def watchers(self) -> list[Watcher]:
        return watchers(self.root)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return fl.cli(self.root, *args)

    def status(self) -> dict[str, Any]:
        return fl.statusJson(self.root, self.exp)


def detach(r: Run, *args: str, environ: dict[str, str] | None = None, watch: bool = False) -> subprocess.CompletedProcess[str]:
    argv = ["watch", r.exp, "--detach"] if watch else ["submit", r.exp, "--watch", "--detach", *args]
    t = time.time()
    out = subprocess.run([sys.executable, "-m", "pyexputils", *argv], cwd=r.root, env=environ or fl.env(),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    r.submitSeconds = round(time.time() - t, 2)
    return out


def settle(r: Run, timeout: float = 420, during: Callable[[], None] | None = None) -> None:
    """Wait until the chain wrote its end summary; meanwhile check for processes of ours outside Slurm."""
    summary = r.root / "results" / ".pyexputils" / "service" / "summary.json"
    seen: list[str] = []
    t0 = time.time()
    if during is not None:
        during()
    while not summary.exists():
        seen += outsiders(r.root)
        if time.time() - t0 > timeout:
            raise AssertionError(f"{r.name}: no end of the sweep within {timeout:.0f} s")
        time.sleep(1.0)
    fl.waitFor(lambda: not chainJobs(r.root), 60, f"{r.name}: the chain's jobs to end")
    r.outsiders = seen
    r.wall = round(time.time() - t0, 1)


def holding(r: Run, n: int = 1) -> Callable[[], bool]:
    """True once ``n`` watchers have held the ledger."""
    return lambda: sum(w.has("holds the ledger") for w in r.watchers) >= n


# --- scenarios ---------------------------------------------------------------------------------------------
def scHandover(base: Path) -> Run:
    r = Run("handover", base / "handover", "")
    r.exp = project(r.root, ["ok:3", "slow_once:150", "fail_once:1", "fail_always:1", "ok:20"],
                    {"time": "0:01:00", "notify_on": ["end", "final"]}, {"time": "0:02:00"})  # fmt: skip
    r.submit = detach(r, "--runs", "1")
    settle(r)
    return r


def scScancel(base: Path) -> Run:
    r = Run("scancel", base / "scancel", "")
    r.exp = project(r.root, ["ok:30", "ok:35"], {"time": "0:05:00"})
    r.submit = detach(r)

    def cancel() -> None:
        fl.waitFor(holding(r), 90, "the first watcher to hold the ledger")
        first = r.watchers[0].job
        subprocess.run(["scancel", first], check=True)
        r.extra = {"cancelled": first}

    settle(r, during=cancel)
    return r


def scTimeLimit(base: Path) -> Run:
    r = Run("timelimit", base / "timelimit", "")
    r.exp = project(r.root, ["ok:95"], {"time": "0:01:00", "handover": 0}, {"time": "0:03:00"})
    r.submit = detach(r)
    settle(r)
    return r


def scStop(base: Path) -> Run:
    r = Run("stop", base / "stop", "")
    r.exp = project(r.root, ["ok:50", "ok:52"], {"time": "0:05:00"})
    r.submit = detach(r)
    fl.waitFor(holding(r), 90, "the watcher to hold the ledger")
    fl.waitFor(lambda: r.status()["running"] + r.status()["queued"] == 2, 60, "the runs to be submitted")
    first = json.loads(r.cli("service", "status", "--json").stdout)
    byHand = r.cli("watch", r.exp, "--timeout", "5")  # a watch typed on the login node meanwhile
    logs = r.cli("service", "logs")
    stop = r.cli("service", "stop")
    after = json.loads(r.cli("service", "status", "--json").stdout)
    left = chainJobs(r.root)
    runs = r.status()
    again = detach(r, watch=True)
    settle(r)
    r.extra = {"first": first, "stop": stop, "after": after, "left": left, "runs": runs, "again": again, "byHand": byHand, "logs": logs}
    return r


NO_SBATCH_IN_JOBS = """#!/bin/bash
# a site that forbids sbatch on compute nodes: refuse inside a job, else the real sbatch
if [ -n "$SLURM_JOB_ID" ]; then
    echo "sbatch: error: Batch job submission failed: Access/permission denied" >&2
    exit 1
fi
exec REAL "$@"
"""


def scNoSbatchInJobs(base: Path) -> Run:
    r = Run("no_sbatch", base / "no_sbatch", "")
    r.exp = project(r.root, ["ok:10"], {"time": "0:05:00"})
    wrapper = r.root / "bin"
    wrapper.mkdir()
    real = shutil.which("sbatch")
    assert real
    (wrapper / "sbatch").write_text(NO_SBATCH_IN_JOBS.replace("REAL", real))
    (wrapper / "sbatch").chmod(0o755)
    environ = {**fl.env(), "PATH": f"{wrapper}{os.pathsep}{os.environ['PATH']}"}
    r.submit = detach(r, environ=environ)
    settle(r)
    r.extra = {"status": r.cli("service", "status").stdout}
    return r


def scCrashLoop(base: Path) -> Run:
    r = Run("crash_loop", base / "crash_loop", "")
    r.exp = project(r.root, ["ok:15"], {"time": "0:05:00"})
    r.submit = detach(r)
    fl.waitFor((r.root / "results" / ".pyexputils" / "service" / "alive").exists, 90, "the first watcher's first round")
    (r.root / "results" / ".pyexputils" / "ledger.sqlite").write_bytes(b"not a database " * 1000)  # every watcher fails
    fl.waitFor(lambda: not chainJobs(r.root), 180, "the chain to stop")
    r.extra = {"status": r.cli("service", "status")}
    return r


def scNodeDown(base: Path) -> Run:
    r = Run("node_down", base / "node_down", "")
    r.exp = project(r.root, ["ok:25", "ok:26"], {"time": "0:05:00"})
    r.submit = detach(r)

    def down() -> None:
        fl.waitFor(holding(r), 90, "the watcher to hold the ledger")
        fl.waitFor(lambda: r.status()["running"] == 2, 90, "both runs to start")
        node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=pyx-service-test"], check=True)
        time.sleep(3)
        state = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True).stdout.split()
        if not state or not state[0].startswith("idle"):
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)

    settle(r, during=down)
    return r


PHASE_A = [scHandover, scScancel, scTimeLimit, scStop, scNoSbatchInJobs, scCrashLoop]


def guarded(fn: Callable[[Path], Run], base: Path) -> Run:
    try:
        return fn(base)
    except Exception:
        return Run(fn.__name__[2:].lower(), base, "", error=traceback.format_exc())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, slurm_cluster: Any) -> Iterator[dict[str, Run]]:
    base = tmp_path_factory.mktemp("service")
    t0 = time.time()
    out: dict[str, Run] = {}
    only = set(filter(None, os.environ.get("PYX_SERVICE_ONLY", "").split(",")))  # a subset, while developing
    phaseA = [fn for fn in PHASE_A if not only or fn.__name__[2:].lower() in only]
    with ThreadPoolExecutor(max(1, len(phaseA))) as pool:
        for r in pool.map(lambda fn: guarded(fn, base), phaseA):
            out[r.name] = r
    if os.geteuid() == 0 and (not only or "nodedown" in only):
        r = guarded(scNodeDown, base)
        out[r.name] = r
    yield out
    rows = [f"watcher service scenarios ({'with' if slurm_cluster.accounting else 'without'} accounting), {time.time() - t0:.0f} s:",
            f"{'scenario':<10} {'submit s':>8} {'wall s':>7} {'watchers':>8}  handover gaps (s)"]  # fmt: skip
    for r in out.values():
        ws = r.watchers if r.error is None else []
        rows.append(f"{r.name:<10} {r.submitSeconds:>8} {r.wall:>7} {len(ws):>8}  {gaps(ws)}" + (" ERROR" if r.error else ""))
    rep = request.config.pluginmanager.get_plugin("terminalreporter")
    if rep is not None:
        rep.write_line("")
        for line in rows:
            rep.write_line(line)
    if os.environ.get("PYX_SERVICE_TABLE"):
        with open(os.environ["PYX_SERVICE_TABLE"], "a") as f:
            f.write("\n".join(rows) + "\n")


def scenario(runs: dict[str, Run], name: str) -> Run:
    if name not in runs:
        pytest.skip(f"scenario {name} not run (PYX_SERVICE_ONLY)")
    return runs[name]


def common(r: Run, done: int, final: int = 0) -> list[Watcher]:
    """What every scenario shares: no error, the submit returned at once, the sweep settled with these
    counts, no process of ours outside Slurm, one watcher at a time, no index run twice at once."""
    assert r.error is None, r.error
    assert r.submit is not None and r.submit.returncode == 0, r.submit.stderr
    assert "keeps the sweep going" in r.submit.stdout and r.submitSeconds < 30
    st = r.status()
    assert (st["done"], st["final"], st["queued"] + st["running"]) == (done, final, 0), st
    assert r.outsiders == [], r.outsiders
    ws = r.watchers
    assert ws, "no watcher log"
    assert all(g >= 0 for g in gaps(ws)), f"two watchers at once: {gaps(ws)}"
    assert fl.overlaps(fl.intervals(r.root / "results")) == []
    assert not (r.root / "CONCURRENT").exists()
    return ws


def endNotes(r: Run) -> list[dict[str, Any]]:
    return [n for n in notes(r.root) if n["event"] == "end"]


def test_handovers_keep_the_sweep_going_and_notify_once(runs: dict[str, Run]) -> None:
    r = scenario(runs, "handover")
    ws = common(r, done=4, final=1)
    handovers = [w for w in ws if w.has("handing over to job")]
    assert len(handovers) >= 2, [w.lines for w in ws]
    h = fl.history(r.root / "results")
    assert "TIMEOUT" in sum(h.verdicts.values(), []), h.verdicts
    ends = endNotes(r)
    assert len(ends) == 1
    assert (ends[0]["total"], ends[0]["done"], ends[0]["final"], ends[0]["final_causes"]) == (5, 4, 1, {"FAILED": 1})
    finals = [n for n in notes(r.root) if n["event"] == "final"]
    assert [(n["index"], n["cause"]) for n in finals] == [(3, "FAILED")]
    assert sum(w.has("notify (end)") for w in ws) == 1
    assert ws[-1].has("cancelled the successor") and ws[-1].has("the sweep is settled")


def test_a_cancelled_watcher_is_followed_by_its_successor(runs: dict[str, Run]) -> None:
    r = scenario(runs, "scancel")
    ws = common(r, done=2)
    assert r.extra is not None
    first = next(w for w in ws if w.job == r.extra["cancelled"])
    assert first.has("stops: signal SIGTERM")
    later = [w for w in ws if w.start > first.start]
    assert later and later[0].has("holds the ledger")
    assert len(endNotes(r)) == 1


def test_a_watcher_killed_by_its_time_limit_is_followed(runs: dict[str, Run]) -> None:
    r = scenario(runs, "timelimit")
    ws = common(r, done=1)
    killed = [w for w in ws if "DUE TO TIME LIMIT" in w.text]
    assert killed and killed[0].has("stops: signal SIGTERM")
    assert not any(w.has("handing over") for w in ws)  # handover 0: the limit itself ended them
    assert len(endNotes(r)) == 1


def test_stop_ends_the_chain_and_a_later_detach_starts_a_fresh_one(runs: dict[str, Run]) -> None:
    r = scenario(runs, "stop")
    ws = common(r, done=2)
    assert r.extra is not None
    first, stop, after = r.extra["first"], r.extra["stop"], r.extra["after"]
    assert first["running"] and first["pending"] and not first["stopped"]  # one watcher, one successor
    byHand = r.extra["byHand"]
    assert byHand.returncode == 2 and "holds the ledger" in byHand.stderr and "service status" in byHand.stderr
    assert f"watcher job {first['running'][0]} starts" in r.extra["logs"].stdout
    assert stop.returncode == 0 and "stopped the watcher service" in stop.stdout, stop.stderr
    assert r.extra["left"] == []  # no watcher queued or running after stop
    assert after["running"] == [] and after["pending"] == [] and after["stopped"] is True
    runs = r.extra["runs"]  # stop leaves the sweep's jobs alone: none cancelled
    assert runs["final"] == 0 and runs["running"] + runs["queued"] + runs["done"] == 2, runs
    again = r.extra["again"]
    assert again.returncode == 0, again.stderr
    ends = endNotes(r)
    assert len(ends) == 1 and ends[0]["chain"] != first["chain"]
    assert any(w.has("stops: signal SIGTERM") for w in ws)


def test_a_site_without_sbatch_in_jobs_is_told_to_use_the_daemon(runs: dict[str, Run]) -> None:
    r = scenario(runs, "no_sbatch")
    ws = common(r, done=1)
    assert ws[0].has("cannot queue a successor: sbatch rejected") and "Access/permission denied" in ws[0].text
    status = r.extra["status"] if r.extra else ""
    assert "problem: watcher " in status and "watch EXP... --daemon" in status


def test_a_crash_loop_stops_the_chain(runs: dict[str, Run]) -> None:
    r = scenario(runs, "crash_loop")
    assert r.error is None, r.error
    ws = r.watchers
    assert len(ws) == 7, [w.lines[-1] for w in ws]  # the one that worked, five that failed, the one that stopped
    assert all("ledger.sqlite" in w.text and "not a database" in w.text for w in ws[1:6])
    assert ws[-1].has("5 watchers in a row ended before finishing a round")
    assert chainJobs(r.root) == []
    status = r.extra["status"] if r.extra else None
    assert status is not None and status.returncode == 0, status
    assert "problem: watcher " in status.stdout and "5 watchers in a row" in status.stdout


@ROOT_ONLY
def test_a_watcher_whose_node_went_down_is_followed(runs: dict[str, Run]) -> None:
    r = scenario(runs, "node_down")
    ws = common(r, done=2)
    assert len(ws) >= 2
    assert ws[0].has("stops: signal SIGTERM") or not ws[0].has(" ends (")
    h = fl.history(r.root / "results")
    assert "NODE_FAIL" in sum(h.verdicts.values(), []), h.verdicts
