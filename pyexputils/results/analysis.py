"""What to plot and tabulate, computed from results (NumPy only): curves, means, stderr, sensitivity, summaries.

Every function here is pure over what ``result.load()`` gives: one row per run (``runsMatrix``). Drawing
lives in :mod:`pyexputils.results.plots`, files and data frames in :mod:`pyexputils.results.table`.
Scores follow ``getBest``: the mean over runs of each run's mean over the last ``steps`` × ``percent``
steps of its curve; ``comparator(a, b)`` is True when score a beats b (default: smaller is better).
"""
from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pyexputils.errors import PyExpUtilsError
from pyexputils.results.results import DuckResult
from pyexputils.results.tools import _ABSENT, _flat, checkParameters, getBest, getParam, splitOverParameter

Array = npt.NDArray[np.float64]
Comparator = Callable[[float, float], bool]


def smaller(a: float, b: float) -> bool:
    """The default comparator: a smaller score is better (errors, losses)."""
    return a < b


def larger(a: float, b: float) -> bool:
    """A larger score is better (returns, accuracies)."""
    return a > b


# --- runs and their statistics ----------------------------------------------------------------------------
def runsMatrix(result: DuckResult) -> Array | None:
    """The result's data as one row per run, ``(runs, steps)`` floats; None when nothing could be read.

    A scalar is one run of one step; a 1-D array is one run's curve, or one value per run when the result
    has several runs; more than two dimensions is an error (reduce them with ``result.reducer``).
    """
    data = result.load()
    if data is None:
        return None
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise PyExpUtilsError(f"{result.path}: cannot read as numbers ({e})") from None
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    if arr.ndim == 1:
        return arr[:, None] if result.runs() > 1 and result.runs() == len(arr) else arr[None]
    if arr.ndim == 2:
        return arr
    raise PyExpUtilsError(
        f"{result.path}: one run has shape {arr.shape[1:]}; expected one curve per run "
        f"(reduce it first, e.g. result.reducer(lambda d: d[..., 0]))"
    )


def meanAndStderr(rows: Array) -> tuple[Array, Array]:
    """Mean over runs (axis 0, NaN ignored) and its standard error (NaN where fewer than 2 runs have a value)."""
    rows = np.asarray(rows, dtype=np.float64)
    counts = np.sum(~np.isnan(rows), axis=0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(rows, axis=0)
        std = np.nanstd(rows, axis=0, ddof=1)
    stderr = np.where(counts >= 2, std / np.sqrt(np.maximum(counts, 1)), np.nan)
    return np.asarray(mean, dtype=np.float64), np.asarray(stderr, dtype=np.float64)


def tailLength(length: int, steps: int | None = None, percent: float = 1.0) -> int:
    """How many final steps a score averages: ``steps`` (default: all) × ``percent``, at least 1, at most all."""
    if not 0 < percent <= 1:
        raise PyExpUtilsError(f"percent {percent}: expected a fraction in (0, 1]")
    if steps is not None and steps < 1:
        raise PyExpUtilsError(f"steps {steps}: expected a whole number >= 1")
    return min(length, max(1, int((length if steps is None else steps) * percent)))


def runScores(rows: Array, steps: int | None = None, percent: float = 1.0) -> Array:
    """Each run's mean over the last ``tailLength`` steps of its curve (NaN ignored; NaN if all are)."""
    rows = np.asarray(rows, dtype=np.float64)
    n = tailLength(rows.shape[1], steps, percent)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(rows[:, -n:], axis=1), dtype=np.float64)


def scoreAndStderr(rows: Array, steps: int | None = None, percent: float = 1.0) -> tuple[float, float]:
    """A setting's score (mean over runs of ``runScores``) and its standard error over runs."""
    mean, stderr = meanAndStderr(runScores(rows, steps, percent)[:, None])
    return float(mean[0]), float(stderr[0])


def beats(a: float, b: float, comparator: Comparator) -> bool:
    """True when score ``a`` beats ``b``: a number beats NaN, NaN beats nothing."""
    if math.isnan(a):
        return False
    return math.isnan(b) or comparator(a, b)


# --- names ------------------------------------------------------------------------------------------------
def flatParams(params: Mapping[str, Any]) -> dict[str, Any]:
    """Nested parameters as dotted names: ``{'optimizer.alpha': 0.1, ...}`` (lists of dicts as ``.[i].``)."""
    out: dict[str, Any] = {}
    for k, v in _flat(dict(params)).items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, sub in enumerate(v):
                out.update({f"{k}.[{i}].{kk}": vv for kk, vv in flatParams(sub).items()})
        else:
            out[k] = v
    return out


def settingLabel(params: Mapping[str, Any]) -> str:
    """``alpha=0.4, lambda=0.9``: a setting in one line."""
    return ", ".join(f"{k}={v}" for k, v in flatParams(params).items())


def sweptNames(results: Iterable[DuckResult]) -> list[str]:
    """The parameters that take more than one value among ``results``, in the order first seen."""
    seen: dict[str, set[str]] = {}
    for r in results:
        for k, v in flatParams(r.params).items():
            seen.setdefault(k, set()).add(repr(v))
    return [k for k, values in seen.items() if len(values) > 1]


def sortedValues(values: Sequence[Any]) -> list[Any]:
    """``values`` in increasing order when they are all numbers, else as given."""
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        return sorted(values)
    return list(values)


# --- learning curves --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Curve:
    """A learning curve: the mean over runs and its stderr at each step, for one setting."""

    label: str
    params: dict[str, Any]
    runs: int
    mean: Array
    stderr: Array


def learningCurve(result: DuckResult, label: str | None = None) -> Curve | None:
    """The mean curve of ``result`` over its runs with a stderr band; None when no run could be read."""
    rows = runsMatrix(result)
    if rows is None or len(rows) == 0:
        return None
    mean, stderr = meanAndStderr(rows)
    return Curve(settingLabel(result.params) if label is None else label, dict(result.params), len(rows), mean, stderr)


def bestCurves(
    groups: Mapping[str, Iterable[DuckResult]],
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Comparator = smaller,
) -> dict[str, Curve]:
    """For each experiment (label → results): the curve of its best setting, as ``getBest`` picks it.

    Experiments without any run are left out. Each curve's label is ``'<experiment>: <setting>'``.
    """
    out: dict[str, Curve] = {}
    for name, results in groups.items():
        best = getBest(results, steps, percent, comparator)
        curve = None if best is None else learningCurve(best)
        if curve is not None:
            out[name] = Curve(f"{name}: {curve.label}", curve.params, curve.runs, curve.mean, curve.stderr)
    return out


# --- parameter sensitivity --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sensitivity:
    """For each value of ``param``: the best score over the other parameters, its stderr and its setting."""

    param: str
    values: list[Any]
    scores: list[float]
    stderr: list[float]
    runs: list[int]
    best: list[DuckResult | None] = field(repr=False)


def sensitivity(
    results: Iterable[DuckResult],
    param: str,
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Comparator = smaller,
) -> Sensitivity:
    """At each value of ``param`` (numbers in increasing order): the best setting's score and stderr.

    Settings without runs are left out; a value none of whose settings has a run scores NaN with 0 runs.
    A parameter no result has raises ``ParameterError`` with the closest names.
    """
    parts = splitOverParameter(results, param)
    values = sortedValues(list(parts))
    scores: list[float] = []
    errs: list[float] = []
    runs: list[int] = []
    best: list[DuckResult | None] = []
    for value in values:
        top: tuple[float, float, int, DuckResult | None] = (math.nan, math.nan, 0, None)
        for r in parts[value]:
            rows = runsMatrix(r)
            if rows is None or len(rows) == 0:
                continue
            s, e = scoreAndStderr(rows, steps, percent)
            if top[3] is None or beats(s, top[0], comparator):
                top = (s, e, len(rows), r)
        scores.append(top[0])
        errs.append(top[1])
        runs.append(top[2])
        best.append(top[3])
    return Sensitivity(param, values, scores, errs, runs, best)


def sensitivities(
    groups: Mapping[str, Iterable[DuckResult]],
    params: Sequence[str] | None = None,
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Comparator = smaller,
) -> dict[str, dict[str, Sensitivity]]:
    """``{param: {experiment: Sensitivity}}`` for every parameter (default: every one swept in some experiment).

    An experiment without ``param`` is left out of that parameter; a name no experiment has raises
    ``ParameterError`` with the closest names.
    """
    lists = {name: list(results) for name, results in groups.items()}
    if params is None:
        names: list[str] = []
        for results in lists.values():
            names += [n for n in sweptNames(results) if n not in names]
        params = names
    out: dict[str, dict[str, Sensitivity]] = {}
    for param in params:
        checkParameters([r for results in lists.values() for r in results], param)
        out[param] = {
            name: sensitivity(results, param, steps, percent, comparator)
            for name, results in lists.items()
            if any(getParam(r.params, param, _ABSENT) is not _ABSENT for r in results)
        }
    return out


# --- per-setting summary ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    """One setting: its parameters, runs found, and mean ± stderr over the whole curve and over its last part."""

    experiment: str
    params: dict[str, Any]
    runs: int
    mean: float
    stderr: float
    lastMean: float
    lastStderr: float


def summarize(result: DuckResult, last: float = 0.1, experiment: str = "") -> Summary:
    """The ``Summary`` of one setting; ``last`` is the fraction of the curve the last part covers."""
    rows = runsMatrix(result)
    flat = flatParams(result.params)
    if rows is None or len(rows) == 0:
        return Summary(experiment, flat, 0, math.nan, math.nan, math.nan, math.nan)
    mean, stderr = scoreAndStderr(rows)
    lastMean, lastStderr = scoreAndStderr(rows, percent=last)
    return Summary(experiment, flat, len(rows), mean, stderr, lastMean, lastStderr)


def summaries(groups: Mapping[str, Iterable[DuckResult]], last: float = 0.1) -> list[Summary]:
    """``summarize`` every setting of every experiment (label → results), in order."""
    tailLength(1, None, last)  # checks the fraction once, before reading anything
    return [summarize(r, last, name) for name, results in groups.items() for r in results]


def experimentLabels(exps: Sequence[Any]) -> list[str]:
    """A short distinct label per experiment: its ``agent`` key when those differ, else its file name, else its path."""
    agents = [str(e.description.get("agent", "")) for e in exps]
    if all(agents) and len(set(agents)) == len(agents):
        return agents
    files = [e.getFileName() for e in exps]
    if len(set(files)) == len(files):
        return files
    return [str(e.path or e.getFileName()) for e in exps]
