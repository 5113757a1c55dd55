"""The ``slurm`` block, parsed and checked once: typed options for planning, rendering and the policy.

An experiment's options are the config's ``slurm`` block with the experiment file's own ``slurm`` block over
it, key by key, and the command line's ``--runs-per-task``/``--parallel``/``--throttle`` over both. Every
key is checked here, the same way for ``submit``, ``submit --dry-run`` and ``watch``; an error names the
file the key came from and the key. Keys:

- pyexputils' own (never passed to sbatch): ``runs_per_task`` (``auto`` or >= 1), ``parallel``,
  ``throttle``, ``max_tasks``, ``signal_seconds`` (whole numbers >= 1), ``grace_s`` (seconds > 0); the
  policy's ``max_attempts`` (>= 1), ``max_failed_retries`` (>= 0), ``time_factor``, ``mem_factor`` (> 1),
  ``max_time`` (a time), ``max_mem`` (a memory), ``resubmit_cancelled`` (true/false); the cluster limits
  ``max_array_size``, ``max_job_count``, ``max_submit_jobs`` (>= 1); ``template`` (a file).
- sbatch's long options with underscores (``time``, ``mem_per_cpu``, ``partition``, ``account``, ...):
  known to sbatch; times (``time``, ``time_min``) and memories (``mem``, ``mem_per_cpu``, ``mem_per_gpu``)
  must parse; counts (``cpus_per_task``, ``ntasks``) are whole numbers >= 1; every value fits an
  ``#SBATCH`` line (no blanks, quotes or backslashes); ``true`` is a flag, ``false`` leaves it out.
- set by pyexputils and refused: ``array``, ``job_name``, ``output``, ``error``, ``comment``, ``signal``, ...
- ``by``: options per parameter value, ``{"hidden": {"1024": {"mem_per_cpu": "8G", "time": "2:00:00"}}}``:
  the parameter's name and value as ``{params}`` prints them; each block holds keys of this block (not
  ``by`` or ``template``), checked the same way, and goes over the rest for the settings with that value
  (several matching blocks: in the order given). The indices of each distinct set of options are planned
  into arrays of their own (:func:`settingGroups`, :meth:`ExperimentOptions.variant`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from pyexputils.errors import ConfigError, PyExpUtilsError
from pyexputils.runner.backend import Limits
from pyexputils.runner.bundles import CHUNK
from pyexputils.runner.plan import DEFAULT_MAX_TASKS, PlanOptions
from pyexputils.runner.policy import Policy, Resources
from pyexputils.runner.render import sbatchKeys
from pyexputils.runner.resources import parseMemMB, parseMinutes

if TYPE_CHECKING:
    from pyexputils.models import ExperimentDescription

# sbatch options pyexputils sets itself
RESERVED = frozenset({"array", "job_name", "output", "error", "comment", "parsable", "requeue", "no_requeue", "wrap", "signal"})
TIME_KEYS = frozenset({"time", "time_min"})
MEM_KEYS = frozenset({"mem", "mem_per_cpu", "mem_per_gpu"})
COUNT_KEYS = frozenset({"cpus_per_task", "ntasks"})
_UNSAFE = re.compile(r"[\s'\"\\]")  # #SBATCH values are parsed by sbatch, not a shell


def _whole(minimum: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"must be a whole number >= {minimum}")
        return v

    return check


def _factor(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 1 or math.isinf(v):
        raise ValueError("must be a number > 1")
    return float(v)


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isinf(v):
        raise ValueError("must be a number of seconds > 0")
    return float(v)


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _time(v: Any) -> int | None:
    seconds = getattr(v, "total_seconds", None)  # a datetime.timedelta
    if callable(seconds):
        v = f"0:{math.ceil(float(seconds()))}"
    try:
        return parseMinutes(v)
    except PyExpUtilsError as e:
        raise ValueError(str(e)) from None


def _mem(v: Any) -> int:
    try:
        return parseMemMB(v)
    except PyExpUtilsError as e:
        raise ValueError(str(e)) from None


def _runsPerTask(v: Any) -> int | None:
    return None if v in ("auto", None) else _whole(1)(v)


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string")
    return v


OWN: dict[str, Callable[[Any], Any]] = {
    "runs_per_task": _runsPerTask, "parallel": _whole(1), "throttle": _whole(1), "max_tasks": _whole(1),
    "signal_seconds": _whole(1), "grace_s": _seconds, "max_attempts": _whole(1), "max_failed_retries": _whole(0),
    "time_factor": _factor, "mem_factor": _factor, "max_time": _time, "max_mem": _mem,
    "resubmit_cancelled": _flag, "max_array_size": _whole(1), "max_job_count": _whole(1),
    "max_submit_jobs": _whole(1), "template": _text, "test_only": _flag,
}  # fmt: skip
OWN_KEYS = frozenset(OWN)


def _sbatchValue(key: str, v: Any) -> Any:
    """Check one sbatch option's value; returns it as it goes on the ``#SBATCH`` line (False: left out)."""
    if isinstance(v, bool):
        return v
    if not isinstance(v, (str, int, float)):
        raise ValueError(f"must be a single value, got {type(v).__name__}")
    if key in TIME_KEYS:
        _time(v)
    elif key in MEM_KEYS:
        _mem(v)
    elif key in COUNT_KEYS:
        _whole(1)(v)
    if isinstance(v, str) and (not v or _UNSAFE.search(v)):
        raise ValueError("#SBATCH values cannot be empty or hold blanks, quotes or backslashes")
    return v


checkSbatchValue = _sbatchValue  # for the other blocks with sbatch options (the service's `watch` block)


@dataclass(frozen=True)
class ByRule:
    """One block of ``slurm.by``: options for the settings whose ``param`` prints as ``value``."""

    param: str
    value: str
    block: Mapping[str, Any]
    source: str  # the file it came from

    @property
    def label(self) -> str:
        return f"{self.param}={self.value}"


@dataclass(frozen=True)
class ExperimentOptions:
    """Everything the ``slurm`` block says for one experiment, checked."""

    plan: PlanOptions
    policy: Policy
    base: Resources  # the per-run resources of a first attempt
    partition: str | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)  # max_array_size, ... given in the block
    template: str | None = None  # slurm.template, as given (relative to the project)
    where: Mapping[str, str] = field(default_factory=dict)  # key -> the file it came from
    by: tuple[ByRule, ...] = ()
    layers: tuple[tuple[Mapping[str, Any], str], ...] = ()  # what it was parsed from (for :meth:`variant`)
    cli: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""  # the ``by`` blocks it was made with (``hidden=1024``)

    def variant(self, rules: Sequence[ByRule]) -> "ExperimentOptions":
        """The options of the settings ``rules`` match: their blocks over this one's layers, the command
        line over all."""
        if not rules:
            return self
        layers = [*self.layers, *((r.block, r.source) for r in rules)]
        o = parseSlurm(layers, self.cli, nested=True)
        label = ", ".join(r.label for r in rules)
        return replace(o, by=self.by, layers=self.layers, label=label, plan=replace(o.plan, label=label))

    def withLimits(self, limits: Limits) -> Limits:
        """``limits`` (the cluster's) with the block's ``max_*`` keys put over them."""
        if not self.limits:
            return limits
        source = dict(limits.source)
        for key in self.limits:
            source[key] = "config"
        return replace(limits, **self.limits, source=source)

    def withResources(self, res: Resources) -> PlanOptions:
        """The plan options asking ``res`` per run (an escalation after TIMEOUT / OUT_OF_MEMORY)."""
        o = self.plan
        sbatch = dict(o.sbatch)
        mem = o.mem_mb
        if res.mem_key == "mem_per_cpu" and res.mem_mb is not None:
            sbatch["mem_per_cpu"] = f"{res.mem_mb}M"
        elif res.mem_mb is not None:
            mem = res.mem_mb
        return replace(o, time_minutes=res.minutes, mem_mb=mem, sbatch=sbatch)


def parseSlurm(layers: Sequence[tuple[Mapping[str, Any], str]], cli: Mapping[str, Any] | None = None, nested: bool = False) -> ExperimentOptions:  # fmt: skip
    """Merge ``layers`` ((block, file it came from), later over earlier) and the command line's overrides,
    and check every key; ConfigError names the file and the key. ``nested``: the last layers are ``by``
    blocks (already checked)."""
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    for block, source in layers:
        if not isinstance(block, Mapping):
            raise ConfigError(f"{source}: slurm must be a mapping of options, got {block!r}")
        for k, v in block.items():
            merged[str(k)] = v
            where[str(k)] = source
    for k, v in (cli or {}).items():
        if v is not None:
            merged[k], where[k] = v, f"--{k.replace('_', '-')}"
    own: dict[str, Any] = {}
    sbatch: dict[str, Any] = {}
    byBlock = merged.pop("by", None)
    by = () if byBlock is None or nested else _parseBy(byBlock, where["by"])
    for key, value in merged.items():
        _checkKey(key, value, where[key], f"slurm.{key}", own, sbatch)
    plan = PlanOptions(
        runs_per_task=own.get("runs_per_task"),
        parallel=own.get("parallel", 1),
        time_minutes=_time(sbatch["time"]) if "time" in sbatch else None,
        cpus_per_task=int(sbatch.get("cpus_per_task", 1)),
        mem_mb=_mem(sbatch["mem"]) if "mem" in sbatch else None,
        throttle=own.get("throttle"),
        max_tasks=own.get("max_tasks", DEFAULT_MAX_TASKS),
        sbatch={k: v for k, v in sbatch.items() if k not in ("time", "cpus_per_task", "mem")},
        signal_seconds=own.get("signal_seconds"),
        grace_s=own.get("grace_s"),
    )
    policyKeys = ("max_attempts", "max_failed_retries", "time_factor", "mem_factor", "resubmit_cancelled")
    policy = Policy(**{k: own[k] for k in policyKeys if k in own},
                    max_time_minutes=own.get("max_time"), max_mem_mb=own.get("max_mem"))  # fmt: skip
    if "mem" in sbatch:
        base = Resources(plan.time_minutes, plan.mem_mb, "mem")
    else:
        mpc = sbatch.get("mem_per_cpu")
        base = Resources(plan.time_minutes, _mem(mpc) if mpc is not None else None, "mem_per_cpu")
    limits: dict[str, Any] = {k: own[k] for k in ("max_array_size", "max_job_count", "max_submit_jobs") if k in own}
    if own.get("max_time") is not None:
        limits["max_time_minutes"] = own["max_time"]
    partition = sbatch.get("partition")
    return ExperimentOptions(plan, policy, base, None if partition is None else str(partition), limits,
                             own.get("template"), where, by, tuple(layers), dict(cli or {}))  # fmt: skip


def _checkKey(key: str, value: Any, src: str, name: str, own: dict[str, Any], sbatch: dict[str, Any]) -> None:
    """Check one key of a ``slurm`` block (``name``: as the error says it) into ``own`` or ``sbatch``."""
    try:
        if key in RESERVED:
            raise ValueError("is set by pyexputils; remove it")
        if key in OWN:
            own[key] = None if value is None and key == "runs_per_task" else OWN[key](value)
        elif key not in sbatchKeys():
            raise ValueError("is neither an sbatch option nor a pyexputils key")
        elif value is not None:
            checked = _sbatchValue(key, value)
            if checked is not False:
                sbatch[key] = checked
    except ValueError as e:
        text = str(e)
        shown = "" if text.startswith("is ") else f" = {value!r}"
        raise ConfigError(f"{src}: {name}{shown}: {text}" if shown else f"{src}: {name} {text}") from None


BY_REFUSED = frozenset({"by", "template"})


def _parseBy(block: Any, src: str) -> tuple[ByRule, ...]:
    """``slurm.by``: {param: {value: {key: value}}}, every key checked like the block's own."""
    if not isinstance(block, Mapping):
        raise ConfigError(f"{src}: slurm.by must map parameter names to {{value: options}}, got {block!r}")
    rules: list[ByRule] = []
    for param, values in block.items():
        if not isinstance(values, Mapping) or not values:
            raise ConfigError(f"{src}: slurm.by.{param} must map values (as {{params}} prints them) to options, got {values!r}")
        for value, opts in values.items():
            name = f"slurm.by.{param}.{value}"
            if not isinstance(opts, Mapping) or not opts:
                raise ConfigError(f"{src}: {name} must be a mapping of options, got {opts!r}")
            for key, v in opts.items():
                if key in BY_REFUSED:
                    raise ConfigError(f"{src}: {name}.{key} cannot be set per parameter value")
                _checkKey(str(key), v, src, f"{name}.{key}", {}, {})
            rules.append(ByRule(str(param), str(value), dict(opts), src))
    if len(rules) > 62:
        raise ConfigError(f"{src}: slurm.by holds {len(rules)} blocks; at most 62")
    return tuple(rules)


def paramNames(exp: "ExperimentDescription") -> list[str]:
    """The swept parameters' names as ``{params}`` prints them (one per parameter of ``exp.sweep``)."""
    skip = len(exp._paramsRoot())
    return [".".join(f"[{q}]" if isinstance(q, int) else str(q) for q in p.path[skip:]) for p in exp.sweep]


def settingGroups(exp: "ExperimentDescription", rules: Sequence[ByRule], where: str) -> tuple[npt.NDArray[np.integer[Any]], list[tuple[ByRule, ...]]]:  # fmt: skip
    """Which ``by`` rules match each setting: a group number per setting (the narrowest integer type: a byte a
    setting for up to 127 groups, built a chunk of settings at a time) and the rules of each group (in the
    order given; possibly none). ConfigError (naming ``slurm.by.<param>.<value>``) for a parameter or value the
    sweep lacks."""
    names = paramNames(exp)
    sweep = exp.sweep
    checks: list[tuple[int, int, int]] = []  # (stride, radix, the value's position) of each rule
    for r in rules:
        if r.param not in names:
            raise ConfigError(f"{r.source}: slurm.by.{r.param}: {where} sweeps no parameter {r.param!r} "
                              f"(its parameters: {', '.join(names) or 'none'})")  # fmt: skip
        j = names.index(r.param)
        texts = [str(v) for v in sweep.params[j].values]
        if r.value not in texts:
            raise ConfigError(f"{r.source}: slurm.by.{r.param}.{r.value}: {r.param} never takes this value "
                              f"(its values: {', '.join(texts)})")  # fmt: skip
        checks.append((int(sweep.strides[j]), int(sweep.radices[j]), texts.index(r.value)))
    count = sweep.count
    width = next(t for bits, t in ((8, np.uint8), (16, np.uint16), (32, np.uint32), (64, np.uint64)) if len(rules) <= bits)
    code = np.zeros(count, dtype=width)  # bit k: rule k matches
    for a in range(0, count, CHUNK):
        settings = np.arange(a, min(count, a + CHUNK), dtype=np.int64)
        for k, (stride, radix, value) in enumerate(checks):
            code[a : a + len(settings)] |= ((settings // stride) % radix == value).astype(width) << width(k)
    codes = np.unique(code)
    narrow = next(t for most, t in ((127, np.int8), (32767, np.int16), (2**31 - 1, np.int32)) if len(codes) <= most)
    group = np.empty(count, dtype=narrow)
    for a in range(0, count, CHUNK):
        group[a : a + CHUNK] = np.searchsorted(codes, code[a : a + CHUNK])
    return group, [tuple(r for k, r in enumerate(rules) if int(c) >> k & 1) for c in codes.tolist()]
