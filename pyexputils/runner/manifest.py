"""The manifest of one submitted array job: which indices each array task runs, and how.

Written (atomically) by the submitting process *before* sbatch is called; read by the in-job runner
(``python -m pyexputils.runner.task MANIFEST``) with ``$SLURM_ARRAY_TASK_ID`` (or ``--task N`` locally).
Array task ids are always numbered from 0, so an array never exceeds MaxArraySize whatever the indices.

Version 2 stores the tasks of a plan compactly (:meth:`pyexputils.runner.bundles.Bundles.toJson`:
``{"per": p, "ranges": [lo, n, ...]}`` or ``{"per": p, "indices": [...]}``), so a 10^7-index array is a few
bytes; version 3 stores scattered indices (a fitted plan's class: every k-th setting) as a packed set
(``{"per": p, "packed": "<base64>"}``, :mod:`pyexputils.runner.packed`), not a number each. A list of lists
(version 1, and tasks built by hand) is read and written as it is; versions 1 and 2 are still read. The in-job runner
reads them as :class:`TaskRanges` (plain Python: a job's runner never imports NumPy, which would cost every
array task ~0.1 s to start and make each of its run's forks slower).
"""
from __future__ import annotations

import base64
import bisect
import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Iterator, Sequence, overload

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.packed import Packed

if TYPE_CHECKING:
    from pyexputils.runner.bundles import Bundles

MANIFEST_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1: tasks as a list of lists only; 2: and ranges or indices; 3: or packed


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
        d["tasks"] = self.tasks.toJson() if isinstance(self.tasks, _bundles()) else self.tasks
        writeAtomic(path, json.dumps(d, separators=(",", ":")))

    @classmethod
    def read(cls, path: str, lean: bool = False) -> "Manifest":
        """The manifest at ``path``; compact tasks as :class:`~pyexputils.runner.bundles.Bundles`, or, with
        ``lean`` (the in-job runner), as :class:`TaskRanges`."""
        try:
            with open(path, encoding="utf-8") as f:
                d: dict[str, Any] = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise PyExpUtilsError(f"{path}: cannot read manifest: {e}") from None
        if d.get("version") not in READABLE_VERSIONS:
            raise PyExpUtilsError(f"{path}: manifest version {d.get('version')!r}, expected {MANIFEST_VERSION}")
        if isinstance(d.get("tasks"), dict):
            try:
                d["tasks"] = TaskRanges.fromJson(d["tasks"]) if lean else _bundles().fromJson(d["tasks"])
            except (KeyError, TypeError, ValueError) as e:
                raise PyExpUtilsError(f"{path}: cannot read manifest: tasks: {e}") from None
        return cls(**d)


def _bundles() -> "type[Bundles]":
    from pyexputils.runner.bundles import Bundles

    return Bundles


class TaskRanges(Sequence[Sequence[int]]):
    """A manifest's compact tasks (``{"per": p, "ranges": [lo, n, ...]}``, ``{"per": p, "indices": [...]}`` or
    ``{"per": p, "packed": "..."}``) in plain Python: ``tasks[t]`` is the list of task ``t``'s indices, as
    :class:`Bundles` gives it (a packed set: only the block or two task ``t`` falls in is decoded)."""

    packed: Packed | None = None

    def __init__(self, per: int, lo: list[int], n: list[int]) -> None:
        if per < 1 or len(lo) != len(n) or any(k < 1 for k in n):
            raise ValueError("expected per >= 1 and ranges of first index and a length >= 1")
        self.per, self._lo, self._n = per, lo, n
        self._at = [0] * len(n)  # the position of each range's first index
        for k in range(1, len(n)):
            self._at[k] = self._at[k - 1] + n[k - 1]
        self.runs = (self._at[-1] + n[-1]) if n else 0

    @classmethod
    def fromJson(cls, d: dict[str, Any]) -> "TaskRanges":
        per = int(d["per"])
        if "ranges" in d:
            flat = [int(x) for x in d["ranges"]]
            if len(flat) % 2:
                raise ValueError("ranges: expected pairs of first index and length")
            return cls(per, flat[0::2], flat[1::2])
        if "packed" in d:
            p = Packed(base64.b64decode(d["packed"]))
            out = cls(per, [p.first] if len(p) else [], [len(p)] if len(p) else [])  # the count; the members: ``packed``
            out.packed = p
            return out
        return cls(per, [int(x) for x in d["indices"]], [1] * len(d["indices"]))

    def __len__(self) -> int:
        return -(-self.runs // self.per)

    @overload
    def __getitem__(self, t: int) -> list[int]: ...
    @overload
    def __getitem__(self, t: slice) -> list[list[int]]: ...
    def __getitem__(self, t: int | slice) -> list[int] | list[list[int]]:
        if isinstance(t, slice):
            return [self[k] for k in range(*t.indices(len(self)))]
        if t < 0:
            t += len(self)
        if not 0 <= t < len(self):
            raise IndexError(t)
        pos, end = t * self.per, min(self.runs, (t + 1) * self.per)
        if self.packed is not None:
            return self.packed.positionsList(pos, end)
        out: list[int] = []
        k = bisect.bisect_right(self._at, pos) - 1
        while pos < end:
            take = min(end, self._at[k] + self._n[k]) - pos
            first = self._lo[k] + pos - self._at[k]
            out.extend(range(first, first + take))
            pos += take
            k += 1
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return (self[t] for t in range(len(self)))


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
