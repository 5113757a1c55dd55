"""Save paths in bulk: the save folder of every index, and the save path split into folder levels.

A save path such as ``results/{name}/{file}/{params}/{run}`` is compiled once (``savePathParts``) and
split at ``/`` into a fixed *root* (no placeholder: ``results/MountainCar/sarsa``) and *levels* below it
(``{params}``, then ``{run}``). Missing detection walks the levels with one directory listing per
existing folder; paths for all indices are built from ``paramsStrings()`` (one string per setting).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pyexputils.models import ExperimentDescription

PARAMS = "\0params"
RUN = "\0run"
_MARKERS = re.compile("(\0params|\0run)")


@dataclass(frozen=True)
class Level:
    """One path component below the root: literal text and markers, e.g. ``("run-", RUN)``."""

    tokens: tuple[str, ...]

    @property
    def usesParams(self) -> bool:
        return PARAMS in self.tokens

    @property
    def usesRun(self) -> bool:
        return RUN in self.tokens

    def formatString(self) -> str:
        """The component as a ``str.format`` template: ``{0}`` is ``{params}``, ``{1}`` is ``{run}``."""
        return "".join(
            "{0}" if t == PARAMS else "{1}" if t == RUN else t.replace("{", "{{").replace("}", "}}")
            for t in self.tokens
        )

    def build(self, params: str, run: str) -> str:
        """The component's text for one setting's ``{params}`` and one ``{run}``."""
        return "".join(params if t == PARAMS else run if t == RUN else t for t in self.tokens)


@dataclass(frozen=True)
class PathPlan:
    """A save path as a fixed root folder plus the levels below it (at least one)."""

    root: str
    levels: tuple[Level, ...]

    @property
    def usesParams(self) -> bool:
        return any(level.usesParams for level in self.levels)


def projectBase(exp: ExperimentDescription, base: str = "") -> str:
    """``base``, else the way from here to the project root (save paths are relative to the project root, so
    that analysis works from any sub-folder): '' when here is the root."""
    if base:
        return base
    root = exp.config.root
    return "" if root == os.path.abspath(".") else os.path.relpath(root)


def planSavePath(exp: ExperimentDescription, base: str = "", key: str | None = None) -> PathPlan | None:
    """Split the save path of ``exp`` into root and levels; None when a level is ``..`` (walk it naively)."""
    text = "".join(exp.savePathParts(key))
    comps = [c for c in text.split("/") if c not in ("", ".")]
    if not comps:
        return None
    first = next((i for i, c in enumerate(comps) if _MARKERS.search(c)), len(comps) - 1)
    if ".." in comps[first:]:
        return None
    root = "/".join(comps[:first])
    root = ("/" + root) if text.startswith("/") else (root or ".")
    if base:
        root = os.path.join(base, root)
    levels = tuple(Level(tuple(t for t in _MARKERS.split(c) if t)) for c in comps[first:])
    return PathPlan(root, levels)


def fillSavePath(parts: tuple[str, ...], params: str, run: str) -> str:
    """The save path of compiled ``parts`` for one ``{params}`` and ``{run}`` (as ``interpolateSavePath``)."""
    return "".join(params if p == PARAMS else run if p == RUN else p for p in parts)


def listResultsPaths(exp: ExperimentDescription, runs: int = 1, key: str | None = None) -> list[str]:
    """The save folder of every index ``0 … runs·P − 1``, in order, built in bulk (no ``getPermutation``)."""
    parts = exp.savePathParts(key)
    strings = exp.paramsStrings() if PARAMS in parts else [""] * exp.numPermutations()
    out: list[str] = []
    for run in range(runs):
        r = str(run)
        out.extend(fillSavePath(parts, s, r) for s in strings)
    return out
