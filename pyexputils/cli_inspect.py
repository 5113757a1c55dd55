"""Commands that look into a sweep's runs (registered by :mod:`pyexputils.cli`):

    pyexputils ls     EXP... [--state S] [--cause C] [--plain] [--json]
    pyexputils logs   EXP INDEX [--attempt K] [--tail N] [--json]
    pyexputils errors EXP... [--lines N] [--json]

Every index's state comes from :meth:`pyexputils.runner.session.Session.standing` (``judgeIndex``), read-only
(no lock, nothing written, like ``status``); attempts and log files from the ledger and
:meth:`Session.logPaths`; host and elapsed time from the in-job runner's status files. The grouping (ranges of
indices alike, errors alike) is :mod:`pyexputils.runner.inspect`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pyexputils.display import table
from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription, loadExperiment
from pyexputils.runner.causes import Cause
from pyexputils.runner.inspect import Group, errorKey, flatten, formatSpans, groupErrors, groupRuns, lastLines, sharedValues, spans
from pyexputils.runner.judge import IndexStatus, State
from pyexputils.runner.ledger import Submission
from pyexputils.runner.session import Round, Session, Standing
from pyexputils.runner.status import readEvents

Handler = Callable[[argparse.Namespace], int]
TAIL_BYTES = 1 << 20  # at most this much of a log is read


def _state(text: str) -> State:
    try:
        return State(text.strip().upper())
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown state {text!r}; expected one of {', '.join(s.value for s in State)}") from None


def _nonNegative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


def register(sub: Any, backends: Sequence[str]) -> dict[str, Handler]:
    """Add ``ls``, ``logs`` and ``errors`` to ``sub`` (argparse sub-parsers); returns their handlers by name."""
    from pyexputils.cli import _cause, _positive  # here: pyexputils.cli imports this module

    def exps(q: argparse.ArgumentParser) -> None:
        q.add_argument("experiments", nargs="+", metavar="EXP", help="experiment files (JSON/YAML)")
        q.add_argument("--runs", type=_positive, help="runs per setting (default: as at the last submit, else 1)")
        q.add_argument("--backend", choices=backends, help="default: config backend (auto)")
        q.add_argument("--json", action="store_true", help="print JSON")

    ls = sub.add_parser("ls", help="every index: state, cause, attempts, exit code, elapsed, host, log (ranges of alike indices)")
    exps(ls)
    ls.add_argument("--state", type=_state, action="append", metavar="STATE",
                    help="only indices in this state (DONE, QUEUED, RUNNING, MISSING, RETRY, FINAL, UNKNOWN); repeatable")  # fmt: skip
    ls.add_argument("--cause", type=_cause, action="append", metavar="CAUSE",
                    help="only indices whose latest attempt ended with this cause; repeatable")  # fmt: skip
    ls.add_argument("--plain", action="store_true", help="tab-separated lines, no header or summary (for a pager, grep, awk)")
    ls.add_argument("--provenance", action="store_true", help="also the job, git commit and pyexputils version of each range's submission")

    lg = sub.add_parser("logs", help="stdout and stderr of one attempt at one index")
    lg.add_argument("experiment", metavar="EXP")
    lg.add_argument("index", type=int, metavar="INDEX")
    lg.add_argument("--attempt", type=_positive, metavar="K", help="the attempt (1, 2, ...; default: the latest)")
    lg.add_argument("--tail", type=_nonNegative, metavar="N", help="only the last N lines of each")
    lg.add_argument("--json", action="store_true", help="print JSON")

    er = sub.add_parser("errors", help="indices that ended without results, grouped by the last line(s) of their stderr")
    exps(er)
    er.add_argument("--lines", type=_positive, default=1, metavar="N", help="group by the last N lines of stderr (default 1)")
    return {"ls": cmdLs, "logs": cmdLogs, "errors": cmdErrors}


def _look(a: argparse.Namespace) -> tuple[Session, Round]:
    from pyexputils.cli import _look as look

    return look(a, a.experiments, a.runs)


# --- what the status files say about attempts ---------------------------------------------------------------
_RUN_EVENTS = frozenset({"start", "end"})  # not task_start: it lists every index of its task


class RunFacts:
    """Host and elapsed time of the latest attempt of each index asked about (:meth:`want`), from the runner's
    status files, each read once (:meth:`read`), held in arrays: 16 bytes an index of the sweep, no object per
    index. An index's elapsed time is its ``end``'s ``seconds``, or the time since its ``start`` while it runs;
    its host is the ``end``'s, else the ``start``'s (from the file of its latest attempt only)."""

    def __init__(self, total: int) -> None:
        self.file = np.full(total, -1, dtype=np.int32)  # which (tag, task) file holds each index's latest attempt
        self.files: dict[tuple[str, int], int] = {}
        self.host = np.full(total, -1, dtype=np.int32)  # into hostNames; -1: none said
        self.hostNames: list[str] = []
        self.seconds = np.full(total, np.nan)  # NaN: none said

    def want(self, statuses: Iterable[IndexStatus]) -> None:
        for x in statuses:
            if x.tag is not None and x.task is not None:
                self.file[x.index] = self.files.setdefault((x.tag, x.task), len(self.files))

    def wantTasks(self, idx: npt.NDArray[np.int64], names: list[str], tag: npt.NDArray[np.int64], task: npt.NDArray[np.int64]) -> None:  # fmt: skip
        """:meth:`want` of the indices ``idx`` from their statuses' tag and task as arrays (:meth:`Standing.latestTasks`)."""
        ok = (tag >= 0) & (task >= 0)
        if not ok.any():
            return
        pairs, inverse = np.unique(np.stack([tag[ok], task[ok]], axis=1), axis=0, return_inverse=True)
        ids = np.array([self.files.setdefault((names[t], k), len(self.files)) for t, k in pairs.tolist()], dtype=np.int32)
        self.file[idx[ok]] = ids[inverse.ravel()]

    def read(self, s: Session, now: float | None = None) -> None:
        now = time.time() if now is None else now
        ids: dict[str, int] = {}
        for (tag, task), fid in self.files.items():
            for ev in readEvents(os.path.join(s.state.statusOf(tag), f"{task}.jsonl"), _RUN_EVENTS):
                i = ev.get("index")
                if not isinstance(i, int) or not 0 <= i < len(self.file) or self.file[i] != fid:
                    continue
                kind, host = ev.get("event"), ev.get("host")
                if kind not in _RUN_EVENTS:  # readEvents still decodes a line not begun as StatusWriter begins one
                    continue
                if host:  # an end without a host keeps its start's
                    self.host[i] = ids.setdefault(str(host), len(ids))
                elif kind == "start":
                    self.host[i] = -1
                if kind == "start":
                    t = ev.get("time")
                    self.seconds[i] = np.nan if t is None else max(0.0, now - float(t))
                else:
                    sec = ev.get("seconds")
                    self.seconds[i] = np.nan if sec is None else float(sec)
        self.hostNames = list(ids)


def elapsed(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, sec = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{sec:02d}"


# --- ls --------------------------------------------------------------------------------------------------
LS_CHUNK = 4096  # indices whose IndexStatus objects exist at once in ``ls``


def _chunks(st: Standing, states: set[State] | None) -> Iterator[npt.NDArray[np.int64]]:
    """The indices in ``states`` (None: every index), in increasing order, :data:`LS_CHUNK` at a time."""
    if states is None:
        for a in range(0, st.sweep.total, LS_CHUNK):
            yield np.arange(a, min(a + LS_CHUNK, st.sweep.total), dtype=np.int64)
        return
    idx = st.indexArray(states)
    for a in range(0, len(idx), LS_CHUNK):
        yield idx[a : a + LS_CHUNK]


def _statuses(st: Standing, states: set[State] | None, causes: set[Cause] | None) -> Iterator[list[IndexStatus]]:
    """The status of each index ``ls`` shows, in increasing index order, :data:`LS_CHUNK` indices at a time."""
    for chunk in _chunks(st, states):
        yield [x for x in map(st.status, chunk.tolist()) if causes is None or x.cause in causes]


@dataclass
class _Range:
    """What the indices of one ``ls`` range add up to: its first index's status, its tags, how many have
    partial results, the least and the most elapsed seconds, its hosts."""

    status: IndexStatus
    tags: set[str]
    partial: int
    seconds: list[float]
    hosts: set[int]


def _ranges(s: Session, st: Standing, states: set[State] | None, causes: set[Cause] | None) -> tuple[Iterator[Group[tuple[Any, ...], _Range]], RunFacts]:  # fmt: skip
    """The ranges ``ls`` shows (:func:`pyexputils.runner.inspect.groupRuns`: consecutive indices with equal
    (state, cause, attempts, exit)) with what their runs' facts add up to, in bounded memory: statuses are built
    a chunk at a time (twice: once to know which files to read, once to group)."""
    facts = RunFacts(st.sweep.total)
    if causes is None:  # which file to read for each index, from arrays
        for chunk in _chunks(st, states):
            facts.wantTasks(chunk, *st.latestTasks(chunk))
    else:  # the cause of each index tells which are shown
        for xs in _statuses(st, states, causes):
            facts.want(xs)
    facts.read(s)

    def fold(r: _Range | None, x: IndexStatus) -> _Range:
        r = _Range(x, set(), 0, [], set()) if r is None else r
        if x.tag is not None:
            r.tags.add(x.tag)
        r.partial += bool(x.partial)
        sec, host = float(facts.seconds[x.index]), int(facts.host[x.index])
        if sec == sec:  # not NaN
            r.seconds = [min(r.seconds[0], sec), max(r.seconds[1], sec)] if r.seconds else [sec, sec]
        if host >= 0:
            r.hosts.add(host)
        return r

    rows = ((x.index, (x.state, x.cause, x.attempts, x.exit), x) for xs in _statuses(st, states, causes) for x in xs)
    return groupRuns(rows, fold), facts


def _span(values: Sequence[float]) -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return elapsed(lo) if elapsed(lo) == elapsed(hi) else f"{elapsed(lo)}-{elapsed(hi)}"


def provenance(sub: Submission) -> dict[str, Any]:
    p = sub.provenance
    return {"tag": sub.tag, "job": sub.job_id, "backend": sub.backend, "git_commit": p.get("git_commit"),
            "git_dirty": p.get("git_dirty"), "version": p.get("version"), "argv": p.get("argv")}  # fmt: skip


def lsGroups(s: Session, st: Standing, states: set[State] | None, causes: set[Cause] | None,
             subs: Mapping[str, Submission] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """``ls``'s rows of one sweep; with ``subs`` (tag -> submission), each row's submissions' provenance."""
    out = []
    groups, facts = _ranges(s, st, states, causes)
    for g in groups:
        x, r = g.value.status, g.value
        secs = r.seconds
        out.append({
            "experiment": st.sweep.shown, "indices": g.shown, "first": g.first, "last": g.last, "count": g.count,
            "state": str(x.state), "cause": None if x.cause is None else str(x.cause), "attempts": x.attempts, "exit": x.exit,
            "elapsed_s": None if not secs else [round(secs[0], 3), round(secs[1], 3)], "elapsed": _span(secs),
            "hosts": sorted(facts.hostNames[h] for h in r.hosts), "log": None if x.tag is None else s.relPath(s.logPaths(x.tag, g.first)[1]),
            "partial": r.partial, "reason": x.reason or None, "tags": sorted(r.tags),
        })  # fmt: skip
        if subs is not None:
            out[-1]["submissions"] = [provenance(subs[t]) for t in sorted(r.tags) if t in subs]
    return out


def cmdLs(a: argparse.Namespace) -> int:
    s, r = _look(a)
    states = set(a.state) if a.state else None
    causes = set(a.cause) if a.cause else None
    subs: dict[str, dict[str, Submission]] = {}
    if a.provenance:
        ledger = s.readLedger()
        if ledger is not None:
            with ledger:
                subs = {st.sweep.path: {x.tag: x for x in ledger.submissions(st.sweep.path)} for st in r.standings}
    everything = [(st, lsGroups(s, st, states, causes, subs.get(st.sweep.path, {}) if a.provenance else None)) for st in r.standings]
    if a.json:
        print(json.dumps([g for _, gs in everything for g in gs], indent=1, default=str))
        return 0
    head = ["indices", "count", "state", "cause", "attempts", "exit", "elapsed", "host", *(["job", "commit", "version"] if a.provenance else []), "log"]
    for k, (st, groups) in enumerate(everything):
        cells = [[g["indices"], str(g["count"]), g["state"] + ("*" if g["partial"] else ""), g["cause"] or "-",
                  str(g["attempts"]), "-" if g["exit"] is None else str(g["exit"]), g["elapsed"], _hosts(g["hosts"]),
                  *(_provenanceCells(g["submissions"]) if a.provenance else []), g["log"] or "-"] for g in groups]  # fmt: skip
        if a.plain:
            for c in cells:
                sys.stdout.write("\t".join([st.sweep.shown, *c]) + "\n")
            continue
        if k:
            print()
        counts = st.counts()
        shown = sum(g["count"] for g in groups)
        print(f"{st.sweep.shown}: {st.sweep.total} indices ({st.sweep.runs} runs): "
              + ", ".join(f"{n} {state}" for state, n in sorted(counts.items(), key=lambda kv: list(State).index(kv[0])))
              + ("" if states is None and causes is None else f"; {shown} shown"))  # fmt: skip
        if st.unknown:
            print(f"  {st.unknown}")
        if cells:
            print(table([head, *cells]))
            if any(g["partial"] for g in groups):
                print("* results on disk are partial (cut off, or failed after writing)")
    return 0


def _provenanceCells(subs: Sequence[dict[str, Any]]) -> list[str]:
    """job, commit, version of a range's submission (``N jobs`` ... when it has several)."""
    if not subs:
        return ["-", "-", "-"]
    if len(subs) > 1:
        return [f"{len(subs)} jobs", f"{len({x['git_commit'] for x in subs})} commits", f"{len({x['version'] for x in subs})} versions"]
    x = subs[0]
    commit = "no git" if not x["git_commit"] else str(x["git_commit"])[:12] + ("+dirty" if x["git_dirty"] else "")
    return [str(x["job"]), commit, str(x["version"] or "?")]


def _hosts(hosts: Sequence[str]) -> str:
    if not hosts:
        return "-"
    return hosts[0] if len(hosts) == 1 else f"{len(hosts)} hosts"


# --- logs ------------------------------------------------------------------------------------------------
def readTail(path: str, lines: int | None = None) -> str | None:
    """The end of a text file (at most ``TAIL_BYTES``; the last ``lines`` lines); None when it is not there."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    text = data.decode("utf-8", errors="replace")
    if size > TAIL_BYTES:
        text = text.split("\n", 1)[-1]  # the first line read is cut
    if lines is not None:
        text = "".join(text.splitlines(keepends=True)[-lines:]) if lines else ""
    return text


def taskLogPath(s: Session, tag: str, backend: str, job: str, task: int) -> str:
    """Where the scheduler put the whole array task's output (the runner's own lines, Slurm's ``***`` lines)."""
    name = f"task-{task}.log" if backend == "local" else f"{job}_{task}.out"
    return os.path.join(s.logDir, tag, name)


def cmdLogs(a: argparse.Namespace) -> int:
    exp: ExperimentDescription = loadExperiment(a.experiment)
    s = Session(None, None)
    path = os.path.realpath(a.experiment)
    ledger = s.readLedger()
    if ledger is None:
        raise PyExpUtilsError(f"{a.experiment}: nothing was ever submitted here (no ledger in {s.relPath(s.state.path)})")
    with ledger:
        runs = ledger.runs(path)
        exp.checkIndex(a.index, runs if runs is not None else a.index // exp.numPermutations() + 1)
        attempts = ledger.attemptsOf(path, a.index)
        if not attempts:
            raise PyExpUtilsError(f"{a.experiment}: index {a.index} was never submitted: it has no logs")
        numbers = [x.attempt for x in attempts]
        if a.attempt is not None and a.attempt not in numbers:
            raise PyExpUtilsError(f"{a.experiment}: index {a.index} has attempts {formatSpans(spans(numbers))}, not {a.attempt}")
        at = attempts[-1] if a.attempt is None else attempts[numbers.index(a.attempt)]
        sub = ledger.byTag(at.tag)
        verdict = ledger.verdicts(path).get(a.index, {}).get(at.attempt)
    out, err = s.logPaths(at.tag, a.index)
    taskLog = taskLogPath(s, at.tag, sub.backend if sub else "", at.job_id, at.task)
    texts = {name: readTail(p, a.tail) for name, p in (("stdout", out), ("stderr", err))}
    if a.json:
        print(json.dumps({
            "experiment": a.experiment, "index": a.index, "attempt": at.attempt, "attempts": numbers, "tag": at.tag,
            "job": at.job_id, "task": at.task,
            "verdict": None if verdict is None else {"cause": str(verdict.cause), "started": verdict.started, "exit": verdict.exit},
            **{name: {"path": p, "exists": texts[name] is not None, "text": texts[name]} for name, p in (("stdout", out), ("stderr", err))},
            "task_log": {"path": taskLog, "exists": os.path.isfile(taskLog)},
        }, indent=1))  # fmt: skip
        return 0
    ended = "no verdict recorded yet (live, or not looked at since it ended)" if verdict is None else (
        f"{verdict.cause}" + ("" if verdict.exit is None else f" (exit {verdict.exit})") + ("" if verdict.started else ", never started"))  # fmt: skip
    print(f"{a.experiment} index {a.index}: attempt {at.attempt} of {len(numbers)} (job {at.job_id}, task {at.task}, {at.tag}): {ended}")
    for name, p in (("stdout", out), ("stderr", err)):
        text = texts[name]
        what = "not there" if text is None else ("empty" if not text else (f"last {a.tail} lines" if a.tail is not None else ""))
        sys.stdout.write(f"==> {name}: {s.relPath(p)}{f' ({what})' if what else ''} <==\n")
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    print(f"task log (the runner and the scheduler): {s.relPath(taskLog)}" + ("" if os.path.isfile(taskLog) else " (not there)"))
    return 0


# --- errors ----------------------------------------------------------------------------------------------
ENDED_BADLY = (State.RETRY, State.FINAL, State.UNKNOWN)
SHOWN_SPANS = 12  # ranges of indices printed per error (--json has them all)
SHOWN_GROUPS = 20  # errors printed per experiment, the largest first


def groupIndices(text: str) -> list[int]:
    """``0-2,5`` -> ``[0, 1, 2, 5]``."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def errorGroups(s: Session, st: Standing, lines: int) -> list[dict[str, Any]]:
    """The indices of ``st`` whose latest attempt ended other than COMPLETED, grouped by cause and the
    normalised last ``lines`` lines of their stderr."""
    rows = []
    exp = st.sweep.exp
    for i in st.indices(ENDED_BADLY):
        x = st.status(i)
        if x.cause is None or x.cause is Cause.COMPLETED or x.tag is None:
            continue
        stdout, err = s.logPaths(x.tag, i)
        save = exp.interpolateSavePath(i)
        own = [stdout, err, os.path.dirname(err), s.config.underRoot(save), save, s.relPath(err), s.relPath(stdout)]
        text = readTail(err)
        last = lastLines(text or "", lines)
        shown = "\n".join(last) if last else ("(no stderr file)" if text is None else "(stderr empty)")
        rows.append((i, f"{x.cause}\t{errorKey(last, own) if last else shown}", shown))
    out: list[dict[str, Any]] = []
    groups = groupErrors(rows)
    swept = sweptNames(exp) if groups else set()
    P = exp.numPermutations()
    for g in groups:
        cause = g.key.split("\t", 1)[0]
        x = st.status(g.example)
        assert x.tag is not None
        shared = sharedValues([flatten(exp.getPermutation(i % P)) for i in g.indices], sorted(swept))
        out.append({
            "experiment": st.sweep.shown, "cause": cause, "count": g.count, "indices": formatSpans(spans(g.indices)),
            "error": g.text, "key": g.key.split("\t", 1)[1], "example": g.example,
            "log": s.relPath(s.logPaths(x.tag, g.example)[1]),
            "final": sum(1 for i in g.indices if st.status(i).state is State.FINAL),
            "shared": {k: json.loads(v) for k, v in shared.items()},
        })  # fmt: skip
    return out


SAMPLE = 4096  # settings looked at to tell which parameters are swept


def sweptNames(exp: ExperimentDescription) -> set[str]:
    """The (flattened) parameters with more than one value among the sweep's settings (evenly spaced ones
    when there are more than ``SAMPLE``)."""
    P = exp.numPermutations()
    seen: dict[str, set[str]] = {}
    for j in sorted({k * P // SAMPLE for k in range(min(P, SAMPLE))} | {P - 1}):
        for name, value in flatten(exp.getPermutation(j)).items():
            seen.setdefault(name, set()).add(value)
    return {name for name, values in seen.items() if len(values) > 1}


def cmdErrors(a: argparse.Namespace) -> int:
    s, r = _look(a)
    everything = [(st, errorGroups(s, st, a.lines)) for st in r.standings]
    if a.json:
        print(json.dumps([g for _, gs in everything for g in gs], indent=1))
        return 0
    for k, (st, groups) in enumerate(everything):
        if k:
            print()
        n = sum(g["count"] for g in groups)
        if not groups:
            print(f"{st.sweep.shown}: no index ended without results")
            continue
        print(f"{st.sweep.shown}: {n} indices ended without results: {len(groups)} distinct error{'s' if len(groups) > 1 else ''}")
        for j, g in enumerate(groups[:SHOWN_GROUPS], 1):
            final = "final" if g["final"] == g["count"] else ("to retry" if not g["final"] else f"{g['final']} final")
            print(f"[{j}] {g['count']} × {g['cause']} ({final}):")
            for line in g["error"].splitlines():
                print(f"      {line}")
            print(f"    indices: {formatSpans(spans(groupIndices(g['indices'])), most=SHOWN_SPANS)}")
            if g["shared"]:
                print("    all with: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in g["shared"].items()))
            print(f"    log: {g['log']}")
        if len(groups) > SHOWN_GROUPS:
            rest = groups[SHOWN_GROUPS:]
            print(f"... and {len(rest)} more distinct errors ({sum(g['count'] for g in rest)} indices): --json lists them all")
    return 0
