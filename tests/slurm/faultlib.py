"""Helpers of the watch fault matrix (tests/slurm/test_watch_faults.py): a small project whose program
misbehaves on purpose, a `pyexputils watch` subprocess per scenario, an sbatch wrapper for the faults
real Slurm cannot produce on demand, and the checks every scenario shares (results, no index running
twice at once, the ledger's history)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent.parent

# The user program: python prog.py INDEX CASE, CASE = MODE:SECONDS. Every run takes a per-index flock
# first: if another run of the same index holds it, the two ran at the same time (file CONCURRENT).
PROG = r'''
import fcntl, json, os, signal, sys, time
idx, case = int(sys.argv[1]), sys.argv[2]
mode, secs = case.split(":")
secs = float(secs)
attempt = int(os.environ.get("PYX_ATTEMPT", "0"))
if mode == "slow_once" and attempt > 1:  # slow the first time only (a TIMEOUT, then a quick rerun)
    secs = 1.0
os.makedirs("locks", exist_ok=True)
fd = os.open(f"locks/{idx}.lock", os.O_CREAT | os.O_RDWR, 0o644)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    with open("CONCURRENT", "a") as f:
        f.write(f"{idx} {os.environ.get('SLURM_JOB_ID')} {time.time()}\n")
print(f"index {idx} case {case} attempt {attempt} job {os.environ.get('SLURM_JOB_ID')} resubmitted {os.environ.get('PYX_RESUBMITTED')}", flush=True)
if mode == "oom":
    # needs 300 MB; the node has no cgroups to enforce --mem, so the program enforces it like the kernel's
    # OOM killer would: SIGKILL when the job asked for less
    have = int(os.environ.get("SLURM_MEM_PER_NODE") or 0) or int(os.environ.get("SLURM_MEM_PER_CPU") or 0) * int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    if have < 300:
        print(f"needs 300 MB, the job has {have} MB: killed (like the OOM killer)", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
save = os.environ["PYX_SAVE_PATH"]

def saveResult(**extra):
    os.makedirs(save, exist_ok=True)
    with open(os.path.join(save, ".tmp"), "w") as f:
        json.dump({"idx": idx, "attempt": attempt, "job": os.environ.get("SLURM_JOB_ID"), **extra}, f)
    os.replace(os.path.join(save, ".tmp"), os.path.join(save, "r.json"))

if mode == "ckpt":  # RL-style checkpointing: the curve so far, saved under the final name every 2 s
    t0 = time.time()
    while time.time() - t0 < secs:
        saveResult(partial=True, seconds=round(time.time() - t0, 1))
        time.sleep(2)
elif mode == "crash" and attempt == 1:  # writes its results, then crashes
    saveResult(partial=True)
    sys.exit(1)
else:
    time.sleep(secs)
if mode == "fail_always" or (mode == "fail_once" and attempt == 1):
    print(f"failing on purpose (attempt {attempt})", file=sys.stderr)
    sys.exit(3)
saveResult(partial=False)
'''

# sbatch wrapper (PATH): injects faults real Slurm cannot produce on demand, and wraps the real sbatch.
#   FAULT_FAIL_FIRST=N: the first N calls fail like a controller that does not answer in time;
#   file <bin>/armed: after the next successful real sbatch, SIGKILL the caller (the watch), then exit.
# Every successful call is logged to <bin>/sbatch.log: {"time", "job", "tag"}.
WRAPPER = r'''#!PYTHON
import json, os, re, signal, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
countFile = os.path.join(here, "count")
n = int(open(countFile).read() or 0) + 1 if os.path.exists(countFile) else 1
open(countFile, "w").write(str(n))
script = sys.stdin.read()
if n <= int(os.environ.get("FAULT_FAIL_FIRST", "0")):
    sys.stderr.write("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")
    sys.exit(1)
out = subprocess.run([os.environ["FAULT_REAL_SBATCH"], *sys.argv[1:]], input=script, capture_output=True, text=True)
sys.stdout.write(out.stdout)
sys.stderr.write(out.stderr)
sys.stdout.flush()
if out.returncode == 0 and "--test-only" not in sys.argv:
    m = re.search(r"--job-name[= ]+pyx-(\S+)", script)
    with open(os.path.join(here, "sbatch.log"), "a") as f:
        f.write(json.dumps({"time": time.time(), "job": out.stdout.strip().split(";")[0], "tag": m.group(1) if m else None}) + "\n")
    armed = os.path.join(here, "armed")
    if os.path.exists(armed):
        os.unlink(armed)
        os.kill(os.getppid(), signal.SIGKILL)
sys.exit(out.returncode)
'''


def makeProject(root: Path, name: str, cases: list[str], slurm: dict[str, Any]) -> str:
    """A project in ``root`` with one experiment ``experiments/<name>.json``: index i runs ``cases[i]``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["r.json"], "log_path": ".logs", "backend": "slurm",
        "command": f"{sys.executable} prog.py {{index}} {{case}}",
        "slurm": {"time": "0:01:00", "runs_per_task": 1, "max_failed_retries": 1, **slurm},
    }))  # fmt: skip
    (root / "experiments").mkdir(exist_ok=True)
    (root / "experiments" / f"{name}.json").write_text(json.dumps({"name": name, "metaParameters": {"case": cases}}))
    return f"experiments/{name}.json"


def makeWrapper(folder: Path) -> Path:
    """A folder holding the fault-injecting ``sbatch`` (put it first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    real = shutil.which("sbatch")
    assert real, "sbatch not on PATH"
    path = folder / "sbatch"
    path.write_text(WRAPPER.replace("PYTHON", sys.executable))
    path.chmod(0o755)
    (folder / "real").write_text(real)
    return folder


def env(wrapper: Path | None = None, **extra: str) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    if wrapper is not None:
        e["FAULT_REAL_SBATCH"] = (wrapper / "real").read_text()
        e["PATH"] = f"{wrapper}{os.pathsep}{e['PATH']}"
    return e


def cli(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``pyexputils ARGS`` in ``root`` (or ``cwd``), output captured."""
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=cwd or root, env=env(), capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def statusJson(root: Path, exp: str, cwd: Path | None = None) -> dict[str, Any]:
    """``pyexputils status EXP --json`` of the one experiment (from ``cwd``: a sub-folder works as well)."""
    out = cli(root, "status", os.path.relpath(root / exp, cwd or root), "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows[0]


def startWatch(root: Path, exp: str, environ: dict[str, str], tag: str = "", timeout: float = 600) -> subprocess.Popen[bytes]:
    """``pyexputils watch EXP --poll 2 --json`` in ``root``; stdout to watch<tag>.jsonl, stderr to watch<tag>.err."""
    out = open(root / f"watch{tag}.jsonl", "ab")
    err = open(root / f"watch{tag}.err", "ab")
    argv = [sys.executable, "-m", "pyexputils", "watch", exp, "--poll", "2", "--timeout", str(timeout), "--json"]
    p = subprocess.Popen(argv, cwd=root, env=environ, stdout=out, stderr=err)
    out.close()
    err.close()
    return p


def events(root: Path) -> list[dict[str, Any]]:
    """Every JSON event of every watch run in ``root`` (in order of the files' names, then lines)."""
    found: list[dict[str, Any]] = []
    for path in sorted(root.glob("watch*.jsonl")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a watch killed mid-line
    return found


# --- checks ------------------------------------------------------------------------------------------
@dataclass
class Interval:
    index: int
    start: float
    end: float | None  # None: the runner never wrote the index's end (killed without warning)
    job: str
    task: int
    attempt: int
    cause: str | None
    fileEnd: float  # the last event of its status file
    tag: str = ""  # the submission (status/<tag>/<task>.jsonl)


def intervals(resultsRoot: Path) -> list[Interval]:
    """[start, end] of every run of every index, from the runner's status files."""
    out: list[Interval] = []
    for path in sorted((resultsRoot / ".pyexputils" / "status").glob("*/*.jsonl")):
        open_: dict[int, dict[str, Any]] = {}
        last = 0.0
        runs: list[Interval] = []
        for line in path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            last = max(last, float(ev.get("time", 0)))
            if ev.get("event") == "start":
                open_[ev["index"]] = ev
            elif ev.get("event") == "end" and ev.get("index") in open_:
                s = open_.pop(ev["index"])
                runs.append(Interval(s["index"], s["time"], ev["time"], str(s["job"]), s["task"], s["attempt"], ev.get("cause"), 0))
        for s in open_.values():
            runs.append(Interval(s["index"], s["time"], None, str(s["job"]), s["task"], s["attempt"], None, 0))
        for r in runs:
            r.fileEnd = last
            r.tag = path.parent.name
        out += runs
    return out


def overlaps(runs: list[Interval]) -> list[tuple[Interval, Interval]]:
    """Pairs of runs of the same index whose [start, end] intersect (an unended run ends at its status
    file's last event)."""
    bad = []
    byIndex: dict[int, list[Interval]] = {}
    for r in runs:
        byIndex.setdefault(r.index, []).append(r)
    for rs in byIndex.values():
        rs.sort(key=lambda r: r.start)
        for a, b in zip(rs, rs[1:]):
            if b.start < (a.end if a.end is not None else a.fileEnd):
                bad.append((a, b))
    return bad


@dataclass
class History:
    verdicts: dict[int, list[str]]  # index -> causes, oldest attempt first
    attempts: dict[int, list[tuple[int, str]]]  # index -> (attempt, tag)
    submissions: dict[str, dict[str, Any]]  # tag -> row
    resources: dict[str, tuple[int | None, int | None, str]]  # tag -> (minutes, mem_mb, mem_key)

    @property
    def nAttempts(self) -> int:
        return sum(len(a) for a in self.attempts.values())


def history(resultsRoot: Path) -> History:
    db = sqlite3.connect(resultsRoot / ".pyexputils" / "ledger.sqlite")
    try:
        from pyexputils.runner.ledger import Ledger

        v: dict[int, list[str]] = {}
        a: dict[int, list[tuple[int, str]]] = {}
        ledger = Ledger.read(str(resultsRoot))
        if ledger is not None:
            with ledger:
                for experiment in sorted({s.experiment for s in ledger.submissions()}):
                    for idx, byAttempt in ledger.verdicts(experiment).items():
                        v.setdefault(idx, []).extend(str(x.cause) for _, x in sorted(byAttempt.items()))
                for idx, att, tag in ledger.attempts():
                    a.setdefault(idx, []).append((att, tag))
        cols = [d[1] for d in db.execute("PRAGMA table_info(submissions)")]
        subs = {r[0]: dict(zip(cols, r)) for r in db.execute("SELECT * FROM submissions")}
        res = {r[0]: (r[1], r[2], r[3]) for r in db.execute("SELECT tag, minutes, mem_mb, mem_key FROM run_resources")}
    finally:
        db.close()
    return History(v, a, subs, res)


def resultsOf(root: Path) -> dict[int, dict[str, Any]]:
    """index -> the result the program saved."""
    out = {}
    for p in root.glob("results/*/*/*/r.json"):
        d = json.loads(p.read_text())
        out[d["idx"]] = d
    return out


def startedIndices(resultsRoot: Path) -> set[int]:
    """Indices with a run that started and has not ended (per the status files)."""
    return {r.index for r in intervals(resultsRoot) if r.end is None}


def waitFor(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    stop = time.time() + timeout
    while time.time() < stop:
        if cond():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def killAndWait(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)  # our own child, by its pid
        except ProcessLookupError:
            pass
    p.wait()


@dataclass
class Outcome:
    """What one scenario did (for its assertions and the module's table)."""

    name: str
    fault: str
    root: Path
    exit: int | None = None
    wall: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the driver itself failed

    @property
    def results(self) -> Path:
        return self.root / "results"

    def history(self) -> History:
        return history(self.results)

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("watch*.err")))

    def events(self) -> list[dict[str, Any]]:
        return events(self.root)


def sqsummary(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True)
    return out.stdout


def firstJob(resultsRoot: Path) -> str | None:
    """The job id of the first submission recorded in the ledger (read without the lock)."""
    path = resultsRoot / ".pyexputils" / "ledger.sqlite"
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT job_id FROM submissions ORDER BY time LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


JOBID = re.compile(r"^\d+$")
