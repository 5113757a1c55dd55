"""The manifest of one submitted array job: which indices each array task runs, and how.

Written (atomically) by the submitting process *before* sbatch is called; read by the in-job runner
(``python -m pyexputils.runner.task MANIFEST``) with ``$SLURM_ARRAY_TASK_ID`` (or ``--task N`` locally).
Array task ids are always numbered from 0, so an array never exceeds MaxArraySize whatever the indices.

Version 2 stores the tasks of a plan compactly (:meth:`pyexputils.runner.bundles.Bundles.toJson`:
``{"per": p, "ranges": [lo, n, ...]}`` or ``{"per": p, "indices": [...]}``), so a 10^7-index array is a few
bytes; a list of lists (version 1, and tasks built by hand) is read and written as it is.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.bundles import Bundles

MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: tasks as a list of lists only


@dataclass
class Manifest:
    """Everything the in-job runner needs; ``tasks[t]`` are the indices of array task ``t``."""

    tag: str  # unique name of this submission: job name suffix, manifest and status file names
    experiment: str  # absolute path of the experiment file
    project: str  # absolute project root (the folder of config.json): the runner's working directory
    command: str  # config ``command`` with {experiment}, {index} (and any experiment key) placeholders
    tasks: Sequence[Sequence[int]]  # a plan's :class:`Bundles`, or a list of lists
    parallel: int = 1  # indices run at once inside one task
    require: list[str] = field(default_factory=list)
    log_dir: str = ".logs"  # absolute: per-index stdout/stderr go to LOG_DIR/<tag>/<index>.out|.err
    status_dir: str = ""  # absolute: the runner appends events to STATUS_DIR/<tag>/<task>.jsonl
    attempt: int = 1  # exported to runs as PYX_ATTEMPT
    time_limit_s: int | None = None  # per index, enforced by the runner (the local backend sets it)
    version: int = MANIFEST_VERSION
    # additive (version 1 manifests without them read as these defaults):
    job_time_limit_s: int | None = None  # the array task's whole limit (sbatch --time): a SIGTERM near its
    #   end without a prior USR1 counts as TIMEOUT, and runs see PYX_DEADLINE / PYX_TIME_LIMIT
    grace_s: float = 10.0  # seconds between the runner's SIGTERM to a run and its SIGKILL
    skip_done: bool = True  # an index whose results are already on disk is skipped (event ``skip``, COMPLETED)

    def statusPath(self, task: int) -> str:
        return os.path.join(self.status_dir, self.tag, f"{task}.jsonl")

    def logPaths(self, index: int) -> tuple[str, str]:
        base = os.path.join(self.log_dir, self.tag, str(index))
        return base + ".out", base + ".err"

    def write(self, path: str) -> None:
        """Write to ``path`` atomically (temporary name in the same folder, then rename)."""
        # the fields as they are (dataclasses.asdict would deep-copy every task's list first: 10^6 tasks, seconds)
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["tasks"] = self.tasks.toJson() if isinstance(self.tasks, Bundles) else self.tasks
        writeAtomic(path, json.dumps(d, separators=(",", ":")))

    @classmethod
    def read(cls, path: str) -> "Manifest":
        try:
            with open(path, encoding="utf-8") as f:
                d: dict[str, Any] = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise PyExpUtilsError(f"{path}: cannot read manifest: {e}") from None
        if d.get("version") not in READABLE_VERSIONS:
            raise PyExpUtilsError(f"{path}: manifest version {d.get('version')!r}, expected {MANIFEST_VERSION}")
        if isinstance(d.get("tasks"), dict):
            try:
                d["tasks"] = Bundles.fromJson(d["tasks"])
            except (KeyError, TypeError, ValueError) as e:
                raise PyExpUtilsError(f"{path}: cannot read manifest: tasks: {e}") from None
        return cls(**d)


def writeAtomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
