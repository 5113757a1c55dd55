"""The seed's helpers over results: filter, split, slice, find and pick the best setting.

Only ``getBest`` reads data; the others look at ``params`` alone. A parameter is named by its key or a
dotted path into nested parameters (``optimizer.alpha``, ``layers.[0].units``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from pyexputils.results.results import DuckResult

_MISSING: Any = object()


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
    """Bins of results by the value of ``param`` (list values become tuples); results without it are left out."""
    parts: dict[Any, list[DuckResult]] = {}
    for r in results:
        value = getParam(r.params, param, _MISSING)
        if value is not _MISSING:
            parts.setdefault(_hashable(value), []).append(r)
    return parts


def find(stream: Iterable[DuckResult], other: DuckResult, ignore: Sequence[str] = ()) -> DuckResult | None:
    """The first result whose parameters equal ``other``'s, apart from those in ``ignore`` (and below them)."""
    skip = tuple(ignore)

    def kept(params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in _flat(params).items() if not any(k == s or k.startswith(s + ".") for s in skip)}

    target = kept(other.params)
    for res in stream:
        if kept(res.params) == target:
            return res
    return None


def sliceOverParameter(results: Iterable[DuckResult], slicer: DuckResult, param: str) -> dict[Any, DuckResult | None]:
    """For each value of ``param``: the result matching ``slicer`` on every other parameter."""
    parts = splitOverParameter(results, param)
    return {value: find(group, slicer, ignore=[param]) for value, group in parts.items()}


def whereParameterEquals(results: Iterable[DuckResult], param: str, value: Any) -> Iterator[DuckResult]:
    """The results whose ``param`` equals ``value``; a result without ``param`` matches."""
    return filter(lambda r: getParam(r.params, param, value) == value, results)


def whereParameterGreaterEq(results: Iterable[DuckResult], param: str, value: Any) -> Iterator[DuckResult]:
    """The results whose ``param`` is >= ``value``; a result without ``param`` matches."""
    return filter(lambda r: getParam(r.params, param, value) >= value, results)


def whereParameterLesserEq(results: Iterable[DuckResult], param: str, value: Any) -> Iterator[DuckResult]:
    """The results whose ``param`` is <= ``value``; a result without ``param`` matches."""
    return filter(lambda r: getParam(r.params, param, value) <= value, results)


def whereParametersEqual(results: Iterable[DuckResult], d: dict[str, Any]) -> Iterator[DuckResult]:
    """The results whose parameters equal every item of ``d``; parameters a result lacks match."""
    items = list(_flat(d).items())
    return filter(lambda r: all(getParam(r.params, k, v) == v for k, v in items), results)


def where(results: Iterable[DuckResult], predicate: Callable[[DuckResult], bool]) -> Iterator[DuckResult]:
    """The results for which ``predicate`` holds."""
    return filter(predicate, results)


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
    when a beats b. Settings that could not be read (NaN) never win over one that could. Reads every
    result; ``best.runs()`` tells how many runs the winner has. None for no results.
    """
    best: DuckResult | None = None
    bestScore = float("nan")
    for r in results:
        s = score(r, steps, percent)
        if best is None or (not np.isnan(s) and (np.isnan(bestScore) or comparator(s, bestScore))):
            best, bestScore = r, s
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
