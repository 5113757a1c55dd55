"""The watcher service: a sweep kept going with nobody at a terminal.

``submit --watch --detach`` (or ``watch --detach``) starts a **chain** of watcher jobs on the cluster; every
watcher job runs the watch loop (:class:`pyexputils.runner.watch.Watcher`) and keeps exactly one successor
pending behind it: all of a chain's jobs share one job name per results root (``pyxwatch-<hash>``) and
``--dependency=singleton``, so Slurm starts the successor only once the running watcher has ended, however
it ended (handover before its time limit, the limit itself, ``scancel``, a node failure, a preemption). The
successor then queues its own successor.

Who guarantees what:

- **singleton** (Slurm): at most one watcher *job* of a results root runs at a time (per user and name);
- **the ledger's lock** (flock): at most one *writer* at a time, whatever runs it — a watcher job, a
  ``watch`` typed on the login node, ``watch --daemon``, or a watcher whose node failed while its process
  lives on. A watcher that finds the lock held waits for it until its own handover time, then hands over;
- **the chain id** (``service/chain.json``): a watcher of a chain that was stopped or replaced exits at once
  and queues nothing.

When the sweep settles (every index done or final), the watcher that sees it writes ``service/summary.json``,
runs the config's ``watch.notify`` command once per chain (a marker file created before it runs), cancels
its pending successor and ends. ``service stop`` marks the chain stopped and cancels its jobs.

``watch --daemon`` runs the same loop detached on this machine (setsid, a pid file, a log, a lock), for sites
whose compute nodes cannot call ``sbatch``.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import resource
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

from pyexputils.errors import ConfigError, PyExpUtilsError
from pyexputils.runner import slurm
from pyexputils.runner.backend import Backend, BackendError, SubmitRejected
from pyexputils.runner.causes import Cause
from pyexputils.runner.judge import State
from pyexputils.runner.ledger import Ledger, LedgerBusy
from pyexputils.runner.local import LocalBackend
from pyexputils.runner.options import RESERVED, checkSbatchValue
from pyexputils.runner.render import sbatchBlock, sbatchKeys
from pyexputils.runner.resources import parseMinutes
from pyexputils.runner.session import Round, Session
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.watch import Tally, Watcher, WatchOptions

CHAIN_PREFIX = "pyxwatch-"  # not the sweep jobs' "pyx-": a watcher job is never taken for a sweep's task
DEFAULT_SBATCH: dict[str, Any] = {"time": "4:00:00", "mem": "1G", "cpus_per_task": 1}
NOTIFY_ON = ("end", "final")
NOTIFY_TIMEOUT_S = 120.0
SERVICE_KEYS = frozenset({"notify", "notify_on", "handover", "poll"})
OWN_SBATCH = frozenset({"dependency", "array", "chdir", "export"})  # the service sets or forbids these


class Mode(str, Enum):
    """Where the watch loop runs."""

    SLURM = "slurm"  # a chain of watcher jobs
    DAEMON = "daemon"  # one process detached on this machine

    def __str__(self) -> str:
        return self.value


MAX_FAILED_STARTS = 5  # watchers in a row that never finished a round: the chain stops (a crash loop)
FAILED_STARTS_WINDOW_S = 1800.0


class Stopped(Exception):
    """The watcher was told to end (SIGTERM, or ``service stop``)."""


# --- the config's `watch` block ------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceOptions:
    """The ``watch`` block, checked: the watcher job's sbatch options and the service's own keys."""

    sbatch: dict[str, Any]
    limit_s: int | None  # the watcher's time limit (None: none)
    notify: str | None = None  # shell command; a JSON summary on stdin, run in the project folder
    notify_on: frozenset[str] = frozenset({"end"})
    handover_s: float | None = None  # seconds before the limit a watcher hands over (None: automatic; 0: never)
    poll: float = 30.0

    def handover(self, left_s: float) -> float:
        """Seconds before the limit to hand over, for a watcher with ``left_s`` seconds left."""
        if self.handover_s is not None:
            return self.handover_s
        return min(600.0, max(20.0, 0.1 * left_s))


def parseWatchBlock(block: Mapping[str, Any], where: str) -> ServiceOptions:
    """The config's ``watch`` block (defaults: 1 CPU, 1 GB, 4 hours); errors name ``where`` and the key."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: watch must be a mapping of options, got {block!r}")
    sbatch = dict(DEFAULT_SBATCH)
    own: dict[str, Any] = {}
    allowed = sbatchKeys() - RESERVED - OWN_SBATCH
    for key, value in block.items():
        if key in SERVICE_KEYS:
            own[key] = value
            continue
        if key not in allowed:
            hint = " (the service sets it)" if key in RESERVED | OWN_SBATCH else ""
            raise ConfigError(f"{where}: watch.{key}: not an sbatch option nor one of {', '.join(sorted(SERVICE_KEYS))}{hint}")
        try:
            sbatch[key] = checkSbatchValue(key, value)
        except ValueError as e:
            raise ConfigError(f"{where}: watch.{key} = {value!r}: {e}") from None
        if key == "mem_per_cpu":
            sbatch.pop("mem", None)
    notify = own.get("notify")
    if notify is not None and (not isinstance(notify, str) or not notify.strip()):
        raise ConfigError(f"{where}: watch.notify = {notify!r}: must be a shell command (a non-empty string)")
    on = own.get("notify_on", ["end"])
    on = [on] if isinstance(on, str) else on
    if not isinstance(on, list) or not on or any(x not in NOTIFY_ON for x in on):
        raise ConfigError(f"{where}: watch.notify_on = {own.get('notify_on')!r}: must be a list of {', '.join(NOTIFY_ON)}")
    numbers: dict[str, float] = {}
    for key in ("handover", "poll"):
        v = own.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < (0 if key == "handover" else 0.1)):
            raise ConfigError(f"{where}: watch.{key} = {v!r}: must be a number of seconds{' >= 0' if key == 'handover' else ' > 0'}")
        if v is not None:
            numbers[key] = float(v)
    limit = parseMinutes(sbatch["time"]) if sbatch.get("time") is not None else None
    return ServiceOptions(sbatch, None if limit is None else limit * 60, notify, frozenset(on),
                          numbers.get("handover"), numbers.get("poll", 30.0))  # fmt: skip


# --- the chain: who is in charge -----------------------------------------------------------------------
@dataclass(frozen=True)
class Chain:
    """One service start: what it watches and how (``service/chain.json``, written once, by its starter)."""

    id: str
    mode: Mode
    name: str  # the watcher jobs' name
    root: str  # the project root
    experiments: list[str]
    runs: int | None
    cli: dict[str, Any] = field(default_factory=dict)
    python: str = sys.executable
    started: float = 0.0
    backend: str | None = None
    poll: float | None = None  # --poll, over the watch block's

    @staticmethod
    def read(state: StateDir) -> "Chain | None":
        try:
            with open(state.serviceFile("chain.json"), encoding="utf-8") as f:
                data = json.load(f)
            return Chain(**{**data, "mode": Mode(data.get("mode"))})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as e:
            raise PyExpUtilsError(f"{state.serviceFile('chain.json')}: unreadable ({e})") from None

    def write(self, state: StateDir) -> None:
        writeJson(state.serviceFile("chain.json"), asdict(self))

    def stopped(self, state: StateDir) -> bool:
        """``service stop`` ended this chain, or a newer chain replaced it."""
        try:
            with open(state.serviceFile("stop"), encoding="utf-8") as f:
                if f.read().strip() == self.id:
                    return True
        except FileNotFoundError:
            pass
        now = Chain.read(state)
        return now is None or now.id != self.id


def chainName(resultsRoot: str) -> str:
    """The watcher jobs' name for one results root (singleton serialises the jobs of one name)."""
    return CHAIN_PREFIX + hashlib.sha1(os.path.realpath(resultsRoot).encode()).hexdigest()[:10]


def newChain(s: Session, mode: Mode, experiments: Sequence[str], runs: int | None, cli: Mapping[str, Any],
             poll: float | None = None) -> Chain:  # fmt: skip
    return Chain(
        id=time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2), mode=mode, name=chainName(s.state.resultsRoot),
        root=s.root, experiments=[os.path.realpath(p) for p in experiments], runs=runs,
        cli={k: v for k, v in cli.items() if v is not None}, python=s.python, started=time.time(),
        backend=s.backend.name, poll=poll,
    )  # fmt: skip


def writeJson(path: str, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def watcherScript(chain: Chain, o: ServiceOptions, state: StateDir) -> str:
    """The sbatch script of one watcher job of ``chain``."""
    options = {**o.sbatch, "job_name": chain.name, "dependency": "singleton", "no_requeue": True,
               "output": state.watcherLog("%j"), "comment": f"pyxwatch:{chain.id}"}  # fmt: skip
    run = [chain.python, "-m", "pyexputils", "service", "run", "--chain", chain.id]
    return (
        "#!/bin/bash\n"
        f"{sbatchBlock(options)}\n"
        f"# pyexputils watcher of {state.resultsRoot} (chain {chain.id}): pyexputils service status|logs|stop\n"
        f"cd {shlex.quote(chain.root)} || exit 1\n"
        f"exec {shlex.join(run)}\n"
    )


# --- what is live ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Live:
    """What of a chain runs now."""

    running: list[str]  # watcher job ids running (at most one, by singleton) or the daemon's pid
    pending: list[str]  # successors waiting

    @property
    def any(self) -> bool:
        return bool(self.running or self.pending)


def liveOf(chain: Chain, state: StateDir) -> Live:
    """The chain's live watcher jobs (Slurm) or daemon."""
    if chain.mode is Mode.DAEMON:
        pid = daemonPid(state)
        return Live([str(pid)] if pid is not None else [], [])
    jobs = slurm.jobsNamed(chain.name)
    return Live([j for j, st in jobs if st != "PENDING"], [j for j, st in jobs if st == "PENDING"])


def successorAction(jobs: Sequence[tuple[str, str]], me: str | None) -> tuple[bool, list[str]]:
    """(submit one?, job ids to cancel): keep exactly one pending successor (the oldest) besides ``me``."""
    pending = [j for j, st in jobs if st == "PENDING" and j != me]
    return (not pending, pending[1:])


def daemonPid(state: StateDir) -> int | None:
    """The pid of the live ``watch --daemon`` of this results root (it holds ``daemon.lock``), else None."""
    try:
        fd = os.open(state.serviceFile("daemon.lock"), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except OSError:
        try:
            with open(state.serviceFile("daemon.pid"), encoding="utf-8") as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return -1  # held, by a process that has not written its pid yet
    finally:
        os.close(fd)


def crashLoop(starts: Sequence[tuple[str, float]], alive: tuple[str, float] | None, chainId: str, now: float) -> int:
    """How many watchers of chain ``chainId`` started in the last half hour since one last finished a round
    (``starts``: (chain, time) per watcher start; ``alive``: (chain, time) of the last finished round)."""
    since = max(now - FAILED_STARTS_WINDOW_S, alive[1] if alive and alive[0] == chainId else 0.0)
    return sum(1 for c, t in starts if c == chainId and t > since)


def readStarts(state: StateDir) -> tuple[list[tuple[str, float]], tuple[str, float] | None]:
    """``service/starts`` (one line per watcher start) and ``service/alive`` (the last finished round)."""

    def pairs(name: str) -> list[tuple[str, float]]:
        try:
            with open(state.serviceFile(name), encoding="utf-8") as f:
                words = [line.split() for line in f]
        except FileNotFoundError:
            return []
        return [(w[0], float(w[-1])) for w in words if len(w) >= 2 and w[-1].replace(".", "", 1).isdigit()]

    alive = pairs("alive")
    return pairs("starts"), (alive[-1] if alive else None)


# --- notifications -----------------------------------------------------------------------------------------
def summarize(t: Tally, chain: Chain, watcher: str | None) -> dict[str, Any]:
    """The end-of-sweep summary (the notify command's stdin, ``service/summary.json``)."""
    causes: dict[str, int] = {}
    for f in t.finals:
        causes[str(f.cause)] = causes.get(str(f.cause), 0) + 1
    return {
        "event": "end", "chain": chain.id, "watcher": watcher, "time": round(time.time(), 3),
        "total": t.total, "done": t.done, "final": len(t.finals), "final_causes": causes,
        "experiments": chain.experiments,
        "finals": [{"experiment": f.experiment, "index": f.index, "cause": str(f.cause), "reason": f.reason, "log": f.log}
                   for f in t.finals[:100]],
    }  # fmt: skip


def runNotify(command: str, payload: Mapping[str, Any], cwd: str, log: Callable[[str], None]) -> None:
    """Run the notify command (``sh -c``) with ``payload`` as JSON on stdin; its outcome goes to ``log``."""
    try:
        out = subprocess.run(["/bin/sh", "-c", command], input=json.dumps(payload) + "\n", cwd=cwd, text=True,
                             capture_output=True, timeout=NOTIFY_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        log(f"notify: {command!r} did not end within {NOTIFY_TIMEOUT_S:.0f} s (killed)")
        return
    except OSError as e:
        log(f"notify: {command!r} could not start: {e}")
        return
    tail = (out.stdout + out.stderr).strip().splitlines()[-5:]
    log(f"notify ({payload.get('event')}): exit {out.returncode}" + ("".join(f"\n  | {line}" for line in tail)))


def claimOnce(path: str) -> bool:
    """Create ``path`` if it does not exist: True for the one caller that created it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


# --- the watcher ---------------------------------------------------------------------------------------------
class LogDisplay:
    """A watcher's log: one time-stamped line per event worth keeping (a job's output file, a daemon's log)."""

    def __init__(self, out: Any = None) -> None:
        self.out = out if out is not None else sys.stdout
        self._last = ""

    def event(self, kind: str, **fields: Any) -> None:
        if kind == "ended":
            path = str(fields.get("experiment"))
            rel = os.path.relpath(path)  # the watcher runs in the project folder
            self.log(f"ended: {path if rel.startswith('..') else rel} index {fields.get('index')} attempt {fields.get('attempt')}: "
                     f"{fields.get('cause')}")  # fmt: skip

    def log(self, text: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        self.out.write(f"[{stamp} {now:.3f}] {text}\n")
        self.out.flush()

    def progress(self, t: Tally, note: str = "") -> None:
        line = f"{t.done}/{t.total} done, {t.live} queued/running, {len(t.finals)} final" + (f", {t.unknown} held back" if t.unknown else "")
        if line != self._last:
            self._last = line
            self.log(line)

    def close(self) -> None:
        pass


class ServiceWatcher(Watcher):
    """The watch loop of one watcher job (or daemon): waits for the ledger until its handover time, keeps a
    successor queued, notifies, and ends the chain when the sweep is settled."""

    def __init__(self, session: Session, chain: Chain, o: ServiceOptions, display: LogDisplay,
                 deadline: float | None, me: str | None) -> None:  # fmt: skip
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        super().__init__(session, chain.experiments, WatchOptions(runs=chain.runs, poll=chain.poll or o.poll, timeout=timeout, cli=chain.cli), display)  # fmt: skip
        self.chain = chain
        self.so = o
        self.log = display.log
        self.deadline = deadline
        self.me = me  # this watcher's job id (None: a daemon)
        self.successor: str | None = None
        self.broken: str | None = None  # why no successor could be queued
        self.rounds = 0

    # the chain
    def keepSuccessor(self) -> None:
        """Exactly one successor pending behind this watcher (Slurm mode)."""
        if self.me is None or self.broken:
            return
        try:
            jobs = slurm.jobsNamed(self.chain.name)
            submit, extra = successorAction(jobs, self.me)
            if extra:
                slurm.run(["scancel", *extra])
                self.log(f"cancelled surplus successors {' '.join(extra)}")
            if submit:
                script = watcherScript(self.chain, self.so, self.s.state)
                self.successor = slurm.submitScript(script, self.chain.root, f"the watcher of {self.chain.name}")
                self.log(f"successor job {self.successor} queued (starts when this watcher ends)")
            else:
                self.successor = next(j for j, st in jobs if st == "PENDING" and j != self.me)
        except SubmitRejected as e:  # refused (not "no answer", not "queue full": those are tried next round)
            self.broken = str(e).splitlines()[0]
            self.log(f"cannot queue a successor: {self.broken}")
            with open(self.s.state.serviceFile("problem.txt"), "w", encoding="utf-8") as f:
                f.write(f"{time.time():.0f} watcher {self.me}: cannot queue a successor: {self.broken}\n")
        except BackendError as e:
            self.log(f"no successor queued this round (trying again next round): {str(e).splitlines()[0]}")

    def endChain(self) -> None:
        if self.me is None:
            return
        with contextlib.suppress(BackendError):
            doomed = [j for j, _ in slurm.jobsNamed(self.chain.name) if j != self.me]
            if doomed:
                slurm.run(["scancel", *doomed])
                self.log(f"cancelled the successor{'s' if len(doomed) > 1 else ''} {' '.join(doomed)}")

    def checkStop(self) -> None:
        if self.chain.stopped(self.s.state):
            raise Stopped("the chain was stopped (pyexputils service stop) or replaced")

    # Watcher's hooks
    def openLedger(self) -> Ledger:
        said = False
        while True:
            self.checkStop()
            try:
                ledger = self.s.openLedger(wait=0)
                self.log(f"holds the ledger {self.s.state.ledger}")
                return ledger
            except LedgerBusy as e:
                if not said:
                    self.log(f"waiting for the ledger: {e}")
                    said = True
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise Stopped("the ledger stayed busy until this watcher's handover time")
            time.sleep(2.0)

    def round(self, ledger: Ledger, sweeps: Sequence[Any]) -> Tally | None:
        self.checkStop()
        self.keepSuccessor()
        t = super().round(ledger, sweeps)
        self.rounds += 1
        if self.rounds == 1:  # this watcher works: the crash-loop count starts again
            with open(self.s.state.serviceFile("alive"), "w", encoding="utf-8") as f:
                f.write(f"{self.chain.id} {time.time():.3f}\n")
        return t

    def crashLoop(self) -> bool:
        """Note this watcher's start; True (and the chain ended) when too many watchers in a row never
        finished a round: a successor would only fail the same way."""
        if self.me is None:
            return False
        starts, alive = readStarts(self.s.state)
        failed = crashLoop(starts, alive, self.chain.id, time.time())
        if failed >= MAX_FAILED_STARTS:
            self.broken = f"{failed} watchers in a row ended before finishing a round (see their logs): the chain stops here"
            self.log(self.broken)
            with open(self.s.state.serviceFile("problem.txt"), "w", encoding="utf-8") as f:
                f.write(f"{time.time():.0f} watcher {self.me}: {self.broken}\n")
            self.endChain()
            return True
        with open(self.s.state.serviceFile("starts"), "a", encoding="utf-8") as f:
            f.write(f"{self.chain.id} {self.me} {time.time():.3f}\n")
        return False

    def usage(self) -> str:
        """Rounds, Slurm calls and peak memory so far (for the log's last line)."""
        calls = ", ".join(f"{k} {n}" for k, n in sorted(slurm.CALLS.items())) or "none"
        return f"{self.rounds} rounds, Slurm calls: {calls}; peak memory {peakMB():.0f} MB"

    def tally(self, r: Round) -> Tally:
        t = super().tally(r)
        if self.so.notify and "final" in self.so.notify_on:
            for st in r.standings:
                for idx, attempt, v in st.verdicts:  # recorded this round: once per index, whichever watcher
                    if st.status(idx).state is State.FINAL:
                        runNotify(self.so.notify, {"event": "final", "chain": self.chain.id, "experiment": st.sweep.path,
                                                   "index": idx, "attempt": attempt, "cause": str(v.cause), "exit": v.exit},
                                  self.chain.root, self.log)  # fmt: skip
        return t

    def report(self, t: Tally) -> int:
        code = super().report(t)
        summary = summarize(t, self.chain, self.me)
        writeJson(self.s.state.serviceFile("summary.json"), summary)
        self.log(f"the sweep is settled: {t.done}/{t.total} done, {len(t.finals)} final; summary in {self.s.state.serviceFile('summary.json')}")
        if self.so.notify and "end" in self.so.notify_on and claimOnce(self.s.state.serviceFile(f"notified-{self.chain.id}")):
            runNotify(self.so.notify, summary, self.chain.root, self.log)
        self.endChain()
        return code

    def timedOut(self, t: Tally) -> int:
        self.keepSuccessor()
        self.log(f"handing over to {'job ' + self.successor if self.successor else 'the next watcher'} "
                 f"({t.done}/{t.total} done, {t.live} queued/running)")  # fmt: skip
        return 0


def runWatcher(chainId: str, daemon: bool = False) -> int:
    """``pyexputils service run``: one watcher of chain ``chainId`` (in a watcher job, or as the daemon)."""
    s = Session()
    state = s.state
    display = LogDisplay()
    log = display.log
    chain = Chain.read(state)
    me = None if daemon else os.environ.get("SLURM_JOB_ID")
    who = f"watcher job {me}" if me else f"daemon pid {os.getpid()}"
    if chain is None or chain.id != chainId or chain.stopped(state):
        log(f"{who}: chain {chainId} was stopped or replaced: nothing to do")
        return 0
    o = parseWatchBlock(s.config.watch, s.where)
    backend: str | Backend | None = chain.backend
    if chain.backend == "local":  # runs in a pool of their own: stopping the watcher does not stop them
        backend = LocalBackend.fromConfig(s.config, detach=True)
    s = Session(s.config, backend)
    if daemon:
        holdDaemonLock(state)  # held until this process ends (the kernel lets go of it then)
    left = slurm.timeLeft(me) if me else None
    if me and left is None:
        left = o.limit_s
    # handover 0: no handover of its own; the time limit ends the watcher (and its successor takes over)
    deadline = None if left is None or o.handover_s == 0 else time.monotonic() + max(0.0, left - o.handover(left))
    log(f"{who} starts on {os.uname().nodename} (chain {chain.id}, pid {os.getpid()}"
        + (f", {left} s left, handover {o.handover(left):.0f} s before the limit)" if left is not None else ")"))  # fmt: skip
    w = ServiceWatcher(s, chain, o, display, deadline, me)

    def stop(signum: int, frame: Any) -> None:
        raise Stopped(f"signal {signal.Signals(signum).name} (scancel, time limit, preemption or node failure)")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if w.crashLoop():
            return 1
        w.keepSuccessor()  # first: whatever happens to this watcher, the chain goes on
        code = w.run()
        log(f"{who} ends ({w.usage()}); the ledger is released")
        return 0 if code in (0, 1) else code
    except Stopped as e:
        log(f"{who} stops: {e} ({w.usage()}); the ledger is released")
        return 0


# --- starting and stopping ---------------------------------------------------------------------------------
def startService(s: Session, experiments: Sequence[str], runs: int | None, cli: Mapping[str, Any], mode: Mode,
                 poll: float | None = None) -> tuple[Chain, str]:  # fmt: skip
    """Start a watcher chain (``mode`` slurm) or daemon for these experiments: (the chain, the first watcher's
    job id or the daemon's pid). Refuses while another service or a watch holds this results root."""
    o = preflight(s, mode)
    chain = newChain(s, mode, experiments, runs, cli, poll)
    chain.write(s.state)
    try:
        if mode is Mode.DAEMON:
            return chain, str(spawnDaemon(chain, s.state))
        os.makedirs(os.path.dirname(s.state.watcherLog("x")), exist_ok=True)
        return chain, slurm.submitScript(watcherScript(chain, o, s.state), chain.root, f"the watcher of {chain.name}")
    except BaseException:
        os.unlink(s.state.serviceFile("chain.json"))  # nothing started: no chain to show
        raise


def preflight(s: Session, mode: Mode) -> ServiceOptions:
    """The ``watch`` block, checked, once nothing stands in the way of a new service here."""
    o = parseWatchBlock(s.config.watch, s.where)
    state = s.state
    old = Chain.read(state)
    if old is not None and not old.stopped(state):
        live = liveOf(old, state)
        if live.any:
            what = " ".join(live.running + live.pending)
            raise PyExpUtilsError(f"{s.relPath(state.resultsRoot)}: a watcher service runs already ({old.mode}: {what}); "
                                  "pyexputils service status, or pyexputils service stop first")  # fmt: skip
    if mode is Mode.SLURM and s.backend.name != "slurm":
        raise PyExpUtilsError(f"--detach runs the watcher as a Slurm job, but this sweep's backend is {s.backend.name}: use --daemon")
    try:
        Ledger.open(state, wait=0).close()  # a watch typed on a terminal holds it: one at a time
    except LedgerBusy as e:
        raise LedgerBusy(f"{e}: stop that watch first") from None
    return o


def spawnDaemon(chain: Chain, state: StateDir, wait: float = 15.0) -> int:
    """Start ``service run --daemon`` in a new session, detached from this terminal; its pid once it holds
    its lock."""
    path = state.serviceFile("daemon.log")
    with open(path, "a", encoding="utf-8") as log:
        p = subprocess.Popen([chain.python, "-m", "pyexputils", "service", "run", "--chain", chain.id, "--daemon"],
                             cwd=chain.root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True, close_fds=True)  # fmt: skip
    until = time.monotonic() + wait
    while time.monotonic() < until:
        if daemonPid(state) == p.pid:
            return p.pid
        if p.poll() == 0:
            return p.pid  # it ran and ended already (the sweep was settled)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    with open(path, encoding="utf-8", errors="replace") as f:
        tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
    raise PyExpUtilsError(f"the daemon did not start (exit {p.poll()}): {path}: {tail[0]}")


def stopService(state: StateDir, chain: Chain, wait: float = 60.0) -> list[str]:
    """End ``chain``: mark it stopped, cancel its watcher jobs (or signal the daemon) and wait until none
    runs. Returns what was stopped (job ids, or the daemon's pid)."""
    os.makedirs(state.service, exist_ok=True)
    with open(state.serviceFile("stop"), "w", encoding="utf-8") as f:
        f.write(chain.id + "\n")
    live = liveOf(chain, state)
    if chain.mode is Mode.DAEMON:
        if live.running and live.running[0] != "-1":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(live.running[0]), signal.SIGTERM)
    elif live.any:
        slurm.run(["scancel", *live.running, *live.pending])
    until = time.monotonic() + wait
    while time.monotonic() < until:
        now = liveOf(chain, state)
        if not now.any:
            break
        if chain.mode is not Mode.DAEMON and now.pending:  # queued by a watcher in the middle of its round meanwhile
            slurm.run(["scancel", *now.pending])
        time.sleep(0.5)
    if chain.mode is Mode.DAEMON and live.running and live.running[0] != "-1":
        while time.monotonic() < until and processAlive(int(live.running[0])):  # its lock goes first, then it
            time.sleep(0.1)
    if liveOf(chain, state).running:
        raise PyExpUtilsError(f"the watcher ({' '.join(live.running)}) still runs {wait:.0f} s after it was told to stop")
    return live.running + live.pending


def processAlive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def peakMB() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def holdDaemonLock(state: StateDir) -> int:
    """Take ``daemon.lock`` for this process's life and write its pid; PyExpUtilsError when one runs already."""
    os.makedirs(state.service, exist_ok=True)
    fd = os.open(state.serviceFile("daemon.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PyExpUtilsError(f"{state.serviceFile('daemon.lock')}: another watch --daemon runs here") from None
    with open(state.serviceFile("daemon.pid"), "w", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {os.uname().nodename}\n")
    return fd


__all__ = [
    "Chain", "Live", "LogDisplay", "Mode", "ServiceOptions", "ServiceWatcher", "chainName", "liveOf", "newChain",
    "parseWatchBlock", "runWatcher", "startService", "stopService", "successorAction", "summarize", "watcherScript",
]  # fmt: skip
