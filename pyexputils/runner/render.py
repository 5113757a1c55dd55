"""Render: one planned array -> its sbatch options (data) and its sbatch script (pure: no files, no processes).

The ``#SBATCH`` block is rendered by simple-slurm from a dict of options; the script body comes from a
template (``pyexputils/templates/sbatch.sh``, or the project's own) with ``{{name}}`` placeholders:
``sbatch`` (the ``#SBATCH`` block), ``tag``, ``experiment``, ``project``, ``python``, ``manifest`` (shell
values are quoted), ``tasks``, ``runs_per_task``, ``parallel``, ``job_name``.

Options pyexputils sets: ``array`` (``0-N`` with ``%throttle``), ``job_name`` (``pyx-<tag>``), ``comment``
(``pyx:<tag>``: adoption after a crash), ``output`` (``<log_path>/<tag>/%A_%a.out``, stderr too), ``signal``
(``B:USR1@<s>``: the runner's time-limit warning), ``no_requeue`` (pyexputils resubmits by itself; Slurm's
own requeue could run an index twice), ``time`` and ``cpus_per_task`` (and ``mem``) of the whole task.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import time
from functools import lru_cache
from typing import Any, Mapping

from simple_slurm import Slurm

from pyexputils.errors import ConfigError
from pyexputils.runner.backend import COMMENT_PREFIX, JOB_PREFIX
from pyexputils.runner.plan import ArrayPlan
from pyexputils.runner.resources import formatMinutes

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
TEMPLATE_KEYS = ("sbatch", "tag", "experiment", "project", "python", "manifest", "tasks", "runs_per_task", "parallel", "job_name")  # fmt: skip
_UNSAFE = re.compile(r"[\s'\"\\]")  # #SBATCH values are parsed by sbatch, not a shell
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@lru_cache(maxsize=1)
def sbatchKeys() -> frozenset[str]:
    """The long sbatch options simple-slurm knows, with underscores (``cpus_per_task``)."""
    from simple_slurm.core import read_simple_txt  # its own data file, read once

    return frozenset(line[0] for line in read_simple_txt("arguments.txt") if line and line[0])


def slug(text: str, limit: int = 40) -> str:
    """``text`` made safe for job names, file names and ``#SBATCH`` lines."""
    s = _SLUG.sub("_", text).strip("._-") or "exp"
    return s[:limit]


def newSubmissionId(now: float | None = None) -> str:
    """A short id, unique per submit command: time (to the second) and random bits."""
    t = time.strftime("%Y%m%d%H%M%S", time.localtime(now if now is not None else time.time()))
    return f"{t}{secrets.token_hex(2)}"


def makeTag(experimentName: str, submission: str, array: int) -> str:
    """The tag of one array job: experiment, submission and array number (``sarsa-20240101120000ab12-0``)."""
    return f"{slug(experimentName)}-{submission}-{array}"


def signalSeconds(taskMinutes: int | None, override: int | None = None) -> int:
    """How long before the limit the runner is warned: a tenth of the time, 30 s to 5 min, at most half."""
    if override is not None:
        return override
    if taskMinutes is None:
        return 120
    limit = taskMinutes * 60
    return int(min(limit // 2, max(30, min(300, limit // 10))))


def arraySpec(size: int, throttle: int | None) -> str:
    spec = f"0-{size - 1}" if size > 1 else "0"
    return f"{spec}%{throttle}" if throttle is not None else spec


def checkLogPath(output: str, where: str = "config") -> None:
    """An ``#SBATCH --output`` path must be non-empty and hold no blanks or quotes."""
    if not output or _UNSAFE.search(output):
        raise ConfigError(f"{where}: log_path {output!r}: #SBATCH --output cannot hold blanks or quotes; move the logs")


def sbatchOptions(a: ArrayPlan, tag: str, output: str, signal_seconds: int | None = None) -> dict[str, Any]:
    """The full option dict of one array (long names with underscores); the user's were checked by
    :mod:`pyexputils.runner.options`."""
    opts = {k: v for k, v in a.sbatch.items() if v is not False}
    opts.update(
        array=arraySpec(a.size, a.throttle),
        job_name=JOB_PREFIX + tag,
        comment=COMMENT_PREFIX + tag,
        output=output,
        cpus_per_task=a.cpus_per_task,
        no_requeue=True,
    )
    if a.time_minutes is not None:
        opts["time"] = formatMinutes(a.time_minutes)
        opts["signal"] = f"B:USR1@{signalSeconds(a.time_minutes, signal_seconds)}"
    else:
        opts.pop("time", None)
        opts["signal"] = f"B:USR1@{signalSeconds(None, signal_seconds)}"
    if a.mem_mb is not None:
        opts["mem"] = f"{a.mem_mb}M"
    return opts


PER_ARRAY = ("array", "job_name", "comment", "output")  # differ between arrays of one submission


def sbatchBlock(options: Mapping[str, Any]) -> str:
    """The ``#SBATCH`` lines of ``options``, rendered by simple-slurm (sorted by name).

    simple-slurm builds an argument parser per call (~3 ms); the block is rendered once per set of shared
    options with markers for the per-array values, which are then filled in (100,000 arrays stay fast)."""
    shared = tuple(sorted((k, "\0" + k if k in PER_ARRAY else ("" if v is True else str(v))) for k, v in options.items()))
    block = _block(shared)
    for key in PER_ARRAY:
        if key in options:
            block = block.replace("\0" + key, str(options[key]), 1)
    return block


@lru_cache(maxsize=256)
def _block(shared: tuple[tuple[str, str], ...]) -> str:
    script = Slurm(**dict(shared)).script(convert=False)
    return "\n".join(line.rstrip() for line in script.splitlines() if line.startswith("#SBATCH"))


def checkTemplate(template: str, where: str) -> None:
    """Raise on unknown placeholders or a template without ``{{sbatch}}``."""
    names = _PLACEHOLDER.findall(template)
    for name in names:
        if name not in TEMPLATE_KEYS:
            raise ConfigError(f"{where}: unknown placeholder {{{{{name}}}}}; known: {', '.join(TEMPLATE_KEYS)}")
    if "sbatch" not in names:
        raise ConfigError(f"{where}: the template has no {{{{sbatch}}}} (the #SBATCH lines) placeholder")
    if "manifest" not in names:
        raise ConfigError(f"{where}: the template has no {{{{manifest}}}}: the job would not run the runner")


def renderScript(
    template: str,
    a: ArrayPlan,
    options: Mapping[str, Any],
    tag: str,
    manifest: str,
    project: str,
    python: str,
    experiment: str,
) -> str:
    """The sbatch script of one array."""
    values = {
        "sbatch": sbatchBlock(options),
        "tag": tag,
        "experiment": experiment.replace("\n", " "),
        "project": shlex.quote(project),
        "python": shlex.quote(python),
        "manifest": shlex.quote(manifest),
        "tasks": str(a.size),
        "runs_per_task": str(a.runs_per_task),
        "parallel": str(a.parallel),
        "job_name": JOB_PREFIX + tag,
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def outputPath(logDir: str, tag: str, project: str) -> str:
    """``<log_dir>/<tag>/%A_%a.out``, absolute when that is clean, else relative to the project."""
    path = os.path.join(logDir, tag, "%A_%a.out")
    if _UNSAFE.search(path) and os.path.isabs(path):
        rel = os.path.relpath(path, project)
        if not _UNSAFE.search(rel):
            return rel
    return path
