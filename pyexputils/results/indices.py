"""Which indices exist, and which are not done: one directory listing per folder, not one stat per index.

A run is *done* when its save folder exists or, when ``require`` (config or argument) names files, when
all of them exist in it. ``listMissingResults`` walks the save path level by level from its fixed root:
it lists each existing folder once and reads the names it finds: a level that can hold few names compares
them in bulk against every name it could hold; a level that can hold many (every setting's ``{params}``)
parses the names found back into settings and runs, so that memory does not grow with the sweep (a byte an
index for the answer, plus the folders being listed). File-system calls: one listing per existing folder
that holds save folders (a folder that is absent is never visited), plus, with ``require``, one check per
existing save folder (a ``stat`` for one required file, a listing for several): that last part cannot be
avoided, since only the save folder knows what is inside it. A setting folder unchanged since an earlier
walk is known from one ``stat`` instead of a listing (:mod:`pyexputils.results.listings`).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import numpy.typing as npt

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription
from pyexputils.results.listings import HASHES, ListingCache, cacheName, signature, usable
from pyexputils.results.paths import PARAMS, RUN, Level, PathPlan, listResultsPaths, planSavePath, projectBase
from pyexputils.runner.statedir import StateDir

T = TypeVar("T")
R = TypeVar("R")

CHUNK = 4096  # folders (or names of one big folder) handled at once
PARSE_ABOVE = CHUNK  # a level that can hold more names than this parses the names found instead of making all
WORKERS = 16  # threads that list folders at once when listings wait (on the disk or the network): waits overlap
PROBE = 32  # folders listed one by one first, to tell a listing that waits from one served by the cache
SLOW_LISTING_S = 100e-6  # a listing slower than this (the median of a probe) waits on something: the rest go to threads
BATCH = 16  # listings a thread takes at a time
AHEAD = CHUNK  # listings done or under way before the walk uses them: bounds the names held at once
_Node = tuple[int, int, str]  # a node of the walk: (permutation or -1, run or -1, folder path)
_Candidates = dict[str, list[tuple[int, int]]]  # name at a level -> the (perm, run) pairs it stands for
_KNOWN: list[str] = []  # in place of a listing: the folder is known unchanged (ListingCache)


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
    cache: bool | str = True,
) -> list[int]:
    """The indices (of ``runs`` runs) whose run is not done, in increasing order.

    ``require`` defaults to the config's; ``base`` is prepended to save paths; ``cache``: keep what each
    setting folder held, to know it again from a ``stat`` while it is unchanged (:mod:`pyexputils.results.listings`;
    True: in the state folder of the results root, a path: in that folder, False: list every folder); up to ``workers`` threads list
    folders at once once listings are seen to wait on the disk or the network (from a cold cache, the 10^5
    setting folders of 10^6 runs took 4-9 s on this machine's disk instead of 9-30 s one at a time), while
    from a warm cache the walk stays on one thread (threads would only contend for the interpreter). 1: no
    threads.
    """
    mask = doneMask(exp, runs, require=require, base=base, workers=workers, cache=cache)
    return np.flatnonzero(~mask).tolist()  # type: ignore[no-any-return]


def doneMask(
    exp: ExperimentDescription,
    runs: int = 1,
    *,
    require: Sequence[str] | None = None,
    base: str = "",
    workers: int = WORKERS,
    cache: bool | str = True,
) -> npt.NDArray[np.bool_]:
    """A boolean per index ``0 … runs·P − 1``: True where the run is done (arguments as :func:`listMissingResults`)."""
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
    fields = exp.paramsFields() if plan is not None and plan.usesParams else None
    params: list[str] | None = None
    if plan is not None and plan.usesParams:
        if fields is not None:
            slash = any("/" in key or any("/" in text for text in values) for key, values, _ in fields)
        else:  # values that are not scalars: every setting's text, made once
            params = exp.paramsStrings()
            slash = any("/" in text for text in params)
        if slash:  # a value with "/" adds folders to {params}: check one by one
            plan = None
    if plan is None:
        paths = [os.path.join(base, p) if base else p for p in listResultsPaths(exp, runs)]
        for i, path in enumerate(paths):
            mask[i] = os.path.exists(path) and all(os.path.exists(os.path.join(path, f)) for f in required)
        return mask
    with Pace(workers) as pace:
        walk = _Walk(exp, plan, runs, fields, params, pace)
        listings = _listingCache(exp, walk, base, cache, fields, params) if not required else None
        if listings is None:
            walk.mark(mask, required)
            return mask
        try:
            listings.begin(plan.root)
            walk.mark(mask, required, listings)
            listings.save(mask)
        finally:
            listings.close()
    return mask


def _listingCache(
    exp: ExperimentDescription,
    walk: "_Walk",
    base: str,
    cache: bool | str,
    fields: list[tuple[str, dict[str, int], int]] | None,
    params: list[str] | None,
) -> ListingCache | None:
    """The walk's cache of setting folders, when asked for and when its last level lies in setting folders;
    its key names all that maps indices to folders (``fields`` of ``{params}``, or every setting's text)."""
    plan = walk.plan
    if cache is False or not walk.settingFolders or not usable(plan.root):
        return None
    levels = repr([level.tokens for level in plan.levels])
    name = cacheName(plan.root, levels)
    if isinstance(cache, str):
        path = os.path.join(cache, name)
    else:
        path = StateDir(os.path.join(base, exp.config.results_root)).listing(name)
    settings: object = None
    if fields is not None:
        settings = fields
    elif plan.usesParams:  # values that are not scalars: every setting's text
        texts = params if params is not None else exp.paramsStrings()
        settings = hashlib.sha1("\0".join(texts).encode("utf-8", "surrogateescape")).hexdigest()
    what = json.dumps([HASHES, os.path.abspath(plan.root), levels, walk.count, walk.runs, settings])
    return ListingCache.open(path, hashlib.sha1(what.encode("utf-8", "surrogateescape")).hexdigest(), walk.count, walk.runs)


def rangesText(indices: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> str:
    """Sorted, distinct indices (or a mask: the indices where it is True) as ranges (``0-99,140``), costing
    the text and 16 bytes a range, not an object an index (a mask: a byte an index)."""
    if indices.dtype == np.bool_:
        edges = np.diff(indices.view(np.int8), prepend=np.int8(0), append=np.int8(0))  # +1 where a range starts, -1 after it ends
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1) - 1
        del edges
    else:
        if not len(indices):
            return ""
        cut = np.flatnonzero(np.diff(indices) != 1)
        starts = np.concatenate([indices[:1], indices[cut + 1]])
        ends = np.concatenate([indices[cut], indices[-1:]])
    parts = []
    for k in range(0, len(starts), CHUNK):  # the text of a chunk of ranges at a time
        a, b = starts[k : k + CHUNK].tolist(), ends[k : k + CHUNK].tolist()
        parts.append(",".join(str(x) if x == y else f"{x}-{y}" for x, y in zip(a, b)))
    return ",".join(parts)


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


class _Walk:
    """One walk of a save path's levels: folders flow level by level as they are found, a bounded number at
    a time, so memory holds the answer and the folders under way, not every setting's name or folder."""

    def __init__(
        self,
        exp: ExperimentDescription,
        plan: PathPlan,
        runs: int,
        fields: list[tuple[str, dict[str, int], int]] | None,
        params: list[str] | None,
        pace: "Pace",
    ) -> None:
        self.exp, self.plan, self.runs, self.pace = exp, plan, runs, pace
        self.count = exp.numPermutations()
        self._params = params
        self.parsers: list[_Parser | None] = []  # per shared level that can hold many names: reads them back
        self.candidates: list[_Candidates | None] = []  # per other shared level: every name it can hold
        fixedP = fixedR = False  # whether the folders of a level already know their setting / run
        self.settingFolders = False  # whether the last level's folders are one per setting (any run): cacheable
        for depth, level in enumerate(plan.levels):
            if depth == len(plan.levels) - 1:
                self.settingFolders = fixedP and not fixedR
            shared = not ((level.usesParams and fixedP) or (level.usesRun and fixedR))
            size = (self.count if level.usesParams else 1) * (runs if level.usesRun else 1)
            parser = _Parser.of(level, fields, runs) if shared and size > PARSE_ABOVE else None
            self.parsers.append(parser)
            self.candidates.append(self._candidates(level, -1, -1) if shared and parser is None else None)
            fixedP, fixedR = fixedP or level.usesParams, fixedR or level.usesRun
        self.settingFolders = self.settingFolders and self.parsers[-1] is None

    def mark(self, mask: npt.NDArray[np.bool_], required: list[str], listings: ListingCache | None = None) -> None:
        """Set ``mask`` True at every index whose save folder exists (and holds ``required``); with
        ``listings`` (only when the last level's folders are setting folders), a setting folder it knows
        unchanged is not listed."""
        root: _Node = (-1, -1, self.plan.root)
        last = len(self.plan.levels) - 1
        folders: Iterator[_Node] = iter([root])
        for depth in range(last):
            folders = self._children(depth, folders)
        if required:
            saves = self._children(last, folders)
            while batch := list(itertools.islice(saves, CHUNK)):
                ok = _map(lambda node: _hasAll(node[2], required), batch, self.pace)
                mask[[self._index(p, r) for (p, r, _), good in zip(batch, ok) if good]] = True
            return
        candidates = self.candidates[last]
        offsets = _offsets(candidates, self.count) if candidates is not None else None
        listed = self._listed(last, folders) if listings is None else self._unlessKnown(folders, listings, mask)
        for chunk in _batches(listed):
            if candidates is not None and offsets is not None:  # the hot loop: a bulk lookup
                mask[_lastLevel(chunk, offsets, "" in candidates, self.count)] = True
            else:
                mask[[self._index(p, r) for p, r, _ in self._found(last, chunk)]] = True

    def _index(self, perm: int, run: int) -> int:
        return max(run, 0) * self.count + max(perm, 0)

    def _children(self, depth: int, folders: Iterator[_Node]) -> Iterator[_Node]:
        """The folders one level down from ``folders`` (at ``depth``) that some setting and run would have."""
        for chunk in _batches(self._listed(depth, folders)):
            yield from self._found(depth, chunk)

    def _listed(self, depth: int, folders: Iterator[_Node]) -> Iterator[tuple[_Node, list[str]]]:
        """Each existing folder of ``folders`` with the names in it: a folder that can hold many names (one
        with every setting's) in parts of :data:`CHUNK` names as it is read, others whole, with threads."""
        if self.parsers[depth] is not None:
            for node in folders:
                for names in _chunked(_iterNames(node[2]), CHUNK):
                    yield node, names
            return
        for node, listing in _stream(lambda node: (node, _listNames(node[2])), folders, self.pace):
            if listing is not None:
                yield node, listing

    def _unlessKnown(self, folders: Iterator[_Node], listings: ListingCache, mask: npt.NDArray[np.bool_]) -> Iterator[tuple[_Node, list[str]]]:  # fmt: skip
        """Each existing setting folder of ``folders`` with the names in it, but for those ``listings`` knows
        unchanged: their indices are set in ``mask`` as they were. Each folder's signature is taken before
        it is listed, so what the listing saw is at least as new as the signature."""

        def look(node: _Node) -> tuple[_Node, int, list[str] | None]:
            try:
                st = os.stat(node[2])
            except (FileNotFoundError, NotADirectoryError):
                return node, 0, None
            except OSError as e:
                raise unreadable(node[2], e) from None
            sig = signature(st)
            if listings.known(node[0], sig):
                return node, sig, _KNOWN
            return node, sig if listings.settled(st) else 0, _listNames(node[2])

        known: list[int] = []
        for node, sig, names in _stream(look, folders, self.pace):
            if names is None:
                continue  # gone since its parent was listed: forgotten
            listings.record(node[0], sig)
            if names is not _KNOWN:
                yield node, names
                continue
            known.append(node[0])
            if len(known) >= CHUNK:
                listings.fill(mask, known)
                known = []
        listings.fill(mask, known)

    def _found(self, depth: int, listed: list[tuple[_Node, list[str]]]) -> list[_Node]:
        """The folders in ``listed`` (at level ``depth``) that some setting and run would have."""
        level = self.plan.levels[depth]
        parser, candidates = self.parsers[depth], self.candidates[depth]
        usesP, usesR = level.usesParams, level.usesRun
        if parser is not None:
            found: list[_Node] = []
            for (perm, run, path), names in listed:
                prefix = path + "/"
                for name in names:
                    pr = parser.read(name)
                    if pr is not None:
                        found.append((pr[0] if usesP else perm, pr[1] if usesR else run, prefix + name))
            return found
        if candidates is not None:
            return _sharedLevel(listed, candidates, level)
        return _ownLevel(listed, level, self._candidates)

    def _candidates(self, level: Level, perm: int, run: int) -> _Candidates:
        """Name at this level -> the (perm, run) pairs it stands for (-1: not read here), given what is fixed."""
        every = level.usesParams and perm < 0
        if every and self._params is None:  # every setting's text: made in bulk, once
            self._params = self.exp.paramsStrings()
        params = self._params
        perms = range(self.count) if every else [perm]
        runList = range(self.runs) if level.usesRun and run < 0 else [run]
        fmt = level.formatString()
        out: _Candidates = {}
        for p in perms:
            text = "" if p < 0 or not level.usesParams else params[p] if params is not None else self.exp.paramsString(p)
            for r in runList:
                name = fmt.format(text, str(r) if r >= 0 else "")
                same = out.get(name)
                if same is None:
                    out[name] = [(p, r)]
                else:
                    same.append((p, r))
        return out


class _Parser:
    """Reads a level's names back into (perm, run), for a level that can hold too many names to make them
    all: ``{params}`` as its ``key-value`` fields (each value a run of characters without ``_``, looked up),
    ``{run}`` as digits."""

    def __init__(self, regex: re.Pattern[str], fields: list[tuple[dict[str, int], int]] | None, paramsAt: int, runAt: int, runs: int) -> None:  # fmt: skip
        self.regex, self.fields, self.paramsAt, self.runAt, self.runs = regex, fields, paramsAt, runAt, runs

    @classmethod
    def of(cls, level: Level, fields: list[tuple[str, dict[str, int], int]] | None, runs: int) -> "_Parser | None":
        """The parser of ``level``; None when its names could not be read back unambiguously (a value with
        ``_``, values that are not scalars, ``{params}`` or ``{run}`` twice or side by side)."""
        tokens = level.tokens
        if tokens.count(PARAMS) > 1 or tokens.count(RUN) > 1:
            return None
        if any({a, b} == {PARAMS, RUN} for a, b in zip(tokens, tokens[1:])):
            return None
        parts: list[str] = []
        group = 1
        paramsAt = runAt = 0
        for token in tokens:
            if token == PARAMS:
                if fields is None or any("_" in text for _, values, _ in fields for text in values):
                    return None
                parts.append("_".join(re.escape(key) + "-([^_/]*)" for key, _, _ in fields))
                paramsAt, group = group, group + len(fields)
            elif token == RUN:
                parts.append("(0|[1-9][0-9]*)")
                runAt, group = group, group + 1
            else:
                parts.append(re.escape(token))
        lookups = [(values, stride) for _, values, stride in fields] if fields is not None and paramsAt else None
        return cls(re.compile("".join(parts)), lookups, paramsAt, runAt, runs)

    def read(self, name: str) -> tuple[int, int] | None:
        """(perm, run) of the folder ``name`` (-1 for what the level does not hold); None when no setting
        and run would have it."""
        m = self.regex.fullmatch(name)
        if m is None:
            return None
        perm = run = -1
        if self.fields is not None:
            perm = 0
            for (values, stride), text in zip(self.fields, m.groups()[self.paramsAt - 1 :]):
                digit = values.get(text)
                if digit is None:
                    return None
                perm += digit * stride
        if self.runAt:
            run = int(m.group(self.runAt))
            if run >= self.runs:
                return None
        return perm, run


def _lastLevel(
    listed: list[tuple[_Node, list[str]]],
    offsets: tuple[dict[str, int], dict[str, list[int]]],
    empty: bool,
    count: int,
) -> npt.NDArray[np.int64]:
    """The hot loop: indices of the save folders found in each listed folder of the last level (``offsets``
    of its candidates; ``empty``: the name "" is one, the folder itself).

    Names are looked up in C (``map`` over ``dict.get``); the per-folder offset is added by NumPy.
    """
    get = offsets[0].get
    extra = offsets[1]
    found: list[int] = []
    bases: list[int] = []
    sizes: list[int] = []
    more: list[int] = []
    for (perm, run, _), names in listed:
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


def _sharedLevel(listed: list[tuple[_Node, list[str]]], candidates: _Candidates, level: Level) -> list[_Node]:
    """The folders found one level down when every folder of this level can hold the same names."""
    usesP, usesR = level.usesParams, level.usesRun
    single = {n: pairs[0] for n, pairs in candidates.items() if len(pairs) == 1 and n}
    other = {n: pairs for n, pairs in candidates.items() if len(pairs) > 1 or not n}
    found: list[_Node] = []
    add = found.append
    for (perm, run, path), names in listed:
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
    listed: list[tuple[_Node, list[str]]], level: Level, candidatesOf: Callable[[Level, int, int], _Candidates]
) -> list[_Node]:
    """The folders found one level down when the names depend on each folder's setting or run."""
    found: list[_Node] = []
    for (perm, run, path), names in listed:
        candidates = candidatesOf(level, perm if level.usesParams else -1, run if level.usesRun else -1)
        present = set(names)
        for n, pairs in candidates.items():
            if not n or n in present:
                for p, r in pairs:
                    found.append((p if p >= 0 else perm, r if r >= 0 else run, path + "/" + n if n else path))
    return found


def _offsets(candidates: _Candidates, count: int) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Candidates as index offsets: one per name, plus the rare names that stand for several pairs."""
    first: dict[str, int] = {}
    extra: dict[str, list[int]] = {}
    for name, pairs in candidates.items():
        values = [max(r, 0) * count + max(p, 0) for p, r in pairs]
        first[name] = values[0]
        if len(values) > 1:
            extra[name] = values[1:]
    return first, extra


def _batches(listed: Iterator[tuple[_Node, list[str]]]) -> Iterator[list[tuple[_Node, list[str]]]]:
    """``listed`` in lists of about :data:`CHUNK` folders or names, whichever comes first."""
    batch: list[tuple[_Node, list[str]]] = []
    names = 0
    for item in listed:
        batch.append(item)
        names += len(item[1])
        if len(batch) >= CHUNK or names >= CHUNK:
            yield batch
            batch, names = [], 0
    if batch:
        yield batch


def _chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _iterNames(path: str) -> Iterator[str]:
    """The names in folder ``path`` as they are read (none when it is absent), for a folder that may hold
    millions; ResultsUnreadable when it cannot be read."""
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                yield entry.name
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as e:
        raise unreadable(path, e) from None


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
    (``threaded``: None until a probe's worth was listed). A context manager: closing it stops its threads."""

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


def _map(fn: Callable[[T], R], items: Iterable[T], pace: Pace) -> list[R]:
    """:func:`_stream`, all at once."""
    return list(_stream(fn, items, pace))


def _stream(fn: Callable[[T], R], items: Iterable[T], pace: Pace) -> Iterator[R]:
    """``fn`` over ``items``, in order, as they are used (``items`` is advanced by this thread only): one by
    one, :data:`PROBE` at a time, until in a probe's worth the median took over :data:`SLOW_LISTING_S` (they
    wait on the disk or the network, and waits overlap); from then on, for the rest of the walk, on ``pace``'s
    threads, :data:`BATCH` items a thread at a time and at most :data:`AHEAD` items ahead of their use.
    From a warm cache it stays on this thread: threads would only contend for the interpreter."""
    it = iter(items)
    if pace.workers <= 1:
        yield from map(fn, it)
        return
    clock = time.perf_counter
    while not pace.threaded:
        head: list[R] = []
        took: list[float] = []
        for x in list(itertools.islice(it, PROBE)):  # taken first: making the items is not timed
            began = clock()
            head.append(fn(x))
            took.append(clock() - began)
        if len(head) == PROBE:  # the median: one listing held up (a page fault, a preemption) does not count
            pace.threaded = sorted(took)[PROBE // 2] > SLOW_LISTING_S
        yield from head
        if len(head) < PROBE:
            return

    def work(batch: list[T]) -> list[R]:
        return [fn(x) for x in batch]

    pool = pace.pool()
    batches = _chunked(it, BATCH)
    pending: deque[Future[list[R]]] = deque(pool.submit(work, b) for b in itertools.islice(batches, AHEAD // BATCH))
    try:
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(work, b) for b in itertools.islice(batches, 1))
            yield from done
    finally:
        for future in pending:  # the walk stopped early (an error): the rest is not needed
            future.cancel()
