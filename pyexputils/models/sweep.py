"""Pure sweep math: a nested dict of swept lists <-> permutation numbers <-> parameter dicts.

A ``Sweep`` flattens the sweepable part of a description once into *parameters* (a path and its list
of values, in declaration order). Permutation ``p`` is decoded mixed-radix with the **last** parameter
varying fastest. Nothing is materialised: decoding costs O(number of parameters), and sweeps of up to
2**24 permutations also get two small lookup tables that make a decode a couple of tuple lookups.

Flattening follows the original PyExpUtils: a list is swept, a scalar is fixed, a dict recurses
(``optimizer.alpha``), a list whose first element is a dict is a list of sub-configurations each
flattened on its own (``layers.[0].units``), and a list of lists sweeps over list values.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from pyexputils.errors import ExperimentError

PathPart = str | int
Path = tuple[PathPart, ...]

# both lookup tables stay at or below this many entries
_TABLE_LIMIT = 4096


def pathName(path: Path) -> str:
    """The original's dotted name of a path: ``layers.[0].units``."""
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path)


@dataclass(frozen=True)
class Parameter:
    """One flattened parameter: where it lives and the values it takes (one value: fixed)."""

    path: Path
    values: tuple[Any, ...]
    mutable: bool  # some value is a list or dict: hand out copies

    @property
    def name(self) -> str:
        return pathName(self.path)


class _Slot:
    """A leaf of the output skeleton: take value number ``i`` of the decoded leaves."""

    __slots__ = ("i",)

    def __init__(self, i: int) -> None:
        self.i = i


def _isSweepList(value: Any) -> bool:
    return isinstance(value, list) and not (len(value) > 0 and isinstance(value[0], dict))


def _flatten(node: Any, path: Path, out: list[Parameter], where: str) -> Any:
    """Append the parameters under ``node``; return the skeleton that rebuilds it."""
    if isinstance(node, dict):
        skeleton: dict[Any, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                raise ExperimentError(f"{where}: key {key!r} under {pathName(path) or 'the sweep'} is not a string")
            skeleton[key] = _flatten(value, path + (key,), out, where)
        return skeleton
    if isinstance(node, list) and len(node) > 0 and isinstance(node[0], dict):
        items = []
        for i, sub in enumerate(node):
            if not isinstance(sub, dict):
                raise ExperimentError(
                    f"{where}: {pathName(path + (i,))} must be a dict like the first element of {pathName(path)}"
                )
            items.append(_flatten(sub, path + (i,), out, where))
        return items
    if isinstance(node, list):
        if len(node) == 0:
            raise ExperimentError(f"{where}: {pathName(path)} is an empty list; give at least one value")
        values = tuple(node)
    else:
        values = (node,)
    mutable = any(isinstance(v, (list, dict)) for v in values)
    out.append(Parameter(path, values, mutable))
    return _Slot(len(out) - 1)


def _build(skeleton: Any, leaves: Sequence[Any]) -> Any:
    if isinstance(skeleton, _Slot):
        return leaves[skeleton.i]
    if isinstance(skeleton, dict):
        return {k: _build(v, leaves) for k, v in skeleton.items()}
    return [_build(v, leaves) for v in skeleton]


def _product(params: Sequence[Parameter]) -> list[tuple[Any, ...]]:
    return list(itertools.product(*(p.values for p in params)))


@dataclass
class Sweep:
    """The flattened sweep of a nested dict; see the module docstring for the rules."""

    params: tuple[Parameter, ...]
    skeleton: Any
    count: int
    radices: tuple[int, ...] = field(init=False)
    strides: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.radices = tuple(len(p.values) for p in self.params)
        strides, s = [], 1
        for n in reversed(self.radices):
            strides.append(s)
            s *= n
        self.strides = tuple(reversed(strides))
        self._flat = isinstance(self.skeleton, dict) and all(isinstance(v, _Slot) for v in self.skeleton.values())
        self._keys = tuple(self.skeleton.keys()) if self._flat else ()
        self._mutable = any(p.mutable for p in self.params)
        self._split: tuple[int, list[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
        # two lookup tables (leading and trailing parameters) when both stay small
        cut, loCount = len(self.params), 1
        while cut > 0 and loCount * self.radices[cut - 1] <= _TABLE_LIMIT:
            cut -= 1
            loCount *= self.radices[cut]
        if self.count // loCount <= _TABLE_LIMIT:
            self._split = (loCount, _product(self.params[:cut]), _product(self.params[cut:]))
        self._permutation = self._compile()

    @classmethod
    def of(cls, sweeps: dict[str, Any], where: str = "experiment") -> "Sweep":
        """Flatten ``sweeps`` (a dict) once; ``where`` names the source in error messages."""
        if not isinstance(sweeps, dict):
            raise ExperimentError(f"{where}: the sweep must be a dict of parameters, got {type(sweeps).__name__}")
        params: list[Parameter] = []
        skeleton = _flatten(sweeps, (), params, where)
        count = 1
        for p in params:
            count *= len(p.values)
        return cls(tuple(params), skeleton, count)

    def digits(self, perm: int) -> tuple[int, ...]:
        """The value number of each parameter for permutation ``perm`` (0 <= perm < count)."""
        out = []
        for n in reversed(self.radices):
            perm, r = divmod(perm, n)
            out.append(r)
        return tuple(reversed(out))

    def leaves(self, perm: int) -> tuple[Any, ...]:
        """The value of each parameter for permutation ``perm`` (0 <= perm < count)."""
        if self._split is not None:
            loCount, hi, lo = self._split
            q, r = divmod(perm, loCount)
            return hi[q] + lo[r]
        return tuple(p.values[d] for p, d in zip(self.params, self.digits(perm)))

    def permutation(self, perm: int) -> dict[str, Any]:
        """A fresh nested dict of the parameters of permutation ``perm`` (0 <= perm < count)."""
        return self._permutation(perm)

    def _compile(self) -> Callable[[int], dict[str, Any]]:
        """The decoder specialised to this sweep (the hot path: one closure call per permutation)."""
        if self._split is not None and self._flat and not self._mutable:
            loCount, hi, lo = self._split
            keys = self._keys

            def flatTables(perm: int) -> dict[str, Any]:
                q, r = divmod(perm, loCount)
                return dict(zip(keys, hi[q] + lo[r]))

            return flatTables

        def generic(perm: int) -> dict[str, Any]:
            leaves = self.leaves(perm)
            if self._mutable:
                leaves = tuple(copy.deepcopy(v) if p.mutable else v for p, v in zip(self.params, leaves))
            if self._flat:
                return dict(zip(self._keys, leaves))
            result: dict[str, Any] = _build(self.skeleton, leaves)
            return result

        return generic

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.params)
