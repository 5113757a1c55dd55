"""The state folder ``<results root>/.pyexputils``: the one place that names every file pyexputils keeps.

```
.pyexputils/
  ledger.sqlite           submissions, attempts, verdicts, remembered runs (pyexputils.runner.ledger)
  ledger.lock             flock of the one writer (submit / watch / retry)
  cancelled.txt           job ids cancelled by `pyexputils cancel` while a watch held the lock
  manifests/<tag>.json    what each array task of a submission runs (written before sbatch)
  scripts/<tag>.sh        the sbatch script as submitted
  status/<tag>/<task>.jsonl   the in-job runner's events, one file per array task
  local/<tag>.json        the local backend's record of a running pool
  service/chain.json      the watcher service now in charge (pyexputils.runner.service)
  service/stop            the chain id `pyexputils service stop` ended
  service/summary.json    how the sweep ended, written once by the watcher that saw it end
  service/notified-<id>   the end notification of chain <id> was sent (created once, never rewritten)
  service/problem.txt     why the last watcher could not keep a successor queued (or stopped a crash loop)
  service/starts, alive   each watcher's start, and the last finished round (the crash-loop count)
  service/logs/watcher-<job>.log   each watcher job's log; service/daemon.log, .pid, .lock: `watch --daemon`
  durations/<name>-<hash>.npz  measured run times and memory per setting and per array (pyexputils.runner.durations)
  listings/<hash>.npz     what each setting folder held when last listed (pyexputils.results.listings; a cache)
```
"""
from __future__ import annotations

import hashlib
import os
import re

STATE_DIR = ".pyexputils"


class StateDir:
    """Paths under one results root's state folder (nothing is created until asked)."""

    def __init__(self, resultsRoot: str) -> None:
        self.resultsRoot = os.path.abspath(resultsRoot)
        self.path = os.path.join(self.resultsRoot, STATE_DIR)

    @classmethod
    def at(cls, path: str) -> "StateDir":
        """The StateDir whose folder is ``path`` (normally ``<results root>/.pyexputils``)."""
        state = cls(os.path.dirname(os.path.abspath(path)))
        state.path = os.path.abspath(path)
        return state

    def __repr__(self) -> str:
        return f"StateDir({self.path!r})"

    @property
    def ledger(self) -> str:
        return os.path.join(self.path, "ledger.sqlite")

    @property
    def lock(self) -> str:
        return os.path.join(self.path, "ledger.lock")

    @property
    def cancelled(self) -> str:
        return os.path.join(self.path, "cancelled.txt")

    @property
    def manifests(self) -> str:
        return os.path.join(self.path, "manifests")

    def manifest(self, tag: str) -> str:
        return os.path.join(self.manifests, f"{tag}.json")

    def script(self, tag: str) -> str:
        return os.path.join(self.path, "scripts", f"{tag}.sh")

    @property
    def status(self) -> str:
        """The runner's status folder (``Manifest.status_dir``); files are ``<tag>/<task>.jsonl``."""
        return os.path.join(self.path, "status")

    def statusOf(self, tag: str) -> str:
        return os.path.join(self.status, tag)

    @property
    def local(self) -> str:
        """The local backend's registry of running pools."""
        return os.path.join(self.path, "local")

    @property
    def service(self) -> str:
        """The watcher service's folder (``service/...`` above)."""
        return os.path.join(self.path, "service")

    def serviceFile(self, name: str) -> str:
        """``service/<name>``: chain.json, stop, summary.json, notified-<id>, problem.txt, daemon.{log,pid,lock}."""
        return os.path.join(self.service, name)

    def watcherLog(self, jobId: str) -> str:
        """A watcher job's log (``jobId`` may be sbatch's ``%j``)."""
        return os.path.join(self.service, "logs", f"watcher-{jobId}.log")

    def durations(self, experiment: str) -> str:
        """The measurements of one experiment (its absolute path): ``durations/<name>-<hash>.npz``."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(experiment))[0])[:40] or "exp"
        digest = hashlib.sha1(experiment.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        return os.path.join(self.path, "durations", f"{name}-{digest}.npz")

    def listing(self, name: str) -> str:
        """A walk's cache of setting folders (``listings/<hash>.npz``, :func:`pyexputils.results.listings.cacheName`)."""
        return os.path.join(self.path, "listings", name)

    def make(self) -> None:
        """Create the state folder."""
        os.makedirs(self.path, exist_ok=True)
