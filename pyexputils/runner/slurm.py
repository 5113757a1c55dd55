"""The Slurm backend: every subprocess call to Slurm (sbatch, squeue, scancel, scontrol, sacctmgr) lives here.

- ``limits()``: ``scontrol show config`` (MaxArraySize, MaxJobCount), ``scontrol show partition``
  (MaxTime, TotalCPUs of the job's partition or the default one), ``sacctmgr show assoc`` (MaxSubmitJobs,
  when the site has accounting; skipped quietly otherwise).
- ``submit()``: ``sbatch --parsable`` with the script on stdin, from the project folder, argument list (no
  shell); stderr is read: transient errors (socket timeout, "Resource temporarily unavailable", controller
  not answering) are retried with backoff, after checking squeue that the job did not arrive anyway;
  any other failure raises :class:`SubmitRejected` with sbatch's own message.
- ``query()``: one ``squeue --me -h -r -t all`` call (live tasks; those that ended less than MinJobAge ago
  are kept for ``ended()``); ``queued()`` counts all the user's live jobs (the queue budget).
- ``ended()``: the tasks the last squeue saw ended, and, when the site has accounting, one
  ``sacct -X -P -n -o JobID,State -j ...`` call.
- ``cancel()``: one ``scancel`` call.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
from collections import Counter
from typing import Sequence

from pyexputils.runner.backend import JOB_PREFIX, Backend, BackendError, JobSpec, Limits, LiveTask, QueueFull, SubmitRejected
from pyexputils.runner.causes import LIVE_STATES
from pyexputils.runner.resources import parseMinutes

TRANSIENT = re.compile(
    r"socket timed out|resource temporarily unavailable|unable to contact slurm controller|"
    r"connection refused|try again|slurm_receive_msg|communications? (connection )?failure|"
    r"slurmctld.*(busy|not responding)",
    re.IGNORECASE,
)
# refusals for lack of room: nothing wrong with the job, it may go through later
CAPACITY = re.compile(
    r"MaxSubmitJob|MaxJobCount|submit limit|job count limit|QOSMax\w*SubmitJob|AssocMax\w*SubmitJob|"
    r"AssocGrpSubmitJobsLimit|QOSGrpSubmitJobsLimit|temporarily unable to accept job|"
    r"job violates accounting/QOS policy \(job submit limit",
    re.IGNORECASE,
)
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
TIMEOUT_S = 60.0
SQUEUE_FORMAT = "%F|%K|%T|%j|%r|%Z"  # ..., reason, the job's working directory (the project root)


def available() -> bool:
    """True when ``sbatch`` is on PATH and the controller answers ``sinfo``."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


CALLS: Counter[str] = Counter()  # Slurm commands this process ran, by name (the watcher logs them)


def run(argv: Sequence[str], stdin: str | None = None, cwd: str | None = None, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command (argument list, no shell); BackendError when it cannot be started or hangs."""
    CALLS[argv[0]] += 1
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]}: command not found (is Slurm installed? use --backend local)") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{' '.join(argv[:3])}: no answer within {timeout:.0f} s") from None


def parseKeyValues(text: str) -> dict[str, str]:
    """``Key = Value`` lines (scontrol show config) and ``Key=Value Key=Value`` words (show partition)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if " = " in line:
            k, _, v = line.partition(" = ")
            out[k.strip()] = v.strip()
            continue
        for word in line.split():
            k, eq, v = word.partition("=")
            if eq:
                out[k] = v
    return out


def parsePartitions(text: str) -> list[dict[str, str]]:
    """``scontrol show partition`` output: one dict per partition (blank-line separated)."""
    return [parseKeyValues(block) for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        n = int(value.split()[0])
    except (ValueError, IndexError):
        return None
    return n if n > 0 else None


def parseSqueue(text: str, ended: dict[tuple[str, int | None], str] | None = None) -> tuple[list[LiveTask], int]:
    """``squeue -h -r -o %F|%K|%T|%j|%r|%Z`` lines: our (``pyx-``) live tasks, and the count of all live lines.
    Our tasks in an ended state (``-t all``) go to ``ended`` instead."""
    ours: list[LiveTask] = []
    count = 0
    for line in text.splitlines():
        parts = line.split("|", 5)
        if len(parts) < 5:
            continue
        job, task, state, name, reason = parts[:5]
        workdir = parts[5].strip() if len(parts) > 5 else None
        live = state.strip() in LIVE_STATES
        count += live
        if not name.startswith(JOB_PREFIX):
            continue
        if not live:
            if ended is not None:
                ended[(job.strip(), int(task) if task.strip().isdigit() else None)] = state.strip()
            continue
        ours.append(
            LiveTask(
                job_id=job.strip(),
                task=int(task) if task.strip().isdigit() else None,
                state=state.strip(),
                tag=name[len(JOB_PREFIX) :],
                reason=reason.strip(),
                workdir=workdir or None,
            )
        )
    return ours, count


def parseSacct(text: str) -> dict[tuple[str, int | None], str]:
    """``sacct -X -P -n -o JobID,State`` lines: ``123_4|TIMEOUT``, and folded records of tasks that never
    started (``123_[5-9%2]|CANCELLED by 0`` after a ``scancel`` of the whole array) expanded per task."""
    out: dict[tuple[str, int | None], str] = {}
    for line in text.splitlines():
        jobid, _, state = line.partition("|")
        job, _, task = jobid.strip().partition("_")
        value = state.strip().split()[0] if state.strip() else ""
        if not job.isdigit():
            continue
        if task.startswith("[") and task.endswith("]"):
            for t in expandTaskRange(task[1:-1]):
                out[(job, t)] = value
        elif not task or task.isdigit():
            out[(job, int(task) if task else None)] = value
    return out


def expandTaskRange(spec: str) -> list[int]:
    """``2-9%2`` / ``1,3,5-7`` -> task ids (a malformed part is skipped)."""
    out: list[int] = []
    for part in spec.split("%")[0].split(","):
        a, _, b = part.partition("-")
        if a.isdigit() and (not b or b.isdigit()):
            out.extend(range(int(a), int(b or a) + 1))
    return out


class SlurmBackend(Backend):
    """Slurm through its command-line tools."""

    name = "slurm"

    def __init__(self) -> None:
        self._queued: int | None = None
        self._ended: dict[tuple[str, int | None], str] = {}
        self._sacct: bool | None = None  # accounting works (probed on first use)
        self._config: dict[str, str] | None = None

    def _showConfig(self) -> dict[str, str]:
        """``scontrol show config``, asked once."""
        if self._config is None:
            cfg = run(["scontrol", "show", "config"])
            if cfg.returncode != 0:
                raise BackendError(f"scontrol show config: {cfg.stderr.strip() or 'failed'}")
            self._config = parseKeyValues(cfg.stdout)
        return self._config

    def preemptible(self) -> bool:
        return self._showConfig().get("PreemptType", "preempt/none").lower() not in ("preempt/none", "")

    def limits(self, partition: str | None = None) -> Limits:
        source: dict[str, str] = {}
        conf = self._showConfig()
        maxArray = _int(conf.get("MaxArraySize"))
        maxJobs = _int(conf.get("MaxJobCount"))
        for key, value in (("max_array_size", maxArray), ("max_job_count", maxJobs)):
            if value is not None:
                source[key] = "scontrol show config"
        parts = run(["scontrol", "show", "partition"] + ([partition] if partition else []))
        if parts.returncode != 0:
            why = (parts.stderr.strip() or parts.stdout.strip() or "failed").splitlines()[0]
            raise BackendError(f"slurm.partition {partition!r}: scontrol show partition: {why}")
        blocks = parsePartitions(parts.stdout)
        chosen = blocks[0] if partition else next((b for b in blocks if b.get("Default") == "YES"), blocks[0] if blocks else {})
        maxTime = None
        if chosen.get("MaxTime") and chosen["MaxTime"].upper() not in ("UNLIMITED", "INFINITE"):
            try:
                maxTime = parseMinutes(chosen["MaxTime"])
                source["max_time_minutes"] = f"partition {chosen.get('PartitionName', '?')}"
            except ValueError:
                maxTime = None
        cpus = _int(chosen.get("TotalCPUs"))
        maxSubmit = self._maxSubmit()
        if maxSubmit is not None:
            source["max_submit_jobs"] = "sacctmgr"
        return Limits(maxArray, maxJobs, maxSubmit, maxTime, cpus, source)

    def _maxSubmit(self) -> int | None:
        """The user's association MaxSubmitJobs (the smallest non-empty), None without accounting."""
        if shutil.which("sacctmgr") is None:
            return None
        user = pwd.getpwuid(os.getuid()).pw_name  # the real user, whatever $USER says
        try:
            out = run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=MaxSubmit"], timeout=10)
        except BackendError:
            return None
        if out.returncode != 0:
            return None
        values = [_int(v) for v in out.stdout.split()]
        found = [v for v in values if v is not None]
        return min(found) if found else None

    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        argv = ["sbatch", "--parsable"] + (["--test-only"] if test_only else [])
        for attempt, pause in enumerate((0.0,) + BACKOFF_S):
            if pause:
                time.sleep(pause)
                if not test_only:
                    arrived = self._findTag(job.tag)  # the failed call may have submitted it after all
                    if arrived is not None:
                        return arrived
            try:
                out = run(argv, stdin=job.script, cwd=job.workdir)
            except BackendError as e:
                if attempt < len(BACKOFF_S) and "no answer" in str(e):
                    continue
                raise
            err = out.stderr.strip()
            if out.returncode == 0:
                if test_only:
                    return ""
                jobId = out.stdout.strip().split(";")[0]
                if not jobId.isdigit():
                    raise BackendError(f"sbatch for {job.tag}: unexpected reply {out.stdout.strip()!r} {err}")
                return jobId
            if CAPACITY.search(err):
                raise QueueFull(f"sbatch for {job.tag}: the cluster takes no more jobs now: {err}")
            if TRANSIENT.search(err):
                if attempt < len(BACKOFF_S):
                    continue
                # still transient after every retry: Slurm is not answering, the job was not refused
                raise BackendError(f"sbatch for {job.tag}: still failing after {len(BACKOFF_S)} retries: {err}")
            raise SubmitRejected(f"sbatch rejected {job.tag} ({job.manifest.experiment}): {err or 'exit ' + str(out.returncode)}")
        raise BackendError(f"sbatch for {job.tag}: still failing after {len(BACKOFF_S)} retries")

    def _findTag(self, tag: str) -> str | None:
        try:
            tasks = self.query()
        except BackendError:
            return None
        return next((t.job_id for t in tasks if t.tag == tag), None)

    def query(self) -> list[LiveTask]:
        out = run(["squeue", "--me", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT])
        if out.returncode != 0:
            raise BackendError(f"squeue: {out.stderr.strip() or 'failed'}")
        ended: dict[tuple[str, int | None], str] = {}
        ours, count = parseSqueue(out.stdout, ended)
        self._queued = count
        self._ended = ended
        return ours

    def ended(self, job_ids: Sequence[str]) -> dict[tuple[str, int | None], str]:
        wanted = set(job_ids)
        out = {k: v for k, v in self._ended.items() if k[0] in wanted}
        if not wanted or self._sacct is False or shutil.which("sacct") is None:
            return out
        ids = sorted(wanted, key=lambda j: int(j) if j.isdigit() else 0)
        res = run(["sacct", "-X", "-P", "-n", "-o", "JobID,State", "-j", ",".join(ids)])
        if res.returncode != 0:
            if "accounting storage is disabled" in (res.stderr + res.stdout).lower() or "not running" in res.stderr.lower():
                self._sacct = False
                return out
            raise BackendError(f"sacct: {res.stderr.strip() or 'failed'}")
        self._sacct = True
        for key, state in parseSacct(res.stdout).items():
            out.setdefault(key, state)
        return out

    def queued(self) -> int:
        """All the user's queued/running jobs (array tasks counted one by one), from the last query."""
        if self._queued is None:
            self.query()
        return self._queued or 0

    def cancel(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        out = run(["scancel", *job_ids])
        if out.returncode != 0:
            raise BackendError(f"scancel {' '.join(job_ids)}: {out.stderr.strip() or 'failed'}")


# --- the watcher service's own jobs (pyexputils.runner.service) ---------------------------------------------
def jobsNamed(name: str) -> list[tuple[str, str]]:
    """(job id, state) of this user's live jobs named ``name``, oldest first."""
    out = run(["squeue", "--me", "-h", "-n", name, "-o", "%i|%T"])
    if out.returncode != 0:
        raise BackendError(f"squeue -n {name}: {out.stderr.strip() or 'failed'}")
    jobs = [tuple(line.strip().split("|", 1)) for line in out.stdout.splitlines() if "|" in line]
    live = [(j, s) for j, s in jobs if s in LIVE_STATES]
    return sorted(live, key=lambda js: int(js[0]) if js[0].isdigit() else 0)


def submitScript(script: str, cwd: str, what: str) -> str:
    """``sbatch --parsable`` of one plain script: its job id; QueueFull, SubmitRejected or BackendError."""
    out = run(["sbatch", "--parsable"], stdin=script, cwd=cwd)
    err = out.stderr.strip()
    jobId = out.stdout.strip().split(";")[0]
    if out.returncode == 0 and jobId.isdigit():
        return jobId
    if CAPACITY.search(err):
        raise QueueFull(f"sbatch for {what}: the cluster takes no more jobs now: {err}")
    if TRANSIENT.search(err) or out.returncode == 0:
        raise BackendError(f"sbatch for {what}: {err or 'unexpected reply ' + repr(out.stdout.strip())}")
    raise SubmitRejected(f"sbatch rejected {what}: {err or 'exit ' + str(out.returncode)}")


def parseDuration(text: str) -> int | None:
    """Seconds of squeue's ``%L``/``%l`` (``[days-][hours:]minutes:seconds``); None for UNLIMITED and the like."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if m is None:
        return None
    days, hours, mins, secs = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + mins) * 60 + secs


def timeLeft(jobId: str) -> int | None:
    """Seconds job ``jobId`` has before its time limit (None: no limit, or Slurm cannot say)."""
    out = run(["squeue", "-h", "-j", jobId, "-o", "%L"])
    return parseDuration(out.stdout) if out.returncode == 0 else None
