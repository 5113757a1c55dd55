"""runner.options: the slurm block parsed and checked once, the same for submit, dry-run and watch."""
from __future__ import annotations

from typing import Any

import pytest

from pyexputils.errors import ConfigError
from pyexputils.runner.backend import Limits
from pyexputils.runner.options import OWN_KEYS, parseSlurm
from pyexputils.runner.policy import Resources


def parse(block: dict[str, Any], exp: dict[str, Any] | None = None, cli: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    layers = [(block, "config.json")] + ([(exp, "experiments/a.json")] if exp is not None else [])
    return parseSlurm(layers, cli)


def test_a_full_block() -> None:
    o = parse({"time": "2:59:59", "runs_per_task": 4, "parallel": 2, "mem": "2G", "partition": "x", "account": "def-me",
               "max_attempts": 7, "max_failed_retries": 0, "time_factor": 1.5, "max_time": "4:00:00", "max_mem": "8G",
               "max_array_size": 11, "resubmit_cancelled": True, "exclusive": True, "mail_user": None})  # fmt: skip
    assert (o.plan.time_minutes, o.plan.runs_per_task, o.plan.parallel, o.plan.mem_mb) == (180, 4, 2, 2048)
    assert dict(o.plan.sbatch) == {"partition": "x", "account": "def-me", "exclusive": True}
    p = o.policy
    assert (p.max_attempts, p.max_failed_retries, p.time_factor, p.max_time_minutes, p.max_mem_mb, p.resubmit_cancelled) == (7, 0, 1.5, 240, 8192, True)
    assert o.base == Resources(180, 2048, "mem") and o.partition == "x"
    lim = o.withLimits(Limits(max_array_size=1001, max_job_count=5000, source={"max_array_size": "scontrol"}))
    assert (lim.max_array_size, lim.max_job_count, lim.max_time_minutes) == (11, 5000, 240)
    assert lim.source["max_array_size"] == "config"


def test_experiment_block_over_config_and_cli_over_both() -> None:
    o = parse({"time": "0:10:00", "mem_per_cpu": "1G", "runs_per_task": 2}, {"time": "0:20:00"}, {"runs_per_task": 5, "parallel": None})
    assert (o.plan.time_minutes, o.plan.runs_per_task) == (20, 5)
    assert o.base == Resources(20, 1024, "mem_per_cpu")
    assert o.where["time"] == "experiments/a.json" and o.where["mem_per_cpu"] == "config.json" and o.where["runs_per_task"] == "--runs-per-task"
    assert parse({"runs_per_task": "auto"}).plan.runs_per_task is None


@pytest.mark.parametrize(
    "block, message",
    [
        ({"mem_per_cpu": "banana"}, r"config\.json: slurm\.mem_per_cpu = 'banana': memory 'banana'"),
        ({"mem": "0"}, r"slurm\.mem = '0'"),
        ({"time": "soon"}, r"slurm\.time = 'soon': time 'soon'"),
        ({"time_min": "x"}, r"slurm\.time_min"),
        ({"cpus_per_task": 0}, r"slurm\.cpus_per_task = 0: must be a whole number >= 1"),
        ({"max_attempts": -1}, r"slurm\.max_attempts = -1: must be a whole number >= 1"),
        ({"max_attempts": 0}, r"slurm\.max_attempts"),
        ({"max_failed_retries": -1}, r"slurm\.max_failed_retries = -1: must be a whole number >= 0"),
        ({"time_factor": "x"}, r"slurm\.time_factor = 'x': must be a number > 1"),
        ({"mem_factor": 1}, r"slurm\.mem_factor = 1: must be a number > 1"),
        ({"resubmit_cancelled": "yes"}, r"slurm\.resubmit_cancelled = 'yes': must be true or false"),
        ({"parallel": 0}, r"config\.json: slurm\.parallel"),
        ({"runs_per_task": "some"}, r"slurm\.runs_per_task"),
        ({"grace_s": 0}, r"slurm\.grace_s"),
        ({"array": "0-3"}, r"config\.json: slurm\.array is set by pyexputils; remove it"),
        ({"signal": "B:USR1@10"}, r"slurm\.signal is set by pyexputils"),
        ({"partitoin": "x"}, r"config\.json: slurm\.partitoin is neither an sbatch option nor a pyexputils key"),
        ({"account": "my account"}, r"slurm\.account = 'my account': #SBATCH values cannot"),
        ({"account": ""}, r"slurm\.account = ''"),
        ({"constraint": ["a", "b"]}, r"slurm\.constraint = \['a', 'b'\]: must be a single value"),
        ({"max_time": "soon"}, r"slurm\.max_time"),
        ({"template": 3}, r"slurm\.template = 3: must be a non-empty string"),
    ],
)
def test_bad_values_name_the_file_and_the_key(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        parse(block)
    assert "\n" not in str(e.value)


def test_an_error_in_the_experiment_block_names_the_experiment_file() -> None:
    with pytest.raises(ConfigError, match=r"^experiments/a\.json: slurm\.mem_per_cpu = 'lots'"):
        parse({"mem_per_cpu": "1G"}, {"mem_per_cpu": "lots"})
    with pytest.raises(ConfigError, match=r"^experiments/a\.json: slurm must be a mapping"):
        parse({}, ["time"])  # type: ignore[arg-type]


def test_every_own_key_is_checked() -> None:
    """Each of pyexputils' own keys refuses a value of the wrong kind (a dict is never right)."""
    for key in OWN_KEYS:
        with pytest.raises(ConfigError, match=f"slurm\\.{key}"):
            parse({key: {"a": 1}})


def test_false_leaves_a_flag_out() -> None:
    assert "exclusive" not in parse({"exclusive": False}).plan.sbatch


def test_by_blocks_go_over_the_rest_and_the_command_line_over_them() -> None:
    o = parse({"time": "0:10:00", "mem": "1G", "runs_per_task": 4, "by": {"hidden": {"1024": {"mem": "8G", "time": "2:00:00", "runs_per_task": 1}}}},
              cli={"throttle": 3})  # fmt: skip
    (rule,) = o.by
    assert (rule.param, rule.value, rule.label) == ("hidden", "1024", "hidden=1024")
    v = o.variant([rule])
    assert v.base == Resources(120, 8192, "mem") and v.plan.runs_per_task == 1 and v.plan.throttle == 3
    assert v.plan.label == "hidden=1024" and v.by == o.by
    assert o.variant([]) is o
    with pytest.raises(ConfigError, match=r"experiments/a\.json: slurm\.by\.hidden\.64\.time = 'x'"):
        parse({}, {"by": {"hidden": {"64": {"time": "x"}}}})
