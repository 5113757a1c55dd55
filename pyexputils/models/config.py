"""The project's config.json / config.yaml: where results and logs go, what one index runs."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from pyexputils.errors import ConfigError
from pyexputils.models.loader import loadMapping

CONFIG_NAMES = ("config.json", "config.yaml", "config.yml")


@dataclass
class Config:
    """Global settings, read once per process by ``getConfig()``.

    - ``save_path``: save folder of one index; placeholders are the experiment's top-level keys plus
      ``{name}``, ``{params}``, ``{run}`` and ``{file}`` (the experiment file's name without extension).
    - ``log_path``: folder for job and per-index logs.
    - ``experiment_directory``: root of the experiment files (names experiments by their sub-folder).
    - ``command``: what one index runs; ``{experiment}`` (file path) and ``{index}`` are filled in,
      shell-quoted.
    - ``require``: file names that must all exist in the save folder for a run to count as done
      (empty: the folder existing is enough).
    - ``slurm``: sbatch long options with underscores (``time``, ``mem_per_cpu``, ...) plus pyexputils'
      own keys (``runs_per_task``, ``parallel``, ``max_attempts``, ...).
    - ``local``: options of the local backend (``workers``, ...).
    - ``watch``: the watcher service's own sbatch options and ``notify`` (see ``pyexputils.runner.service``).
    - ``backend``: ``auto`` (Slurm when ``sbatch`` is found, else local), ``slurm`` or ``local``.
    """

    save_path: str = "results/{name}/{file}/{params}/{run}"
    log_path: str = ".logs"
    experiment_directory: str = "experiments"
    command: str | None = None
    require: list[str] = field(default_factory=list)
    slurm: dict[str, Any] = field(default_factory=dict)
    local: dict[str, Any] = field(default_factory=dict)
    watch: dict[str, Any] = field(default_factory=dict)
    backend: str = "auto"
    path: str | None = None  # the file it was read from, None for defaults

    @classmethod
    def fromDict(cls, d: dict[str, Any], path: str | None = None) -> "Config":
        """Check keys and types of ``d`` and build a Config; errors name the file and the key."""
        where = path or "config"
        known = {f.name for f in fields(cls)} - {"path"}
        for key in d:
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(known))}")
        for key in ("save_path", "log_path", "experiment_directory"):
            if key in d and (not isinstance(d[key], str) or not d[key]):
                raise ConfigError(f"{where}: {key} must be a non-empty string, got {d[key]!r}")
        if d.get("command") is not None and (not isinstance(d["command"], str) or not d["command"].strip()):
            raise ConfigError(f"{where}: command must be a non-empty string, got {d['command']!r}")
        require = d.get("require", [])
        if isinstance(require, str):
            require = [require]
        if not isinstance(require, list) or not all(isinstance(r, str) and r and "/" not in r for r in require):
            raise ConfigError(f"{where}: require must be a list of file names (no '/'), got {require!r}")
        for key in ("slurm", "local", "watch"):
            if key in d and not isinstance(d[key], dict):
                raise ConfigError(f"{where}: {key} must be a mapping of options, got {d[key]!r}")
        if not isinstance(d.get("backend", "auto"), str) or not d.get("backend", "auto"):
            raise ConfigError(f"{where}: backend must be auto, slurm or local, got {d['backend']!r}")
        values = {k: v for k, v in d.items() if k != "require"}
        return cls(require=list(require), path=path, **values)

    @property
    def root(self) -> str:
        """The project root: the folder of the config file (the current folder when there is none)."""
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.path.abspath(".")

    def underRoot(self, path: str) -> str:
        """``path`` (from the config) as an absolute path: relative ones are under the project root."""
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.root, path))

    @property
    def results_root(self) -> str:
        """The fixed leading folder of ``save_path`` (before any placeholder): where the ledger lives."""
        head = self.save_path.split("{", 1)[0]
        root = head if head.endswith("/") or "{" not in self.save_path else os.path.dirname(head)
        return os.path.normpath(root) if root else "."


def findConfig(root: str = ".") -> str | None:
    """The config file in folder ``root``, or None."""
    for name in CONFIG_NAMES:
        candidate = os.path.join(root, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def findProject(start: str = ".") -> str | None:
    """The nearest config file in ``start`` or a folder above it (as git finds ``.git``), or None."""
    folder = os.path.abspath(start)
    while True:
        found = findConfig(folder)
        if found is not None:
            return found
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def loadConfig(root: str = ".") -> Config:
    """Read the config file in folder ``root`` (defaults when there is none)."""
    path = findConfig(root)
    if path is None:
        return Config()
    d = loadMapping(path, ConfigError)
    return Config.fromDict(d, path)


_cached: dict[str, Config] = {}


def getConfig() -> Config:
    """The project's Config: the nearest config file in the current folder or above, read once per process."""
    here = os.path.abspath(".")
    if here not in _cached:
        path = findProject(here)
        _cached[here] = loadConfig(os.path.dirname(path)) if path else Config()
    return _cached[here]


def setConfig(config: Config | None) -> None:
    """Replace (or, with None, forget) the cached Config of the current directory: for tests and tools."""
    here = os.path.abspath(".")
    if config is None:
        _cached.pop(here, None)
    else:
        _cached[here] = config
