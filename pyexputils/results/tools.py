"""The seed's helpers over results: filter, split, slice, find and pick the best setting.

Only ``getBest`` reads data; the others look at ``params`` alone. A parameter is named by its key or a
dotted path into nested parameters (``optimizer.alpha``, ``layers.[0].units``).
"""
from __future__ import annotations

import difflib
import functools
import sys
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pyexputils.errors import PyExpUtilsError
from pyexputils.results.results import DuckResult, ResultList

_MISSING: Any = object()  # getParam: no default given
_ABSENT: Any = object()  # a default that no parameter value can be


def getParam(params: dict[str, Any], name: str, default: Any = _MISSING) -> Any:
    """``params[name]``, following dots into nested dicts and ``[i]`` into lists; ``default`` if absent."""
    if name in params:
        return params[name]
    node: Any = params
    for part in name.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            i = int(part[1:-1])
            if i >= len(node):
                return _absent(name, default)
            node = node[i]
        else:
            return _absent(name, default)
    return node


def _absent(name: str, default: Any) -> Any:
    if default is _MISSING:
        raise KeyError(name)
    return default


class ParameterError(PyExpUtilsError, KeyError):
    """A parameter name that no result has; the message lists the closest names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def parameterNames(params: dict[str, Any]) -> list[str]:
    """Every name ``getParam`` accepts for ``params``: keys and dotted paths (``layers.[0].units``)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                out.append(prefix + k)
                walk(v, f"{prefix}{k}.")
        elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            for i, v in enumerate(node):
                out.append(f"{prefix}[{i}]")
                walk(v, f"{prefix}[{i}].")

    walk(params, "")
    return out


def checkParameters(results: Sequence[DuckResult], *names: str) -> None:
    """Raise ``ParameterError`` for a name that no result in ``results`` has (none when there are no results)."""
    if not results:
        return
    for name in names:
        if any(getParam(r.params, name, _ABSENT) is not _ABSENT for r in results):
            continue
        known = sorted({n for r in results for n in parameterNames(r.params)})
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ParameterError(
            f"no result has a parameter {name!r}{hint} (parameters: {', '.join(known) or 'none'})"
        )


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def splitOverParameter(results: Iterable[DuckResult], param: str) -> dict[Any, list[DuckResult]]:
    """Bins of results by the value of ``param`` (list values become tuples); results without it are left out.

    Raises ``ParameterError`` (with the closest names) when no result has ``param``.
    """
    items = list(results)
    checkParameters(items, param)
    parts: dict[Any, list[DuckResult]] = {}
    for r in items:
        value = getParam(r.params, param, _ABSENT)
        if value is not _ABSENT:
            parts.setdefault(_hashable(value), []).append(r)
    return parts


def _kept(params: dict[str, Any], skip: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in _flat(params).items() if not any(k == s or k.startswith(s + ".") for s in skip)}


def find(stream: Iterable[DuckResult], other: DuckResult, ignore: Sequence[str] = ()) -> DuckResult | None:
    """The first result other than ``other`` itself whose parameters equal ``other``'s, apart from ``ignore``.

    ``ignore`` names parameters (and everything below them); a name no result has raises ``ParameterError``.
    """
    items = list(stream)
    checkParameters(items, *ignore)
    target = _kept(other.params, ignore)
    return next((r for r in items if r is not other and _kept(r.params, ignore) == target), None)


def sliceOverParameter(
    results: Iterable[DuckResult], slicer: DuckResult, param: str
) -> dict[Any, list[DuckResult]]:
    """For each value of ``param``: the results equal to ``slicer`` on every other parameter (maybe ``[]``)."""
    parts = splitOverParameter(results, param)
    target = _kept(slicer.params, [param])
    return {value: [r for r in group if _kept(r.params, [param]) == target] for value, group in parts.items()}


def _filtered(results: Iterable[DuckResult], names: Sequence[str], keep: Callable[[DuckResult], bool]) -> ResultList[Any]:
    items = list(results)
    checkParameters(items, *names)
    return ResultList([r for r in items if keep(r)])


def whereParameterEquals(results: Iterable[DuckResult], param: str, value: Any) -> ResultList[Any]:
    """The results whose ``param`` equals ``value``; a result without ``param`` matches."""
    return _filtered(results, [param], lambda r: bool(getParam(r.params, param, value) == value))


def whereParameterGreaterEq(results: Iterable[DuckResult], param: str, value: Any) -> ResultList[Any]:
    """The results whose ``param`` is >= ``value``; a result without ``param`` matches."""
    return _filtered(results, [param], lambda r: bool(getParam(r.params, param, value) >= value))


def whereParameterLesserEq(results: Iterable[DuckResult], param: str, value: Any) -> ResultList[Any]:
    """The results whose ``param`` is <= ``value``; a result without ``param`` matches."""
    return _filtered(results, [param], lambda r: bool(getParam(r.params, param, value) <= value))


def whereParametersEqual(results: Iterable[DuckResult], d: dict[str, Any]) -> ResultList[Any]:
    """The results whose parameters equal every item of ``d``; parameters a result lacks match."""
    items = list(_flat(d).items())
    return _filtered(results, [k for k, _ in items], lambda r: all(getParam(r.params, k, v) == v for k, v in items))


def where(results: Iterable[DuckResult], predicate: Callable[[DuckResult], bool]) -> ResultList[Any]:
    """The results for which ``predicate`` holds."""
    return ResultList([r for r in results if predicate(r)])


def score(result: DuckResult, steps: int | None = None, percent: float = 1.0) -> float:
    """The mean over runs, then over the last ``steps`` (default: all) × ``percent`` of the curve; NaN if unread."""
    curve = result.mean()
    if curve is None:
        return float("nan")
    curve = np.atleast_1d(curve)
    n = max(1, int((len(curve) if steps is None else steps) * percent))
    with np.errstate(all="ignore"):
        return float(np.nanmean(curve[-n:]) if np.issubdtype(curve.dtype, np.floating) else np.mean(curve[-n:]))


def getBest(
    results: Iterable[DuckResult],
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Callable[[float, float], bool] = lambda a, b: a < b,
) -> DuckResult | None:
    """The best setting: by default the smallest ``score`` (mean over its runs, then over the curve's tail).

    ``steps=n`` uses the last n steps, ``percent=p`` the last fraction p; ``comparator(a, b)`` is True
    when a beats b. A setting with no runs found is never returned: how many had none is said on stderr.
    A setting whose score is NaN wins only over nothing. Reads every result; ``best.runs()`` tells how
    many runs the winner has. None when no setting has a run.
    """
    best: DuckResult | None = None
    bestScore = float("nan")
    total = empty = 0
    for r in results:
        total += 1
        if r.runs() == 0:
            empty += 1
            continue
        s = score(r, steps, percent)
        if best is None or (not np.isnan(s) and (np.isnan(bestScore) or comparator(s, bestScore))):
            best, bestScore = r, s
    if empty:
        said = (f"none of the {total} settings has a run" if empty == total
                else f"{empty} of {total} settings have no runs and were left out")  # fmt: skip
        print(f"pyexputils: getBest: {said}", file=sys.stderr)
    return best


def rankSettings(
    results: Iterable[DuckResult],
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Callable[[float, float], bool] = lambda a, b: a < b,
) -> list[tuple[float, int, DuckResult]]:
    """(score, runs, result) of every setting, best first by ``comparator``; unread settings last."""
    scored = [(score(r, steps, percent), r.runs(), r) for r in results]
    good = [t for t in scored if not np.isnan(t[0])]

    def order(a: tuple[float, int, DuckResult], b: tuple[float, int, DuckResult]) -> int:
        return -1 if comparator(a[0], b[0]) else 1 if comparator(b[0], a[0]) else 0

    return sorted(good, key=functools.cmp_to_key(order)) + [t for t in scored if np.isnan(t[0])]
