"""Which indices exist, and which are not done: one directory listing per folder, not one stat per index.

A run is *done* when its save folder exists or, when ``require`` (config or argument) names files, when
all of them exist in it. ``listMissingResults`` walks the save path level by level from its fixed root:
it lists each existing folder once and compares the names in bulk against the names every setting and
run would have there. File-system calls: one listing per existing folder that holds save folders (a
folder that is absent is never visited), plus, with ``require``, one check per existing save folder
(a ``stat`` for one required file, a listing for several): that last part cannot be avoided, since
only the save folder knows what is inside it.
"""
from __future__ import annotations

import itertools
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import numpy.typing as npt

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription
from pyexputils.results.paths import PARAMS, RUN, Level, PathPlan, listResultsPaths, planSavePath, projectBase

T = TypeVar("T")
R = TypeVar("R")

# a node of the walk: (permutation or -1, run or -1, folder path)
CHUNK = 4096  # folders of the last level listed at once
WORKERS = 16  # threads that list folders at once when listings wait (on the disk or the network): waits overlap
PROBE = 32  # folders listed one by one first, to tell a listing that waits from one served by the cache
SLOW_LISTING_S = 100e-6  # a mean listing slower than this waits on something: the rest go to threads
BATCH = 16  # listings a thread takes at a time
AHEAD = 2 * CHUNK  # listings done or under way before the walk uses them: bounds the names held at once
_Node = tuple[int, int, str]


def listIndices(exp: ExperimentDescription, runs: int = 1) -> range:
    """The indices ``0 … runs·P − 1``: every setting once per run, run 0 first."""
    return range(exp.numPermutations() * runs)


def listMissingResults(
    exp: ExperimentDescription,
    runs: int = 1,
    *,
    require: Sequence[str] | None = None,
    base: str = "",
    workers: int = WORKERS,
) -> list[int]:
    """The indices (of ``runs`` runs) whose run is not done, in increasing order.

    ``require`` defaults to the config's; ``base`` is prepended to save paths; up to ``workers`` threads list
    folders at once when listings wait on the disk or the network (the first few, listed one by one, tell):
    from a cold cache 10^6 runs' folders on this machine's disk took 9-15 s instead of 43 s one at a time,
    while from a warm cache threads would only contend for the interpreter. 1: no threads.
    """
    return np.flatnonzero(~doneMask(exp, runs, require=require, base=base, workers=workers)).tolist()  # type: ignore[no-any-return]


def doneMask(
    exp: ExperimentDescription,
    runs: int = 1,
    *,
    require: Sequence[str] | None = None,
    base: str = "",
    workers: int = WORKERS,
) -> npt.NDArray[np.bool_]:
    """A boolean per index ``0 … runs·P − 1``: True where the run is done."""
    if runs < 0:
        raise ValueError(f"runs must be >= 0, got {runs}")
    exp.validateSavePath(max(runs, 1))
    count = exp.numPermutations()
    mask = np.zeros(runs * count, dtype=bool)
    if runs == 0:
        return mask
    required = list(exp.config.require if require is None else require)
    base = projectBase(exp, base)
    plan = planSavePath(exp, base)
    if plan is not None and not _exists(plan.root):
        return mask  # no results folder yet: nothing is done (and no name of any setting is made)
    params = exp.paramsStrings() if plan is not None and plan.usesParams else [""]
    if any("/" in text for text in params):  # a value with "/" adds folders to {params}: check one by one
        plan = None
    if plan is None:
        paths = [os.path.join(base, p) if base else p for p in listResultsPaths(exp, runs)]
        for i, path in enumerate(paths):
            mask[i] = os.path.exists(path) and all(os.path.exists(os.path.join(path, f)) for f in required)
        return mask
    count = exp.numPermutations()
    with Pace(workers) as pace:
        if not required:
            done = _walk(exp, plan, params, runs, pace, paths=False)
        else:
            folders = _walk(exp, plan, params, runs, pace, paths=True)
            assert isinstance(folders, list)
            ok = _map(lambda node: _hasAll(node[1], required), folders, pace)
            done = [i for (i, _), good in zip(folders, ok) if good]
    if len(done):
        mask[np.asarray(done, dtype=np.int64)] = True
    return mask


def rangesText(indices: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> str:
    """Sorted, distinct indices (or a mask: the indices where it is True) as ranges (``0-99,140``), costing
    the ranges, not the indices (a mask: a byte an index)."""
    if indices.dtype == np.bool_:
        edges = np.diff(indices.view(np.int8), prepend=np.int8(0), append=np.int8(0))  # +1 where a range starts, -1 after it ends
        starts = np.flatnonzero(edges == 1).tolist()
        ends = (np.flatnonzero(edges == -1) - 1).tolist()
    else:
        if not len(indices):
            return ""
        cut = np.flatnonzero(np.diff(indices) != 1)
        starts = np.concatenate([indices[:1], indices[cut + 1]]).tolist()
        ends = np.concatenate([indices[cut], indices[-1:]]).tolist()
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in zip(starts, ends))


def doneAt(
    exp: ExperimentDescription,
    indices: Sequence[int] | npt.NDArray[np.int64],
    *,
    require: Sequence[str] | None = None,
    base: str = "",
) -> npt.NDArray[np.bool_]:
    """Whether each of ``indices`` is done (the rule of :func:`doneMask`), checked one by one: a few ``stat``
    calls an index, for when only a few indices can have changed since a whole :func:`doneMask`."""
    required = list(exp.config.require if require is None else require)
    base = projectBase(exp, base)
    out = np.zeros(len(indices), dtype=bool)
    for k, i in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
        path = exp.interpolateSavePath(i)
        path = os.path.join(base, path) if base else path
        out[k] = os.path.exists(path) and all(os.path.exists(os.path.join(path, f)) for f in required)
    return out


def _walk(
    exp: ExperimentDescription, plan: PathPlan, params: list[str], runs: int, pace: "Pace", paths: bool
) -> list[Any] | npt.NDArray[np.int64]:
    """The indices whose save folder exists (``params``: every setting's ``{params}``); with ``paths``, (index, folder) pairs."""
    count = exp.numPermutations()
    runStrings = [str(r) for r in range(runs)]
    nodes: list[_Node] = [(-1, -1, plan.root)]
    fixedP = fixedR = False  # whether the folders of this depth already know their setting / run
    for depth, level in enumerate(plan.levels):
        # the names a level can hold depend only on what it reads: share them across folders when possible
        shared = not ((level.usesParams and fixedP) or (level.usesRun and fixedR))
        if shared and depth == len(plan.levels) - 1 and not paths:
            candidates = _candidates(level, -1, -1, params, count, runStrings)
            names = _stream(_listNames, [node[2] for node in nodes], pace)
            parts = []
            for k in range(0, len(nodes), CHUNK):  # a chunk of folders' names at a time in memory
                chunk = nodes[k : k + CHUNK]
                parts.append(_lastLevel(chunk, list(itertools.islice(names, len(chunk))), candidates, count))
            return np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0, dtype=np.int64)
        listings = _map(_listNames, [node[2] for node in nodes], pace)
        if shared:
            candidates = _candidates(level, -1, -1, params, count, runStrings)
            nodes = _sharedLevel(nodes, listings, candidates, level)
        else:
            nodes = _ownLevel(nodes, listings, level, params, count, runStrings)
        fixedP, fixedR = fixedP or level.usesParams, fixedR or level.usesRun
    if paths:
        return [(max(r, 0) * count + max(p, 0), path) for p, r, path in nodes]
    return [max(r, 0) * count + max(p, 0) for p, r, _ in nodes]


def _lastLevel(
    nodes: list[_Node],
    listings: list[list[str] | None],
    candidates: dict[str, list[tuple[int, int]]],
    count: int,
) -> list[int] | npt.NDArray[np.int64]:
    """The hot loop: indices of the save folders found in each listed folder of the last level.

    Names are looked up in C (``map`` over ``dict.get``); the per-folder offset is added by NumPy.
    """
    offsets, extra = _offsets(candidates, count)
    get = offsets.get
    empty = "" in candidates
    found: list[int] = []
    bases: list[int] = []
    sizes: list[int] = []
    more: list[int] = []
    for (perm, run, _), names in zip(nodes, listings):
        if names is None:
            continue
        base = max(run, 0) * count + max(perm, 0)  # what the folder fixes; the level adds the rest
        if empty:
            names = names + [""]
        found += map(get, names, itertools.repeat(-1))
        bases.append(base)
        sizes.append(len(names))
        if extra:
            present = set(names)
            more += [o + base for n, values in extra.items() if n in present for o in values]
    values = np.array(found, dtype=np.int64)
    index = values + np.repeat(np.array(bases, dtype=np.int64), sizes)
    if len(values) and values.min() < 0:  # names that are no run of this level
        index = index[values >= 0]
    return np.concatenate([index, np.array(more, dtype=np.int64)]) if more else index


def _sharedLevel(
    nodes: list[_Node], listings: list[list[str] | None], candidates: dict[str, list[tuple[int, int]]], level: Level
) -> list[_Node]:
    """The folders found one level down when every folder of this level can hold the same names."""
    usesP, usesR = level.usesParams, level.usesRun
    single = {n: pairs[0] for n, pairs in candidates.items() if len(pairs) == 1 and n}
    other = {n: pairs for n, pairs in candidates.items() if len(pairs) > 1 or not n}
    found: list[_Node] = []
    add = found.append
    for (perm, run, path), names in zip(nodes, listings):
        if names is None:
            continue
        prefix = path + "/"
        for n in names:
            pr = single.get(n)
            if pr is not None:
                add((pr[0] if usesP else perm, pr[1] if usesR else run, prefix + n))
        present = set(names) if other else ()
        for n, pairs in other.items():
            if not n or n in present:
                for p, r in pairs:
                    add((p if usesP else perm, r if usesR else run, prefix + n if n else path))
    return found


def _ownLevel(
    nodes: list[_Node],
    listings: list[list[str] | None],
    level: Level,
    params: list[str],
    count: int,
    runStrings: list[str],
) -> list[_Node]:
    """The folders found one level down when the names depend on each folder's setting or run."""
    found: list[_Node] = []
    for (perm, run, path), names in zip(nodes, listings):
        if names is None:
            continue
        candidates = _candidates(
            level, perm if level.usesParams else -1, run if level.usesRun else -1, params, count, runStrings
        )
        present = set(names)
        for n, pairs in candidates.items():
            if not n or n in present:
                for p, r in pairs:
                    found.append((p if p >= 0 else perm, r if r >= 0 else run, path + "/" + n if n else path))
    return found


def _offsets(
    candidates: dict[str, list[tuple[int, int]]], count: int
) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Candidates as index offsets: one per name, plus the rare names that stand for several pairs."""
    first: dict[str, int] = {}
    extra: dict[str, list[int]] = {}
    for name, pairs in candidates.items():
        values = [max(r, 0) * count + max(p, 0) for p, r in pairs]
        first[name] = values[0]
        if len(values) > 1:
            extra[name] = values[1:]
    return first, extra


def _candidates(
    level: Level, perm: int, run: int, params: list[str], count: int, runStrings: list[str]
) -> dict[str, list[tuple[int, int]]]:
    """Name at this level -> the (perm, run) pairs it stands for (-1: not read here), given what is fixed."""
    perms = range(count) if level.usesParams and perm < 0 else [perm]
    runList = range(len(runStrings)) if level.usesRun and run < 0 else [run]
    if level.tokens == (PARAMS,) and len(perms) == count:  # the common levels, without formatting
        names: Iterable[str] = params
    elif level.tokens == (RUN,) and len(runList) == len(runStrings):
        names = runStrings
    else:
        fmt = level.formatString()
        names = (
            fmt.format(params[p] if p >= 0 else "", runStrings[r] if r >= 0 else "") for p in perms for r in runList
        )
    pairs = [(p, r) for p in perms for r in runList]
    out: dict[str, list[tuple[int, int]]] = {}
    for name, pair in zip(names, pairs):
        same = out.get(name)
        if same is None:
            out[name] = [pair]
        else:
            same.append(pair)
    return out


def _listNames(path: str) -> list[str] | None:
    """The names in folder ``path``; None when it is absent; ResultsUnreadable when it cannot be read."""
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise unreadable(path, e) from None


class ResultsUnreadable(PyExpUtilsError):
    """A results folder exists but cannot be listed: whether its runs are done cannot be known."""


def unreadable(path: str, e: OSError) -> ResultsUnreadable:
    return ResultsUnreadable(f"{path}: cannot read this results folder ({e.strerror}): fix its permissions; "
                             "whether its runs are done cannot be known")  # fmt: skip


def _exists(path: str) -> bool:
    """One ``stat``: whether ``path`` exists (a listing is left to the walk, which says why it cannot)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def _hasAll(folder: str, required: list[str]) -> bool:
    """Whether every file in ``required`` exists in ``folder``: one stat for one file, else one listing."""
    if len(required) == 1:
        return os.path.exists(folder + "/" + required[0])
    names = _listNames(folder)
    return names is not None and all(f in names for f in required)


class Pace:
    """How one walk lists folders: one by one, or with ``workers`` threads once listings are found to wait
    (decided once, by the first :data:`PROBE` listings of a call of 64 or more). A context manager: closing
    it stops its threads."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.threaded: bool | None = None if workers > 1 else False
        self._pool: ThreadPoolExecutor | None = None

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pyexputils-list")
        return self._pool

    def __enter__(self) -> "Pace":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _map(fn: Callable[[T], R], items: Sequence[T], pace: Pace) -> list[R]:
    """:func:`_stream`, all at once."""
    return list(_stream(fn, items, pace))


def _stream(fn: Callable[[T], R], items: Sequence[T], pace: Pace) -> Iterator[R]:
    """``fn`` over ``items``, in order, as they are used. Until ``pace`` knows, the first :data:`PROBE` one by
    one: when they took over :data:`SLOW_LISTING_S` each (they wait on the disk or the network, and waits
    overlap), this and every later call of the walk use ``pace``'s threads, :data:`BATCH` items a thread at a
    time and at most :data:`AHEAD` items ahead of their use; else one by one (from a warm cache threads only
    contend for the interpreter)."""
    if pace.threaded is False or len(items) < 64:
        yield from map(fn, items)
        return
    start = 0
    if pace.threaded is None:
        began = time.perf_counter()
        head = [fn(x) for x in items[:PROBE]]
        pace.threaded = time.perf_counter() - began > SLOW_LISTING_S * PROBE
        yield from head
        start = PROBE
        if not pace.threaded:
            yield from map(fn, items[start:])
            return

    def work(batch: Sequence[T]) -> list[R]:
        return [fn(x) for x in batch]

    pool = pace.pool()
    batches = (items[k : k + BATCH] for k in range(start, len(items), BATCH))
    pending: deque[Future[list[R]]] = deque(pool.submit(work, b) for b in itertools.islice(batches, AHEAD // BATCH))
    try:
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(work, b) for b in itertools.islice(batches, 1))
            yield from done
    finally:
        for future in pending:  # the walk stopped early (an error): the rest is not needed
            future.cancel()
