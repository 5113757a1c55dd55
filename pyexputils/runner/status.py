"""The in-job runner's status file: one JSON object per line, appended and flushed, per array task.

Events (``event`` key) and their fields, all with ``index`` (except ``task_*`` and ``stop``), ``time``
(epoch s), ``host``, ``job`` (Slurm array job id, or ``$PYX_JOB_ID``, or the runner's pid), ``task`` (the
array task id) and ``attempt``:

- ``task_start`` (``indices``, ``pid``, ``parallel``, ``tag``) / ``task_end`` (``cut_off``: bool, ``cause``:
  the stop's cause or None, ``exit``: the runner's exit code).
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

import json
import os
from dataclasses import dataclass
from typing import IO, Any, Iterator



class StatusWriter:
    """Appends events to one status file; every line is flushed (and the file opened O_APPEND)."""

    def __init__(self, path: str, **common: Any) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.path = path
        self._common = common
        self._f: IO[str] = open(path, "a", encoding="utf-8", buffering=1)

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


def readEvents(path: str, only: frozenset[str] | None = None) -> Iterator[dict[str, Any]]:
    """The events in ``path`` in order; a torn last line (writer killed mid-write) is ignored. Read and
    decoded :data:`BATCH` lines at a time (a task of 10^5 runs writes a file of 10^5 lines and more).
    ``only``: the kinds wanted; a line the writer began with another ``{"event":"<kind>"`` is not decoded
    (``task_start`` lists every index of its task)."""
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return
    with f:
        lines: list[str] = []
        while True:
            line = f.readline(LONG)
            if len(line) == LONG and not line.endswith("\n"):  # a long line (task_start, stop: index lists)
                if only is not None and line.startswith(_HEAD) and line[_AT : line.find('"', _AT)] not in only:
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
            if only is not None and line.startswith(_HEAD) and line[_AT : line.find('"', _AT)] not in only:
                continue
            lines.append(line)
            if len(lines) == BATCH:
                yield from _decode(lines, only)
                lines = []
        yield from _decode(lines, only)


LONG = 1 << 16  # a line longer than this is read in pieces (and not at all when its kind is not wanted)
_HEAD = '{"event":"'  # how StatusWriter begins every line
_AT = len(_HEAD)


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


def outcomes(paths: list[str]) -> dict[int, IndexOutcome]:
    """The latest outcome per index of several status files, one object per index (small files, tests:
    :class:`pyexputils.runner.outcomes.Outcomes` holds them as ranges)."""
    from pyexputils.runner.outcomes import Outcomes  # NumPy: never in the in-job runner, which writes these files

    return dict(Outcomes.read(paths).items())
