"""What ``ls`` and ``errors`` show, as pure functions: runs of indices that look alike, and errors that are one.

- :func:`groupRuns`: consecutive indices with the same key (state, cause, attempts, exit code) as one
  :class:`Group` (``0-99``), so that a listing of 10^5 indices is as long as the number of changes in it (and
  holds one group's fold at a time, not its indices);
- :func:`errorKey`: the last line(s) of a run's stderr with what changes from run to run taken out (numbers,
  addresses, the index's own paths), so that one bug in 300 runs is one key;
- :func:`groupErrors`: indices by that key, largest group first;
- :func:`spans` / :func:`formatSpans`: sorted indices as ``(first, last)`` spans and as ``0-99,140``
  (:func:`taskSpans`: a job's, from its ranges);
- :func:`sharedValues`: the swept parameters whose value every failed setting of a group shares (the bug's
  likely trigger: ``alpha=1.0``).

Nothing here reads a file or the ledger: :mod:`pyexputils.cli_inspect` feeds it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Hashable, Iterable, Iterator, Mapping, Sequence, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
A = TypeVar("A")


def spans(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, distinct indices as inclusive spans of consecutive ones: ``[0, 1, 2, 5] -> [(0, 2), (5, 5)]``."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indices)):
        if out and i == out[-1][1] + 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def taskSpans(tasks: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Every index of a job's ``tasks`` as inclusive spans, from a plan's ranges (nothing per index)."""
    from pyexputils.runner.bundles import Bundles, IndexSet, allIndices

    lo, n = (tasks.indices if isinstance(tasks, Bundles) else IndexSet.of(allIndices(tasks))).ranges()
    return list(zip(lo.tolist(), (lo + n - 1).tolist()))


def formatSpans(s: Sequence[tuple[int, int]], most: int | None = None) -> str:
    """``[(0, 99), (140, 140)] -> "0-99,140"``; with ``most``, the first ``most`` spans and how many more."""
    shown = s if most is None or len(s) <= most else s[:most]
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in shown)
    if len(shown) < len(s):
        rest = s[len(shown):]
        text += f" ... and {len(rest)} more ranges ({sum(b - a + 1 for a, b in rest)} indices)"
    return text


@dataclass
class Group(Generic[K, T]):
    """Consecutive indices ``first..last`` whose key is ``key``; ``value``: what their items fold to."""

    key: K
    first: int
    last: int
    value: T

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    @property
    def shown(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def groupRuns(rows: Iterable[tuple[int, K, T]], fold: Callable[[A | None, T], A]) -> Iterator[Group[K, A]]:
    """``(index, key, item)`` rows in increasing index order as groups of consecutive indices with equal keys,
    each yielded once complete, its items folded as they come (``fold(None, first)``, then ``fold(value, item)``):
    memory holds one group's fold, not its items. A gap in the indices (a filtered listing) starts a new group."""
    g: Group[K, A] | None = None
    for index, key, item in rows:
        if g is not None and index <= g.last:
            raise ValueError(f"indices must increase: {index} after {g.last}")
        if g is not None and g.key == key and index == g.last + 1:
            g.last, g.value = index, fold(g.value, item)
            continue
        if g is not None:
            yield g
        g = Group(key, index, index, fold(None, item))
    if g is not None:
        yield g


# --- errors ------------------------------------------------------------------------------------------------
_NOISE = (  # what differs between runs of one bug, in the order it is taken out
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),  # addresses
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<time>"),
    (re.compile(r"(?<![\w)\]])[-+](?=\.?\d)"), ""),  # the sign of a number standing alone: x=-5 as x=5
    (re.compile(r"(?<![A-Za-z\d])\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)"), "N"),  # floats: 0.5, 1e-3
    (re.compile(r"\b(?=[A-Za-z_]*\d)(?=\d*[A-Za-z_])\w{8,}\b"), "<id>"),  # tmp names, hashes, tags: tmpab12cd9x
    (re.compile(r"(?<![A-Za-z\d])\d+"), "N"),  # whole numbers, not those glued to a name (int64)
)
SLURM_LINE = re.compile(r"^(?:slurmstepd(?:-[\w.-]+)?: error: \*\*\*|srun: )")  # the scheduler's, not the run's


def lastLines(text: str, n: int = 1) -> list[str]:
    """The last ``n`` non-blank lines of ``text`` (right-stripped), leaving out Slurm's own ``*** JOB ... ***``
    lines (they say how the task was stopped, not what the run said)."""
    lines = [ln.rstrip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln.strip() and not SLURM_LINE.match(ln.strip())]
    return lines[-n:] if n > 0 else []


def errorKey(lines: Sequence[str], own: Sequence[str] = ()) -> str:
    """``lines`` as one key with what differs between runs of one bug taken out: ``own`` (the index's own
    paths: its save folder, its log files; longest first) becomes ``<path>``, then addresses, UUIDs, times
    and numbers become placeholders. Lines are joined with `` ⏎ ``."""
    out: list[str] = []
    paths = sorted((p for p in own if p), key=len, reverse=True)
    for line in lines:
        for p in paths:
            line = line.replace(p, "<path>")
        for pattern, placeholder in _NOISE:
            line = pattern.sub(placeholder, line)
        out.append(" ".join(line.split()))
    return " ⏎ ".join(out)


@dataclass
class ErrorGroup:
    """Indices whose stderr ends alike."""

    key: str
    indices: list[int]
    example: int  # the first index of the group: its log is the one shown
    text: str  # that index's last line(s), as written

    @property
    def count(self) -> int:
        return len(self.indices)


def groupErrors(rows: Iterable[tuple[int, str, str]]) -> list[ErrorGroup]:
    """``(index, key, raw text)`` rows grouped by key: the largest group first, then by first index."""
    groups: dict[str, ErrorGroup] = {}
    for index, key, text in rows:
        g = groups.get(key)
        if g is None:
            groups[key] = ErrorGroup(key, [index], index, text)
        else:
            g.indices.append(index)
            if index < g.example:
                g.example, g.text = index, text
    for g in groups.values():
        g.indices.sort()
    return sorted(groups.values(), key=lambda g: (-g.count, g.example))


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A setting as ``{dotted name: its value as JSON}`` (nested dicts become ``a.b``)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = json.dumps(v, sort_keys=True, default=str)
    return out


def sharedValues(group: Sequence[Mapping[str, str]], swept: Iterable[str]) -> dict[str, str]:
    """The names of ``swept`` (parameters with several values in the sweep) that have one value in every
    setting of ``group`` (flattened settings), with that value; empty for an empty group."""
    if not group:
        return {}
    out: dict[str, str] = {}
    for name in swept:
        values = {g.get(name) for g in group}
        value = values.pop() if len(values) == 1 else None
        if value is not None:
            out[name] = value
    return out
