"""The in-job runner: ``python -m pyexputils.runner.task MANIFEST [--task N]``.

Runs the bundle of indices of one array task (``$SLURM_ARRAY_TASK_ID``, or ``--task N``), ``parallel`` at a
time, each as ``bash -c COMMAND`` would run it (a command that needs nothing of the shell is started directly:
:func:`_spawn`) in the project folder, in a process group of its own, with stdout/stderr in
``Manifest.logPaths(index)``. Every event goes to the task's status file (``Manifest.statusPath(task)``,
see :mod:`pyexputils.runner.status`), one flushed line each.

Signals (the sbatch script ``exec``s the runner, so it receives them itself):

- ``SIGUSR1`` (``--signal=B:USR1@N``, the time-limit warning): stop. Running indices get SIGTERM (their chance
  to checkpoint) and end ``TIMEOUT``; indices not started are skipped with cause ``TIMEOUT``. Slurm checks
  time limits every 30 s and sends the warning when the limit falls before its next check, so it can arrive
  up to N + 30 s early (on a 1-minute job: any time after the start): when the job's deadline is known, the
  stop waits until ``grace_s + WARN_MARGIN_S`` seconds before it (event ``warning`` with ``stop_at``).
- ``SIGTERM``: the same, with cause ``CANCELLED``, or ``TIMEOUT`` after a USR1 or near the job's deadline
  (``Manifest.job_time_limit_s``). Under proctrack/linuxproc Slurm sends it to the runs too.
- ``SIGINT``: like SIGTERM (``CANCELLED``); a second SIGINT kills the runs at once. ``SIGHUP``: like SIGTERM
  (``CANCELLED``), so that closing a terminal does not leave runs behind.

A run the runner stopped is killed (SIGKILL to its group) ``Manifest.grace_s`` seconds after its SIGTERM.
A run past ``Manifest.time_limit_s`` is stopped the same way and ends ``TIMEOUT``; the others go on.

When no stop cut the task off, its ``task_end`` line carries the task's own account of how every index ended
(``outcomes``: :func:`pyexputils.runner.status.summary`), so that a reader need not read every line.

Causes of ``end``: exit 0 with every ``require`` file present: ``COMPLETED`` (even after a SIGTERM); exit 0
with files missing: ``FAILED`` (``missing`` lists them); stopped by the runner: the stop's cause; killed by
SIGKILL (or a shell's exit 137) that the runner did not send: ``OUT_OF_MEMORY`` (a heuristic: the kernel's
OOM killer and a cgroup memory limit are the usual senders of an unannounced SIGKILL); any other non-zero
exit or signal: ``FAILED``. A run that dies of a signal is classified half a second later, so that a
SIGTERM reaching the run and the runner at once (Slurm) counts as the runner's stop, not as a failure.

Exit code: 0 when every index ended ``COMPLETED`` or was skipped as done, 1 otherwise, 2 on bad usage
(no task id, unreadable manifest).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable, Mapping, Sequence

from pyexputils.errors import ExperimentError, PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription, loadConfig
from pyexputils.models.loader import loadMapping
from pyexputils.runner.causes import Cause
from pyexputils.runner.command import buildCommand, directArgv, shellArgv
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.status import Final, StatusWriter, summary

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SETTLE_S = 0.5  # how long a run that died of a signal waits for the runner's own stop signal
SHELL_SIGKILL = 128 + signal.SIGKILL  # a shell reports a child killed by SIGKILL as exit 137
WARN_MARGIN_S = 2.0  # after a USR1: runs get SIGTERM grace_s + this many seconds before the deadline


def _spawn(command: str, cwd: str, env: dict[str, str], out: Any, err: Any) -> "subprocess.Popen[bytes]":
    """Start ``command`` in a session of its own: directly when it needs nothing of the shell (what
    ``bash -c`` would exec: :func:`pyexputils.runner.command.directArgv`), else through bash. A direct start
    that fails (not found, not executable) goes through bash, which says so in bash's words and exit code."""

    def start(argv: list[str]) -> "subprocess.Popen[bytes]":
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)

    argv = directArgv(command, env)
    if argv is not None:
        with contextlib.suppress(OSError):
            return start(argv)
    return start(shellArgv(command))


def deadlineMargin(limit: float) -> float:
    """How close to the job's deadline a SIGTERM counts as the time limit (Slurm checks every 30 s)."""
    return min(60.0, max(5.0, 0.1 * limit))


def isDone(folder: str, require: Sequence[str]) -> bool:
    """Done, as the planner sees it: the save folder exists and holds every ``require`` file."""
    return os.path.exists(folder) and all(os.path.exists(os.path.join(folder, r)) for r in require)


def missingFiles(folder: str, require: Sequence[str]) -> list[str]:
    """The ``require`` files not in ``folder`` (the folder itself when there are none to check)."""
    if not require:
        return [] if os.path.exists(folder) else [folder]
    return [r for r in require if not os.path.exists(os.path.join(folder, r))]


@dataclass
class Run:
    """One index running in its own process group."""

    index: int
    proc: "subprocess.Popen[bytes]"
    started: float
    limitAt: float | None  # per-index time limit (Manifest.time_limit_s)
    folder: str
    cause: Cause | None = None  # set when the runner stops it: TIMEOUT | CANCELLED
    killAt: float | None = None  # SIGKILL due
    killed: bool = False  # the runner sent SIGKILL
    exitedAt: float | None = None  # it has ended; classified at ``exitedAt + SETTLE_S`` when needed
    returncode: int | None = None
    maxrssKB: int | None = None  # its peak memory (with its descendants it waited for), from wait4


class TaskRunner:
    """Runs one array task of a manifest; ``run()`` returns the runner's exit code."""

    w: StatusWriter
    config: Config

    def __init__(self, manifest: Manifest, task: int, environ: Mapping[str, str] | None = None) -> None:
        self.m = manifest
        self.task = task
        self.environ = dict(os.environ if environ is None else environ)
        if not 0 <= task < len(manifest.tasks):
            raise PyExpUtilsError(f"manifest {manifest.tag}: task {task} out of range 0-{len(manifest.tasks) - 1}")
        self.indices = list(manifest.tasks[task])
        self.project = os.path.abspath(manifest.project)
        self.t0 = time.time()
        self.deadline = self._deadline()
        self.host = self.environ.get("SLURMD_NODENAME") or socket.gethostname()
        self.job = (
            self.environ.get("PYX_JOB_ID")
            or self.environ.get("SLURM_ARRAY_JOB_ID")
            or self.environ.get("SLURM_JOB_ID")
            or str(os.getpid())
        )
        self.running: list[Run] = []
        self.pending: deque[int] = deque(self.indices)
        self.finals: dict[int, Final] = {}  # each index's last line so far: cause, exit, signal, started
        self._final: dict[Final, Final] = {}  # one tuple of each kind, shared by the indices that ended alike
        self.stopCause: Cause | None = None
        self.sawUsr1 = False
        self.stopAt: float | None = None  # a USR1 came early: stop (TIMEOUT) at this time
        self.interrupts = 0
        self._signals: list[int] = []
        self.exp: ExperimentDescription | None = None
        self._probeUntil: float | None = None  # after a bare SIGTERM: look for Slurm's line until then

    # --- paths --------------------------------------------------------------------------------------
    def _abs(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self.project, path)

    def statusPath(self) -> str:
        return self._abs(self.m.statusPath(self.task))

    def logPaths(self, index: int) -> tuple[str, str]:
        out, err = self.m.logPaths(index)
        return self._abs(out), self._abs(err)

    def _deadline(self) -> float | None:
        """Epoch seconds at which the job will be stopped, when known."""
        end = self.environ.get("SLURM_JOB_END_TIME")
        if end and end.isdigit() and int(end) > 0:
            return float(end)
        if self.m.job_time_limit_s:
            return self.t0 + self.m.job_time_limit_s
        return None

    # --- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        cwd = os.getcwd()
        os.chdir(self.project)  # experiment names and save paths are relative to the project
        try:
            # signals are caught from here on: one that arrives while the experiment loads is not lost
            with SignalWaiter(self._signals) as wake:
                path = self.statusPath()
                with StatusWriter(path, host=self.host, job=self.job, task=self.task, attempt=self.m.attempt) as w:
                    self.w = w
                    return self._run(wake)
        finally:
            os.chdir(cwd)

    def _event(self, kind: str, **fields: Any) -> None:
        self.w.write(kind, time=round(time.time(), 3), **fields)

    def _run(self, wake: "SignalWaiter") -> int:
        self._event("task_start", indices=self.indices, pid=os.getpid(), parallel=self.m.parallel, tag=self.m.tag)
        try:
            self._load()
        except PyExpUtilsError as e:
            print(f"pyexputils.runner.task: {e}", file=sys.stderr)
            for index in self.indices:
                self._end(index, Cause.FAILED, exit=None, signal=None, error=str(e))
            self.pending.clear()
        while self.pending or self.running:
            self._handleSignals()
            self._probed()
            now = time.time()
            self._reap(now)
            self._enforce(now)
            self._startMore()
            if self.pending or self.running:
                wake.wait(self._timeout(time.time()))
        self._probed(final=True)
        finals = self.finals
        code = 0 if all(i in finals and finals[i][0] == Cause.COMPLETED for i in self.indices) else 1
        if self.stopCause is None and all(i in finals for i in self.indices):  # the run's account, last on the line
            self._event("task_end", cut_off=False, cause=None, exit=code, offset=self.w.offset, outcomes=summary(finals.items()))
        else:
            self._event("task_end", cut_off=self.stopCause is not None, cause=self.stopCause, exit=code)
        return code

    def _load(self) -> None:
        config = loadConfig(self.project)
        path = self._abs(self.m.experiment)
        self.exp = ExperimentDescription(loadMapping(path, ExperimentError), path=path, config=config)
        self.config = config

    def _timeout(self, now: float) -> float:
        due = [t for r in self.running for t in (r.limitAt, r.killAt) if t is not None and r.exitedAt is None]
        if self.stopAt is not None and self.stopCause is None:
            due.append(self.stopAt)
        due += [r.exitedAt + SETTLE_S for r in self.running if r.exitedAt is not None]
        if self._probeUntil is not None:
            due.append(now + 0.2)
        return max(0.0, min([now + 5.0] + due) - now)

    # --- signals ------------------------------------------------------------------------------------
    def _handleSignals(self) -> None:
        if self.stopAt is not None and self.stopCause is None and time.time() >= self.stopAt:
            self._stop(signal.SIGUSR1, Cause.TIMEOUT)
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGUSR1:
                self.sawUsr1 = True
                lead = self.m.grace_s + WARN_MARGIN_S
                now = time.time()
                if self.deadline is not None and self.deadline - now > lead and self.stopCause is None:
                    if self.stopAt is None:  # an early warning: stop in time for the runs to end before the limit
                        self.stopAt = self.deadline - lead
                        self._event("warning", signal=sig, name="SIGUSR1", deadline=round(self.deadline, 3),
                                    stop_at=round(self.stopAt, 3))  # fmt: skip
                    continue
                cause = Cause.TIMEOUT
            elif sig == signal.SIGTERM:
                near = self.deadline is not None and time.time() >= self.deadline - deadlineMargin(self.deadline - self.t0)
                cause = Cause.TIMEOUT if self.sawUsr1 or near else Cause.CANCELLED
            elif sig == signal.SIGINT:
                self.interrupts += 1
                cause = Cause.CANCELLED
            elif sig == signal.SIGHUP:
                cause = Cause.CANCELLED
            else:
                continue
            self._stop(sig, cause)

    def _stop(self, sig: int, cause: Cause) -> None:
        """Stop the task: SIGTERM to every run, skip what has not started."""
        first = self.stopCause is None
        if first:
            self.stopCause = cause
            if cause == Cause.CANCELLED and sig == signal.SIGTERM and self.environ.get("SLURM_JOB_ID") and not self.environ.get("PYX_LOCAL"):
                self._probeUntil = time.time() + PROBE_S
        now = time.time()
        live = [r for r in self.running if r.exitedAt is None]
        self._event("stop", signal=sig, name=signal.Signals(sig).name, cause=self.stopCause, running=[r.index for r in live],
                    skipped=list(self.pending))  # fmt: skip
        for index in self.pending:
            self._record(index, "skip", cause=self.stopCause)
        self.pending.clear()
        for r in live:
            if r.cause is None:
                r.cause = self.stopCause
            if first or r.killAt is None:
                self._terminate(r, now)
            if self.interrupts > 1:
                self._kill(r)

    def _probed(self, final: bool = False) -> None:
        """After a bare SIGTERM under Slurm: record the state Slurm's own line in our stderr file gives
        (event ``scheduler``), once it is there or the time to look for it is up (``final``: wait for it)."""
        while self._probeUntil is not None:
            path = stderrFile()
            state = slurmEndLine(readTail(path), self.environ.get("SLURM_JOB_ID")) if path else None
            if state is not None or time.time() >= self._probeUntil:
                self._probeUntil = None
                self._event("scheduler", state=state, source="stderr")
                return
            if not final:
                return
            time.sleep(0.1)

    def _terminate(self, r: Run, now: float) -> None:
        _killGroup(r.proc.pid, signal.SIGTERM)
        r.killAt = now + self.m.grace_s

    def _kill(self, r: Run) -> None:
        r.killed = True
        _killGroup(r.proc.pid, signal.SIGKILL)

    # --- runs ---------------------------------------------------------------------------------------
    def _startMore(self) -> None:
        while self.pending and self.stopCause is None and len(self.running) < max(1, self.m.parallel):
            index = self.pending.popleft()
            try:
                self._start(index)
            except (PyExpUtilsError, OSError) as e:
                self._end(index, Cause.FAILED, exit=None, signal=None, error=str(e))

    def _start(self, index: int) -> None:
        assert self.exp is not None
        folder = self._abs(self.exp.interpolateSavePath(index))
        if self.m.skip_done and isDone(folder, self.m.require):
            self._record(index, "skip", cause=Cause.COMPLETED)
            return
        command = buildCommand(self.m.command, self.exp, index, self.exp.path, self.config.path)
        outPath, errPath = self.logPaths(index)
        os.makedirs(os.path.dirname(outPath), exist_ok=True)
        os.makedirs(os.path.dirname(errPath), exist_ok=True)
        now = time.time()
        limit = self.m.time_limit_s
        env = self._env(index, folder, now)
        with open(outPath, "ab") as out, open(errPath, "ab") as err:
            proc = _spawn(command, self.project, env, out, err)
        run = Run(index, proc, now, now + limit if limit else None, folder)
        self.running.append(run)
        self._record(index, "start", pid=proc.pid, command=command)

    def _env(self, index: int, folder: str, now: float) -> dict[str, str]:
        env = dict(self.environ)
        bindir = os.path.dirname(sys.executable)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", os.defpath)
        assert self.exp is not None
        env.update(
            PYX_INDEX=str(index),
            PYX_RUN=str(self.exp.getRun(index)),
            PYX_ATTEMPT=str(self.m.attempt),
            PYX_RESUBMITTED="1" if self.m.attempt > 1 else "0",
            PYX_SAVE_PATH=folder,
            PYX_EXPERIMENT=self.exp.path or "",
            PYX_TASK=str(self.task),
            PYX_TAG=self.m.tag,
        )
        limits = [float(self.m.time_limit_s)] if self.m.time_limit_s else []
        if self.deadline is not None:
            limits.append(self.deadline - now)
            env["PYX_DEADLINE"] = str(int(self.deadline))
        if limits:
            env["PYX_TIME_LIMIT"] = str(max(0, int(min(limits))))
        return env

    def _reap(self, now: float) -> None:
        for r in list(self.running):
            if r.exitedAt is None:
                rc = _poll(r)
                if rc is None:
                    continue
                r.returncode, r.exitedAt = rc, now
                _killGroup(r.proc.pid, signal.SIGKILL)  # what the run left behind in its group
            assert r.returncode is not None
            diedOfSignal = r.returncode < 0 or r.returncode == SHELL_SIGKILL or r.returncode in (
                128 + signal.SIGTERM, 128 + signal.SIGINT)  # fmt: skip
            if diedOfSignal and r.cause is None and self.stopCause is None and now < r.exitedAt + SETTLE_S:
                continue  # a stop signal to the runner may be on its way
            self.running.remove(r)
            self._finish(r)

    def _finish(self, r: Run) -> None:
        rc = r.returncode
        assert rc is not None
        exit, sig = (rc, None) if rc >= 0 else (None, -rc)
        missing = missingFiles(r.folder, self.m.require) if rc == 0 else []
        extra: dict[str, Any] = {"seconds": round((r.exitedAt or time.time()) - r.started, 3)}
        if r.maxrssKB:
            extra["maxrss_mb"] = round(r.maxrssKB / 1024, 1)
        if rc == 0 and not missing:
            cause = Cause.COMPLETED
        elif r.cause is not None:
            cause = r.cause
        elif self.stopCause is not None and (sig is not None or rc > 128):
            cause = self.stopCause
        elif rc == 0:
            cause = Cause.FAILED
            extra["missing"] = missing
        elif (sig == signal.SIGKILL or rc == SHELL_SIGKILL) and not r.killed:
            cause = Cause.OUT_OF_MEMORY
        else:
            cause = Cause.FAILED
        if r.killed:
            extra["killed"] = True
        self._end(r.index, cause, exit=exit, signal=sig, **extra)

    def _enforce(self, now: float) -> None:
        for r in self.running:
            if r.exitedAt is not None:
                continue
            if r.limitAt is not None and now >= r.limitAt and r.cause is None:
                r.cause = Cause.TIMEOUT
                self._terminate(r, now)
            if r.killAt is not None and now >= r.killAt and not r.killed:
                self._kill(r)

    # --- records ------------------------------------------------------------------------------------
    def _record(self, index: int, kind: str, **fields: Any) -> None:
        if kind == "skip":
            self._ended(index, (Cause(fields["cause"]), None, None, False))
        self._event(kind, index=index, **fields)

    def _end(self, index: int, cause: Cause, **fields: Any) -> None:
        self._ended(index, (cause, fields["exit"], fields["signal"], True))
        self._event("end", index=index, cause=cause, **fields)

    def _ended(self, index: int, final: Final) -> None:
        self.finals[index] = self._final.setdefault(final, final)


PROBE_S = 2.0  # how long after a SIGTERM the runner looks for Slurm's own line in its job's stderr file
_SLURM_LINE = re.compile(r"\*\*\* JOB (\d+) ON \S+ CANCELLED AT \S+(?: DUE TO ([A-Z ]+?))?(?:,[^*]*)? \*\*\*")
_DUE_TO = {None: Cause.CANCELLED, "PREEMPTION": Cause.PREEMPTED, "TIME LIMIT": Cause.TIMEOUT, "NODE FAILURE": Cause.NODE_FAIL}


def slurmEndLine(text: str, job: str | None) -> str | None:
    """The state Slurm's ``*** JOB n ON node CANCELLED AT t [DUE TO ...] ***`` line in a job's stderr gives
    (CANCELLED for a plain ``scancel``, PREEMPTED, TIMEOUT, NODE_FAIL); None when there is no such line for
    raw job id ``job``. Measured in docs/slurm-evidence.md: at SIGTERM, squeue says COMPLETING for both a
    cancellation and a preemption; this line, written by slurmstepd before the signal, tells them apart."""
    found = None
    for m in _SLURM_LINE.finditer(text):
        if job is None or m.group(1) == job:
            found = _DUE_TO.get(m.group(2), m.group(2))
    return found


def stderrFile() -> str | None:
    """The file this process's stderr goes to (Slurm's ``--output``/``--error`` of the task), if a file."""
    try:
        path = os.readlink("/proc/self/fd/2")
    except OSError:
        return None
    return path if os.path.isfile(path) else None


def readTail(path: str, size: int = 65536) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _poll(r: Run) -> int | None:
    """The run's exit code when it has ended (None while it runs), reaped with ``wait4`` for its peak memory
    (``ru_maxrss``: the largest of the shell and the descendants it waited for)."""
    if r.proc.returncode is not None:
        return r.proc.returncode
    try:
        pid, status, usage = os.wait4(r.proc.pid, os.WNOHANG)
    except ChildProcessError:
        return r.proc.poll()
    if pid == 0:
        return None
    r.maxrssKB = usage.ru_maxrss
    r.proc.returncode = os.waitstatus_to_exitcode(status)
    return r.proc.returncode


def _killGroup(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class SignalWaiter:
    """Within ``with``: ``signals`` (default: SIGUSR1, SIGTERM, SIGINT) are appended to ``sink`` instead of
    acting, and ``wait`` returns as soon as any signal (or a child's exit, SIGCHLD) arrives, through a
    wakeup pipe. Main thread only."""

    def __init__(self, sink: list[int], signals: Sequence[int] = STOP_SIGNALS) -> None:
        self.sink = sink
        self.signals = tuple(signals)
        self.old: dict[int, Any] = {}

    def __enter__(self) -> "SignalWaiter":
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        self.oldFd = signal.set_wakeup_fd(self.w, warn_on_full_buffer=False)

        def handler(sig: int, frame: FrameType | None) -> None:
            self.sink.append(sig)

        def nothing(sig: int, frame: FrameType | None) -> None:
            pass

        handlers: dict[int, Callable[[int, FrameType | None], None]] = {s: handler for s in self.signals}
        handlers[signal.SIGCHLD] = nothing
        for s, h in handlers.items():
            self.old[s] = signal.signal(s, h)
        return self

    def wait(self, timeout: float) -> None:
        if self.sink:
            return
        ready, _, _ = select.select([self.r], [], [], timeout)
        if ready:
            try:
                while os.read(self.r, 512):
                    pass
            except BlockingIOError:
                pass

    def __exit__(self, *exc: object) -> None:
        for s, h in self.old.items():
            signal.signal(s, h)
        signal.set_wakeup_fd(self.oldFd)
        os.close(self.r)
        os.close(self.w)


def taskId(arg: int | None, environ: Mapping[str, str]) -> int:
    """``--task`` if given, else ``$SLURM_ARRAY_TASK_ID``."""
    if arg is not None:
        return arg
    value = environ.get("SLURM_ARRAY_TASK_ID")
    if value is None or not value.isdigit():
        raise PyExpUtilsError("no task id: pass --task N or run inside a Slurm array job (SLURM_ARRAY_TASK_ID)")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyexputils.runner.task", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="the submission's manifest (JSON)")
    parser.add_argument("--task", type=int, default=None, help="array task id (default: $SLURM_ARRAY_TASK_ID)")
    args = parser.parse_args(argv)
    try:
        manifest = Manifest.read(args.manifest, lean=True)
        runner = TaskRunner(manifest, taskId(args.task, os.environ))
    except PyExpUtilsError as e:
        print(f"pyexputils.runner.task: {e}", file=sys.stderr)
        return 2
    return runner.run()


if __name__ == "__main__":
    sys.exit(main())
