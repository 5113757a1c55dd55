"""ExperimentDescription: index <-> (permutation, run) <-> parameters <-> save path."""
from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

from pyexputils.errors import ExperimentError
from pyexputils.models.config import Config, getConfig
from pyexputils.models.context import FileSystemContext
from pyexputils.models.loader import loadMapping
from pyexputils.models.sweep import Sweep

Keys = str | list[str]

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
SPECIAL_KEYS = ("name", "params", "run", "file")
NAME_MAX = 255  # bytes in one path component (ext4, xfs, Lustre, NFS)


def _flatItems(name: str, value: Any) -> list[tuple[str, str]]:
    """(dotted name, text) pairs of one value, as the original's hyphenatedStringify flattens it."""
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatItems(f"{name}.{k}", v)]
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [item for i, v in enumerate(value) for item in _flatItems(f"{name}.[{i}]", v)]
    if isinstance(value, list):
        return [(f"{name}.[{i}]", str(v)) for i, v in enumerate(value)]
    return [(name, str(value))]


def _checkPathText(text: str, where: str, what: str) -> None:
    if "\x00" in text or ".." in text.split("/"):
        raise ExperimentError(f"{where}: {what} = {text!r} would escape the results folder; rename the value")


@dataclass(frozen=True)
class _Template:
    """A save path compiled against one description: literal and fixed parts pre-joined."""

    parts: tuple[str, ...]  # literal text, or one of "\0params", "\0run"
    hasRun: bool


class ExperimentDescription:
    """One experiment: fixed settings plus ``metaParameters`` to sweep.

    ``index = run * numPermutations() + permutation``; the last parameter varies fastest.
    """

    def __init__(
        self,
        d: dict[str, Any],
        path: str | None = None,
        keys: Keys = "metaParameters",
        save_key: str | None = None,
        *,
        config: Config | None = None,
    ) -> None:
        self._d = d
        self.path = path
        self.keys = keys
        self.save_key = save_key
        self._config = config
        self._where = path or "experiment"
        if not isinstance(d, dict):
            raise ExperimentError(f"{self._where}: an experiment must be a mapping, got {type(d).__name__}")
        for key in self.getKeys():
            if key not in d:
                raise ExperimentError(f"{self._where}: missing key {key!r} (the parameters to sweep)")
            if not isinstance(d[key], dict):
                raise ExperimentError(f"{self._where}: {key} must be a mapping of parameters, got {d[key]!r}")
        self.sweep = Sweep.of(self.permutable() if isinstance(keys, list) else d[keys], self._where)
        self._templates: dict[str, _Template] = {}
        self._pieces: list[list[str]] | None = None
        self._order: list[int] = []
        self._keys: list[str] = []
        self._checkValues()

    # --- the seed's API -------------------------------------------------------------------------
    def getKeys(self, keys: Keys | None = None) -> list[str]:
        keys = keys if keys is not None else self.keys
        return keys if isinstance(keys, list) else [keys]

    def permutable(self) -> dict[str, Any]:
        """The sweep itself: ``{'alpha': [1.0, 0.5, ...], 'lambda': [...]}`` (a copy).

        With several sweep keys (``keys=[...]``) it is keyed by sweep key, like ``getPermutation``.
        """
        import copy

        if isinstance(self.keys, list):
            return {key: copy.deepcopy(self._d[key]) for key in self.getKeys()}
        return copy.deepcopy(dict(self._d[self.keys]))

    def numPermutations(self) -> int:
        """Number of parameter settings (product of the list lengths)."""
        return self.sweep.count

    def getPermutation(self, idx: int) -> dict[str, Any]:
        """The parameters of index ``idx`` (wrapping over runs), nested as in the file; a fresh dict."""
        if idx.__class__ is int and idx >= 0:  # the hot path
            return self.sweep._permutation(idx % self.sweep.count)
        return self.sweep.permutation(self._index(idx) % self.sweep.count)

    def getRun(self, idx: int) -> int:
        """How many times ``idx`` wrapped around the settings: the run number."""
        return self._index(idx) // self.sweep.count

    def getExperimentName(self) -> str:
        """The ``name`` key, else the experiment file's folder relative to ``experiment_directory``."""
        if "name" in self._d:
            return str(self._d["name"])
        if self.path is None:
            return "unnamed"
        parent = os.path.dirname(os.path.abspath(self.path))
        root = self.config.underRoot(self.config.experiment_directory)  # from the project root, wherever we are
        if parent == root:
            return self.getFileName()
        if parent.startswith(root + os.sep):
            return os.path.relpath(parent, root)
        return os.path.basename(parent) or self.getFileName()

    def getFileName(self) -> str:
        """The experiment file's name without extension (``sarsa`` for ``.../sarsa.json``)."""
        if self.path is None:
            return "unnamed"
        return os.path.splitext(os.path.basename(self.path))[0]

    def interpolateSavePath(self, idx: int, key: str | None = None) -> str:
        """The save folder of index ``idx``: config ``save_path`` (or ``key``) with placeholders filled."""
        idx = self._index(idx)
        run, perm = divmod(idx, self.sweep.count)
        template = self._template(key)
        out = []
        for part in template.parts:
            if part == "\0params":
                out.append(self.paramsString(perm))
            elif part == "\0run":
                out.append(str(run))
            else:
                out.append(part)
        return "".join(out)

    def buildSaveContext(self, idx: int, base: str = "", key: str | None = None) -> FileSystemContext:
        """A FileSystemContext on the save folder of ``idx``."""
        return FileSystemContext(self.interpolateSavePath(idx, key), base)

    # --- beyond the seed -------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        return self._config if self._config is not None else getConfig()

    @property
    def description(self) -> dict[str, Any]:
        """The raw description (do not modify)."""
        return self._d

    def paramsString(self, perm: int) -> str:
        """``{params}`` of permutation ``perm``: flat keys sorted, ``key-value`` joined by ``_``."""
        if self._pieces is None:
            self._compilePieces()
        assert self._pieces is not None
        if self._pieces:
            digits = self.sweep.digits(perm)
            return "_".join([self._pieces[j][digits[j]] for j in self._order])
        items = _flatItems("", self._stringified(perm))
        return "_".join(f"{k[1:]}-{v}" for k, v in sorted(items))

    def paramsStrings(self) -> list[str]:
        """``paramsString(p)`` of every permutation ``p``, in order, built in bulk (for sweeps of 10^6)."""
        if self._pieces is None:
            self._compilePieces()
        assert self._pieces is not None
        if not self._pieces:
            return [self.paramsString(p) for p in range(self.sweep.count)]
        acc = [""]
        for k, j in enumerate(self._order):  # in name order: the last name varies fastest
            sep = "_" if k else ""
            acc = [a + sep + piece for a in acc for piece in self._pieces[j]]
        if self._order == sorted(self._order):
            return acc
        import numpy as np  # entry q of acc is permutation perms[q]

        perms = np.arange(self.sweep.count).reshape(self.sweep.radices).transpose(self._order).ravel()
        out = np.empty(self.sweep.count, dtype=object)
        out[perms] = acc
        strings: list[str] = out.tolist()
        return strings

    def paramsFields(self) -> list[tuple[str, dict[str, int], int]] | None:
        """``{params}`` read back: its ``key-value`` fields in order, each as (key, value text -> value number,
        what that number adds to the permutation number); None when a value is not a scalar."""
        if self._pieces is None:
            self._compilePieces()
        assert self._pieces is not None
        if not self._pieces:
            return None
        strides = [1] * len(self.sweep.radices)
        for j in range(len(strides) - 2, -1, -1):
            strides[j] = strides[j + 1] * self.sweep.radices[j + 1]
        fields = []
        for j in self._order:
            key = self._keys[j]
            fields.append((key, {piece[len(key) + 1 :]: d for d, piece in enumerate(self._pieces[j])}, strides[j]))
        return fields

    def savePathParts(self, key: str | None = None) -> tuple[str, ...]:
        """The compiled save path: literal text with ``"\\0params"`` and ``"\\0run"`` markers between."""
        return self._template(key).parts

    def validateSavePath(self, runs: int = 1, key: str | None = None) -> None:
        """Raise if the save path cannot tell indices apart for ``runs`` runs (or names unknown keys)."""
        template = self._template(key)
        if runs > 1 and not template.hasRun:
            raise ExperimentError(
                f"{self._templateSource(key)}: save_path {self._templateText(key)!r} has no {{run}} "
                f"but {runs} runs were asked for: every run would overwrite the same folder"
            )
        if "\0params" not in template.parts and self.sweep.count > 1:
            raise ExperimentError(
                f"{self._templateSource(key)}: save_path {self._templateText(key)!r} has no {{params}} "
                f"but {self._where} sweeps {self.sweep.count} settings: they would share one folder"
            )

    def checkPathComponents(self, runs: int = 1, key: str | None = None, limit: int = NAME_MAX) -> None:
        """Raise unless every save folder of ``runs`` runs can be made: no value with ``/`` inside
        ``{params}`` (it would split the folder) and no path component over ``limit`` bytes (ENAMETOOLONG)."""
        template = self._template(key)
        if "\0params" in template.parts:
            for p in self.sweep:
                bad = next((v for v in p.values if "/" in str(v)), None)
                if bad is not None:
                    raise ExperimentError(f"{self._where}: {p.name} = {str(bad)!r}: a '/' in a swept value would "
                                          "split its {params} folder in two; rename the value")  # fmt: skip
        longest = {"\0params": self._longestParams(), "\0run": len(str(max(runs, 1) - 1))}
        for component in "".join(template.parts).split("/"):
            size = len(component.encode())
            for marker, most in longest.items():
                size += component.count(marker) * (most - len(marker.encode()))
            if size > limit:
                shown = component.replace("\0params", "{params}").replace("\0run", "{run}")
                raise ExperimentError(
                    f"{self._templateSource(key)}: save_path component {shown!r} is up to {size} bytes for "
                    f"{self._where}, over the file system's limit of {limit}: shorten the parameter names or values "
                    "(or put fewer in one folder)"
                )

    def _longestParams(self) -> int:
        """The most bytes ``{params}`` takes for any setting."""
        if self._pieces is None:
            self._compilePieces()
        assert self._pieces is not None
        if self._pieces:
            return sum(max(len(piece.encode()) for piece in pieces) for pieces in self._pieces) + len(self._pieces) - 1
        return max(len(self.paramsString(p).encode()) for p in range(min(self.sweep.count, 10_000)))

    def checkIndex(self, idx: int, runs: int) -> int:
        """``idx`` as an int if ``0 <= idx < runs * numPermutations()``; else a clear error."""
        i = self._index(idx)
        total = runs * self.sweep.count
        if i >= total:
            raise ExperimentError(
                f"{self._where}: index {i} is out of range: {self.sweep.count} settings x {runs} runs "
                f"gives indices 0-{total - 1}"
            )
        return i

    # --- internals ---------------------------------------------------------------------------------
    def _index(self, idx: Any) -> int:
        if isinstance(idx, bool):
            raise ExperimentError(f"{self._where}: index must be an integer, got {idx!r}")
        try:
            i = operator.index(idx)
        except TypeError:
            raise ExperimentError(f"{self._where}: index must be an integer, got {idx!r}") from None
        if i < 0:
            raise ExperimentError(f"{self._where}: index {i} is out of range: indices start at 0")
        return i

    def _stringified(self, perm: int) -> dict[str, Any]:
        if isinstance(self.keys, list):
            perm_d = self.sweep.permutation(perm)
            return perm_d if len(self.keys) > 1 else perm_d[self.keys[0]]
        return self.sweep.permutation(perm)

    def _paramsRoot(self) -> tuple[str, ...]:
        """Path prefix dropped from parameter names in ``{params}`` (a single sweep key is dropped)."""
        return (self.keys[0],) if isinstance(self.keys, list) and len(self.keys) == 1 else ()

    def _compilePieces(self) -> None:
        """Pre-format ``key-value`` of every value when every value is a scalar (the common case)."""
        if any(p.mutable for p in self.sweep):
            self._pieces = []
            return
        skip = len(self._paramsRoot())
        names = [".".join(f"[{q}]" if isinstance(q, int) else q for q in p.path[skip:]) for p in self.sweep]
        self._pieces = [[f"{name}-{v}" for v in p.values] for name, p in zip(names, self.sweep)]
        self._order = sorted(range(len(names)), key=lambda j: names[j])
        self._keys = names

    def _checkValues(self) -> None:
        for p in self.sweep:
            texts = [str(v) for v in p.values]
            for text in texts:
                _checkPathText(text, self._where, p.name)
            if len(set(texts)) < len(texts):
                dup = next(t for t in texts if texts.count(t) > 1)
                raise ExperimentError(
                    f"{self._where}: {p.name} lists the value {dup!r} twice (or two values that print the same): "
                    f"their save paths would collide"
                )

    def _templateText(self, key: str | None) -> str:
        if key is not None:
            return key
        if self.save_key is not None:
            return self.save_key
        return self.config.save_path

    def _templateSource(self, key: str | None) -> str:
        if key is None and self.save_key is None:
            return f"{self.config.path or 'config'} (for {self._where})"
        return self._where

    def _template(self, key: str | None) -> _Template:
        text = self._templateText(key)
        cached = self._templates.get(text)
        if cached is not None:
            return cached
        source = self._templateSource(key)
        if text.count("{") != len(_PLACEHOLDER.findall(text)) or text.count("}") != text.count("{"):
            raise ExperimentError(f"{source}: save_path {text!r} has an unmatched brace")
        special = {"name": self.getExperimentName(), "file": self.getFileName()}
        parts: list[str] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : m.start()])
            pos = m.end()
            name = m.group(1)
            if name in ("params", "run"):
                parts.append("\0" + name)
                continue
            if name in special:
                value = special[name]
            elif name in self._d:
                value = str(self._d[name])
            else:
                known = sorted(set(self._d) | set(SPECIAL_KEYS))
                raise ExperimentError(
                    f"{source}: save_path placeholder {{{name}}} names no key of {self._where}; "
                    f"known: {', '.join(known)}"
                )
            _checkPathText(value, self._where, name)
            parts.append(value)
        parts.append(text[pos:])
        # join neighbouring literal parts
        merged: list[str] = []
        for part in parts:
            if merged and not part.startswith("\0") and not merged[-1].startswith("\0"):
                merged[-1] += part
            elif part:
                merged.append(part)
        template = _Template(tuple(merged), "\0run" in merged)
        self._templates[text] = template
        return template

    def __repr__(self) -> str:
        return f"ExperimentDescription(path={self.path!r}, permutations={self.sweep.count})"


Exp = TypeVar("Exp", bound=ExperimentDescription)


def loadExperiment(path: str, Model: type[Exp] = ExperimentDescription) -> Exp:  # type: ignore[assignment]
    """Load an experiment file: JSON, or YAML for ``.yaml``/``.yml``."""
    return Model(loadMapping(path, ExperimentError), path=path)


def loadExperiments(paths: Sequence[str]) -> list[ExperimentDescription]:
    """Load several experiment files, in order."""
    return [loadExperiment(p) for p in paths]
