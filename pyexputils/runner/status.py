"""The in-job runner's status file: one JSON object per line, appended and flushed, per array task.

Events (``event`` key) and their fields, all with ``index`` (except ``task_*`` and ``stop``), ``time``
(epoch s), ``host``, ``job`` (Slurm array job id, or ``$PYX_JOB_ID``, or the runner's pid), ``task`` (the
array task id) and ``attempt``:

- ``task_start`` (``indices``, ``pid``, ``parallel``, ``tag``) / ``task_end`` (``cut_off``: bool, ``cause``:
  the stop's cause or None, ``exit``: the runner's exit code; when the run was not cut off, also ``offset``:
  the byte offset in the file of this run's ``task_start`` line (0 unless an earlier run of the task, e.g.
  before a requeue, wrote lines first), and ``outcomes``: the run's own account of every index's last line,
  :func:`summary` (written last on the line; older runners wrote neither: their files are read line by line)).
- ``start``: an index began (``pid``, ``command``).
- ``end``: an index ended: ``exit`` (exit code or None), ``signal`` (signal number or None), ``seconds``,
  ``cause``: ``COMPLETED`` | ``FAILED`` (non-zero exit, or exit 0 without its ``require`` files:
  ``missing`` lists them; or it could not be started: ``error``) | ``TIMEOUT`` (cut off by a time limit) |
  ``OUT_OF_MEMORY`` (SIGKILL that the runner did not send) | ``CANCELLED``; ``killed``: true when the
  runner had to SIGKILL it; ``maxrss_mb``: the run's peak memory (``wait4``'s ``ru_maxrss``), where known.
- ``skip``: an index not started: the task was told to stop (``cause``: ``TIMEOUT``/``CANCELLED``), or
  its results were already on disk (``cause``: ``COMPLETED``).
- ``stop``: the runner got a stop signal (``signal``, ``name``, ``cause``, ``running``: the indices cut
  off, ``skipped``: the indices it will not start). Written before the cut-off runs end.
- ``scheduler``: after a bare SIGTERM under Slurm, the state Slurm's own ``*** JOB ... CANCELLED AT ...
  [DUE TO ...] ***`` line in the task's stderr file gives (``state``: ``CANCELLED`` for a ``scancel``,
  ``PREEMPTED``, ``TIMEOUT``, ``NODE_FAIL``; None when there was none within 2 s): it tells a cancellation
  from a preemption where ``sacct`` is off and squeue has forgotten the job.

It works where sacct does not, and outlives squeue's memory (MinJobAge).
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator

from pyexputils.runner.inspect import formatSpans, spans


class StatusWriter:
    """Appends events to one status file; every line is flushed (and the file opened O_APPEND)."""

    def __init__(self, path: str, **common: Any) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path = path
        self._common = common
        self._f: IO[str] = open(path, "a", encoding="utf-8", buffering=1)
        self.offset = self._f.tell()  # the file's size when opened: where this writer's first line goes

    def write(self, event: str, **fields: Any) -> None:
        record = {"event": event, **self._common, **fields}
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "StatusWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class IndexOutcome:
    """The last thing a status file says about one index."""

    index: int
    state: str  # RUNNING (started, no end yet) or one of CAUSES
    exit: int | None
    signal: int | None
    host: str | None
    job: str | None
    attempt: int | None
    time: float | None  # (not kept by :class:`Outcomes`: None)
    started: bool = True  # False for a ``skip``: the index never ran in this attempt
    schedulerState: str | None = None  # the state the runner saw its job in when it was stopped


BATCH = 1024  # lines decoded at once: a file of any size is read in bounded memory


def readEvents(path: str, only: frozenset[str] | None = None, end: int | None = None) -> Iterator[dict[str, Any]]:
    """The events in ``path`` in order; a torn last line (writer killed mid-write) is ignored. Read and
    decoded :data:`BATCH` lines at a time (a task of 10^5 runs writes a file of 10^5 lines and more).
    ``only``: the kinds wanted; a line the writer began with another ``{"event":"<kind>"`` is not decoded
    (``task_start`` lists every index of its task). ``end``: the lines before this byte offset only."""
    try:
        f: IO[str] = open(path, encoding="utf-8", errors="replace") if end is None else _upTo(path, end)
    except (FileNotFoundError, NotADirectoryError):
        return
    with f:
        lines: list[str] = []
        while True:
            line = f.readline(LONG)
            if len(line) == LONG and not line.endswith("\n"):  # a long line (task_start, stop: index lists)
                if only is not None and unwanted(line, only):
                    while len(line) == LONG and not line.endswith("\n"):  # skipped a piece at a time
                        line = f.readline(LONG)
                    continue
                pieces = [line]
                while len(line) == LONG and not line.endswith("\n"):
                    line = f.readline(LONG)
                    pieces.append(line)
                line = "".join(pieces)
            if not line.endswith("\n"):
                break  # the part after the last newline is torn or empty
            if only is not None and unwanted(line, only):
                continue
            lines.append(line)
            if len(lines) == BATCH:
                yield from _decode(lines, only)
                lines = []
        yield from _decode(lines, only)


LONG = 1 << 16  # a line longer than this is read in pieces (and not at all when its kind is not wanted)
_HEAD = '{"event":"'  # how StatusWriter begins every line
_AT = len(_HEAD)


def unwanted(line: str, only: frozenset[str]) -> bool:
    """The line begins as StatusWriter begins one, with a kind not in ``only`` (:func:`readEvents` leaves it)."""
    return line.startswith(_HEAD) and line[_AT : line.find('"', _AT)] not in only


def _decode(lines: list[str], only: frozenset[str] | None = None) -> Iterator[dict[str, Any]]:
    if not lines:
        return
    try:  # one decode for many lines
        events: list[dict[str, Any]] = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        events = []
        for line in lines:  # a damaged line: skip it alone
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if only is None:
        yield from events
    else:  # lines written otherwise than by StatusWriter (its prefix not found) are sorted here
        yield from (e for e in events if isinstance(e, dict) and e.get("event") in only)


class _UpTo(io.RawIOBase):
    """The first ``end`` bytes of a file."""

    def __init__(self, f: io.FileIO, end: int) -> None:
        self.f, self.left = f, end

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = (self.f.readinto(memoryview(b)[: self.left]) or 0) if self.left > 0 else 0
        self.left -= n
        return n

    def close(self) -> None:
        self.f.close()
        super().close()


def _upTo(path: str, end: int) -> IO[str]:
    return io.TextIOWrapper(io.BufferedReader(_UpTo(open(path, "rb", buffering=0), end)), encoding="utf-8", errors="replace")


# --- the run's own account, on its task_end line ------------------------------------------------------
Final = tuple[str, "int | None", "int | None", bool]  # an index's last line in a run: cause, exit, signal, started
#   (started: an ``end``, not a ``skip``); with the line's host, job and attempt, what Outcomes keeps of it


def summary(finals: Iterable[tuple[int, Final]]) -> list[dict[str, Any]]:
    """``task_end``'s ``outcomes``: the indices of a run that was not cut off, grouped by the last line each
    got in it (``(index, (cause, exit, signal, started))`` pairs, each index once), each group
    ``{"cause", "exit", "signal", "started", "indices": "0-99,140"}`` (ranges text, the last field). What
    :class:`pyexputils.runner.outcomes.Outcomes` reads instead of the run's lines."""
    groups: dict[Final, list[int]] = {}
    for i, f in finals:
        groups.setdefault(f, []).append(i)
    return [{"cause": str(c), "exit": e, "signal": s, "started": b, "indices": formatSpans(spans(idx))} for (c, e, s, b), idx in groups.items()]


@dataclass(frozen=True)
class Summary:
    """A status file whose last line is a ``task_end`` with ``outcomes``: the lines from ``offset`` on (its
    run's) say no more about any index than ``groups`` do."""

    offset: int  # where its run's task_start line begins: the lines before it are earlier runs'
    host: Any
    job: Any
    attempt: Any
    groups: list[tuple[Final, str]]  # each last line with its indices as ranges text


_START = b'{"event":"task_start"'
_END = b'{"event":"task_end"'
SUMMARY_TAIL = b'"}]}\n'  # how a task_end line with outcomes ends (ranges text, the last field of the last group)


def readSummary(path: str) -> Summary | None:
    """The run's account on the last line of ``path``, read from the end (a long line whole); None when the
    last line is not a ``task_end`` with a well-formed ``outcomes`` (older runners, a cut-off run, a torn or
    damaged line, a requeued run still going) or its ``offset`` is not where a ``task_start`` line begins."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if size < len(SUMMARY_TAIL):
                return None
            f.seek(size - len(SUMMARY_TAIL))
            if f.read() != SUMMARY_TAIL:
                return None
            line, pos = _lastLine(f, size)
            if not line.startswith(_END):
                return None
            ev = json.loads(line)
            del line
            offset = ev.get("offset")
            if type(offset) is not int or not 0 <= offset < pos:
                return None
            f.seek(max(0, offset - 1))
            if f.read(len(_START) + (offset > 0)) != (b"\n" if offset else b"") + _START:  # a line begins there, a task_start
                return None
    except (OSError, ValueError):  # not there, not JSON, not UTF-8
        return None
    groups = ev.get("outcomes")
    if ev.get("cut_off") is not False or not isinstance(groups, list):
        return None
    out: list[tuple[Final, str]] = []
    for g in groups:
        if not isinstance(g, dict):
            return None
        c, e, s, b, idx = (g.get(k) for k in ("cause", "exit", "signal", "started", "indices"))
        if not (isinstance(c, str) and _intOrNone(e) and _intOrNone(s) and type(b) is bool and isinstance(idx, str)):
            return None
        out.append(((c, e, s, b), idx))
    return Summary(offset, ev.get("host"), ev.get("job"), ev.get("attempt"), out)


def _lastLine(f: IO[bytes], size: int) -> tuple[bytes, int]:
    """The last line of a file of ``size`` bytes that ends with a newline (without it), read back from the end
    :data:`LONG` bytes at a time, and where it begins."""
    pieces: list[bytes] = []
    pos = size
    while pos > 0:
        step = min(LONG, pos)
        pos -= step
        f.seek(pos)
        piece = f.read(step)
        if not pieces:
            piece = piece[:-1]
        nl = piece.rfind(b"\n")
        pieces.append(piece[nl + 1 :])
        if nl >= 0:
            pos += nl + 1
            break
    return b"".join(reversed(pieces)), pos


def lastRunEnded(path: str) -> bool:
    """Whether the last line of ``path`` is a ``task_end``: the file's last run has ended (a torn last line:
    a writer is at work). Read from the end; a line StatusWriter began with another kind is not decoded."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 1))
            if f.read(1) != b"\n":
                return False
            line, _ = _lastLine(f, size)
    except OSError:
        return False
    if line.startswith(_HEAD.encode()):
        return line.startswith(_END)
    try:
        ev = json.loads(line)
    except ValueError:
        return False
    return isinstance(ev, dict) and ev.get("event") == "task_end"


def _intOrNone(x: object) -> bool:
    return x is None or type(x) is int


def outcomes(paths: list[str]) -> dict[int, IndexOutcome]:
    """The latest outcome per index of several status files, one object per index (small files, tests:
    :class:`pyexputils.runner.outcomes.Outcomes` holds them as ranges)."""
    from pyexputils.runner.outcomes import Outcomes  # NumPy: never in the in-job runner, which writes these files

    return dict(Outcomes.read(paths).items())
