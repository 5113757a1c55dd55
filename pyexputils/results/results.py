"""Lazy results: one ``Result`` per parameter setting, read from disk at most once.

Runs are grouped by setting. When the save path has ``{run}`` (the default
``results/{name}/{file}/{params}/{run}``), a setting's runs live in separate folders and ``load()``
stacks the runs found on disk along a new first axis: ``(runs, ...)``. Without ``{run}`` a setting has
one file, returned as stored (by convention runs along its first axis when it is 2-D or more).
``mean()``, ``stderr()`` and ``runs()`` reduce over the runs in either case.

A missing or unreadable file never raises: ``load()`` prints one line to stderr naming the file and
returns what could be read (None when nothing could), so plotting code runs on partial results.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar, overload

import numpy as np
import numpy.typing as npt

from pyexputils.models import ExperimentDescription
from pyexputils.results.npy import readNpy
from pyexputils.results.paths import PARAMS, RUN, fillSavePath, projectBase

Array = npt.NDArray[Any]
_UNSET: Any = object()


class _Layout:
    """Where the files of one ``loadResults`` call live; lists each folder at most once (run discovery)."""

    def __init__(self, exp: ExperimentDescription, filename: str, runs: int | None, base: str) -> None:
        self.parts = exp.savePathParts()
        self.grouped = RUN in self.parts
        self.filename = filename
        self.runs = runs
        self.base = projectBase(exp, base)
        self._listings: dict[str, list[str]] = {}

    def file(self, params: str, run: int | str) -> str:
        folder = fillSavePath(self.parts, params, str(run))
        return os.path.join(self.base, folder, self.filename) if self.base else folder + "/" + self.filename

    def runNumbers(self, params: str) -> list[int]:
        """The runs of a setting: ``range(runs)`` when given, else those whose run folder is on disk."""
        if not self.grouped:
            return [0]
        if self.runs is not None:
            return list(range(self.runs))
        text = fillSavePath(self.parts, params, RUN)
        if self.base:
            text = os.path.join(self.base, text)
        i = text.index(RUN)
        start = text.rfind("/", 0, i)
        end = text.find("/", i)
        parent = text[:start] if start > 0 else ("/" if start == 0 else ".")
        component = text[start + 1 : end if end >= 0 else len(text)]
        pieces = [re.escape(t) if t != RUN else "(?P<run>0|[1-9][0-9]*)" for t in re.split(f"({RUN})", component)]
        seen = False
        for k, piece in enumerate(pieces):  # a second {run} in the same name must repeat the first
            if piece.startswith("(?P<run>"):
                pieces[k] = "(?P=run)" if seen else piece
                seen = True
        pattern = re.compile("".join(pieces))
        if parent not in self._listings:
            try:
                self._listings[parent] = os.listdir(parent)
            except OSError:
                self._listings[parent] = []
        found = (pattern.fullmatch(name) for name in self._listings[parent])
        return sorted(int(m.group("run")) for m in found if m is not None)


class Result:
    """All runs of one parameter setting (``idx``) for one result file; see the module docstring.

    ``Result(path, exp, idx)`` (the seed's form) reads the single file ``path``. Subclasses may override
    ``_read(path)`` to read another format, and ``mean``/``stderr`` for other conventions.
    """

    def __init__(
        self,
        path: str,
        exp: ExperimentDescription,
        idx: int,
        *,
        _layout: _Layout | None = None,
        _params: str = "",
    ) -> None:
        self.path = path
        self.exp = exp
        self.idx = idx
        self._layout = _layout
        self._paramsText = _params
        self._params: dict[str, Any] | None = None
        self._paths: list[str] | None = None
        self._runNumbers: list[int] | None = None
        self._data: Any = _UNSET
        self._padded = False

    # --- what is known without reading -----------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The setting's parameters, as ``exp.getPermutation(idx)``."""
        if self._params is None:
            self._params = self.exp.getPermutation(self.idx)
        return self._params

    @property
    def grouped(self) -> bool:
        """True when the runs come from separate ``{run}`` folders (``load()`` stacks them)."""
        return self._layout is not None and self._layout.grouped

    @property
    def paths(self) -> list[str]:
        """The files this result reads: one per run found (or asked for) when grouped, else ``[path]``."""
        if self._paths is None:
            if self._layout is None or not self._layout.grouped:
                self._paths = [self.path]
            else:
                self._runNumbers = self._layout.runNumbers(self._paramsText)
                self._paths = [self._layout.file(self._paramsText, r) for r in self._runNumbers]
        return self._paths

    # --- reading ---------------------------------------------------------------------------------
    def load(self) -> Any:
        """The data, read on the first call only; None (after one line on stderr) if nothing could be read."""
        if self._data is _UNSET:
            self._data = self._loadGrouped() if self.grouped else self._loadOne(self.path)
        return self._data

    def runs(self) -> int:
        """How many runs the loaded data holds (0 when nothing could be read)."""
        data = self.load()
        if data is None:
            return 0
        if self.grouped:
            return len(data)
        return int(data.shape[0]) if getattr(data, "ndim", 0) >= 2 else 1

    def mean(self) -> Any:
        """The mean over runs (a learning curve for 1-D runs); None when nothing could be read."""
        data = self._runsAxis()
        if data is None:
            return None
        if len(data) == 1:
            return data[0]
        return np.nanmean(data, axis=0) if self._padded else data.mean(axis=0)

    def stderr(self) -> Any:
        """The standard error of the mean over runs (NaN with fewer than 2 runs); None when nothing was read."""
        data = self._runsAxis()
        if data is None:
            return None
        n = len(data)
        if n < 2:
            return np.full(np.shape(data[0]), np.nan)
        if self._padded:
            counts = np.sum(~np.isnan(data), axis=0)
            return np.nanstd(data, axis=0, ddof=1) / np.sqrt(counts)
        return data.std(axis=0, ddof=1) / np.sqrt(n)

    def reducer(self, fn: Callable[[Any], Any]) -> "ResultView":
        """A view applying ``fn`` to what ``load``/``mean``/``stderr`` return, sharing this result's cache."""
        return ResultView(self, fn)

    def _read(self, path: str) -> Any:
        """Read one file (override for other formats): ``.npy`` fast, anything else with ``np.load``."""
        if path.endswith(".npy"):
            return readNpy(path)
        return np.load(path, allow_pickle=True)

    # --- internals -------------------------------------------------------------------------------
    def _runsAxis(self) -> Array | None:
        data = self.load()
        if data is None:
            return None
        if self.grouped:
            return data  # type: ignore[no-any-return]
        array = np.asarray(data)
        return array if array.ndim >= 2 else array[None]

    def _pattern(self) -> str:
        """The setting's files with ``{run}`` left in, for messages."""
        return self._layout.file(self._paramsText, "{run}") if self._layout is not None else self.path

    def _loadOne(self, path: str) -> Any:
        try:
            return self._read(path)
        except Exception as e:  # missing, unreadable, damaged: report and go on
            _report(f"cannot load {path}: {_reason(e)}")
            return None

    def _loadGrouped(self) -> Array | None:
        paths = self.paths
        arrays: list[Any] = []
        failed: list[tuple[int, str, Exception]] = []
        numbers = self._runNumbers if self._runNumbers is not None else list(range(len(paths)))
        for run, path in zip(numbers, paths):
            try:
                arrays.append(np.asarray(self._read(path)))
            except Exception as e:
                failed.append((run, path, e))
        if not paths:
            _report(f"cannot load {self._pattern()}: no run of this setting found")
            return None
        if failed:
            bad = [run for run, _, _ in failed]
            _, path, error = failed[0]
            _report(
                f"cannot load {len(failed)} of {len(paths)} runs of {self._pattern()} "
                f"(runs {_ranges(bad)}); first: {path}: {_reason(error)}"
            )
        if not arrays:
            return None
        return self._stack(arrays)

    def _stack(self, arrays: list[Array]) -> Array | None:
        first = arrays[0].shape
        if all(a.shape == first for a in arrays):
            return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
        if any(a.ndim != arrays[0].ndim for a in arrays):
            _report(f"cannot stack the runs of {self._pattern()}: shapes {sorted({a.shape for a in arrays})}")
            return None
        shape = tuple(max(sizes) for sizes in zip(*(a.shape for a in arrays)))
        out = np.full((len(arrays),) + shape, np.nan, dtype=np.result_type(*arrays, np.float32))
        for i, a in enumerate(arrays):
            index: tuple[Any, ...] = (i,) + tuple(slice(0, n) for n in a.shape)
            out[index] = a
        self._padded = True
        return out

    def __repr__(self) -> str:
        return f"<Result {self.path}>"


class ResultView:
    """A window over a ``Result`` applying a reducer; same API, same cache (nothing is read twice)."""

    def __init__(self, result: Result, fn: Callable[[Any], Any]) -> None:
        self._result = result
        self._fn = fn
        self.path = result.path
        self.exp = result.exp
        self.idx = result.idx

    @property
    def params(self) -> dict[str, Any]:
        return self._result.params

    @property
    def paths(self) -> list[str]:
        return self._result.paths

    def load(self) -> Any:
        return self._apply(self._result.load())

    def mean(self) -> Any:
        return self._apply(self._result.mean())

    def stderr(self) -> Any:
        return self._apply(self._result.stderr())

    def runs(self) -> int:
        return self._result.runs()

    def reducer(self, fn: Callable[[Any], Any]) -> "ResultView":
        """A new view applying ``fn`` after this view's reducer."""
        inner = self._fn
        return ResultView(self._result, lambda data: fn(inner(data)))

    def _apply(self, data: Any) -> Any:
        return None if data is None else self._fn(data)

    def __repr__(self) -> str:
        return f"<ResultView {self.path}>"


DuckResult = Result | ResultView


R = TypeVar("R", bound=DuckResult)


class ResultList(Sequence[R], Generic[R]):
    """Results in setting order: a sequence that can be iterated any number of times.

    Items are made on first access and kept, so every pass sees the same ``Result`` objects (and their
    cached loads). ``next(results)`` also works, as with the seed's generator: it walks a cursor of its
    own and never changes what a ``for`` loop sees.
    """

    def __init__(self, items: Iterable[R] = (), *, _count: int = 0, _make: Callable[[int], R] | None = None) -> None:
        self._make = _make
        self._items: list[R | None] = [None] * _count if _make is not None else list(items)
        self._cursor = 0

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, i: int) -> R: ...

    @overload
    def __getitem__(self, i: slice) -> "ResultList[R]": ...

    def __getitem__(self, i: int | slice) -> "R | ResultList[R]":
        if isinstance(i, slice):
            return ResultList([self[k] for k in range(*i.indices(len(self._items)))])
        item = self._items[i]
        if item is None:
            assert self._make is not None
            item = self._items[i] = self._make(i % len(self._items))
        return item

    def __iter__(self) -> Iterator[R]:
        for i in range(len(self._items)):
            yield self[i]

    def __next__(self) -> R:
        if self._cursor >= len(self._items):
            raise StopIteration
        self._cursor += 1
        return self[self._cursor - 1]

    def __repr__(self) -> str:
        return f"<ResultList of {len(self._items)} results>"


def loadResults(
    exp: ExperimentDescription,
    filename: str,
    runs: int | None = None,
    *,
    base: str = "",
    ResultClass: type[Result] = Result,
) -> ResultList[Result]:
    """One ``Result`` per parameter setting, in setting order, as a ``ResultList``; reads nothing.

    The list can be iterated any number of times (and ``next()`` works, as on the seed's generator).
    With ``{run}`` in the save path, ``runs`` fixes how many runs each setting should have (missing ones
    are reported when loading); by default the runs whose folder exists are used.
    """
    layout = _Layout(exp, filename, runs, base)
    strings: list[str] | None = None

    def make(perm: int) -> Result:
        nonlocal strings
        if strings is None:
            strings = exp.paramsStrings() if PARAMS in layout.parts else [""] * exp.numPermutations()
        return ResultClass(layout.file(strings[perm], 0), exp, perm, _layout=layout, _params=strings[perm])

    return ResultList(_count=exp.numPermutations(), _make=make)


def _report(message: str) -> None:
    print(f"pyexputils: {message}", file=sys.stderr)


def _reason(e: Exception) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}".splitlines()[0]


def _ranges(numbers: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``'0-2, 5'``."""
    nums = sorted(numbers)
    out: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(out)
