"""runner.render: golden scripts, option checks, tags."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyexputils.errors import ConfigError
from pyexputils.runner.backend import Limits
from pyexputils.runner.options import parseSlurm
from pyexputils.runner.plan import PlanOptions, Request, plan
from pyexputils.runner.render import (
    checkLogPath,
    arraySpec,
    checkTemplate,
    makeTag,
    outputPath,
    renderScript,
    sbatchOptions,
    signalSeconds,
    slug,
)

GOLDEN = Path(__file__).parent / "golden"
TEMPLATE = (Path(__file__).parent.parent / "pyexputils" / "templates" / "sbatch.sh").read_text()


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("PYX_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; PYX_UPDATE_GOLDEN=1 rewrites it"


def render(slurm: dict, n: int = 100, limits: Limits = Limits(), tag: str = "sarsa-20240101120000ab12-0") -> str:
    a = plan([Request("/p/experiments/sarsa.json", range(n), parseSlurm([(slurm, 'config.json')]).plan)], limits).arrays[0]
    opts = sbatchOptions(a, tag, outputPath("/p/.logs", tag, "/p"))
    return renderScript(TEMPLATE, a, opts, tag, f"/p/results/.pyexputils/manifests/{tag}.json", "/p", "/venv/bin/python", "/p/experiments/sarsa.json")


def test_golden_basic() -> None:
    golden("basic.sh", render({"time": "2:59:59", "mem_per_cpu": "2G", "account": "def-me"}))


def test_golden_bundled_parallel_throttled() -> None:
    s = render({"time": 10, "runs_per_task": 8, "parallel": 4, "cpus_per_task": 2, "throttle": 5, "partition": "cpu", "mem": "1G"}, n=1000)
    golden("bundled.sh", s)
    assert "#SBATCH --array               0-124%5" in s
    assert "#SBATCH --time                0:20:00" in s  # ceil(8/4) x 10 min
    assert "#SBATCH --cpus-per-task       8" in s and "--mem                 4096M" in s


def test_golden_split_and_hours_in_project_with_blank() -> None:
    a = plan([Request("e", range(30), parseSlurm([({"time": "0:30"}, "config.json")]).plan)], Limits(max_array_size=11)).arrays
    assert [x.size for x in a] == [10, 10, 10]
    out = outputPath("/my project/.logs", "t-1", "/my project")
    assert out == ".logs/t-1/%A_%a.out"
    s = renderScript(TEMPLATE, a[1], sbatchOptions(a[1], "t-1", out), "t-1", "/my project/m.json", "/my project", "/venv/bin/python", "e")
    golden("split.sh", s)
    assert "cd '/my project'" in s and "exec /venv/bin/python -m pyexputils.runner.task '/my project/m.json'" in s


def test_script_lines_are_sbatch_safe() -> None:
    s = render({"time": "1:00:00"})
    for line in s.splitlines():
        if line.startswith("#SBATCH"):
            assert not re.search(r"['\"\\]", line) and len(line.split()) == 3 or line.endswith("--no-requeue")
    assert "--requeue" not in s.replace("--no-requeue", "")


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="slurm.foo_bar is neither"):
        render({"foo_bar": 1})
    with pytest.raises(ConfigError, match="slurm.account"):
        render({"account": "my account"})
    with pytest.raises(ConfigError, match="config.json: log_path '/a b/.logs/t/%A_%a.out'"):
        checkLogPath(outputPath("/a b/.logs", "t", "/c d"), "config.json")
    checkLogPath(outputPath("/a b/.logs", "t", "/a b"), "config.json")  # relative to the project: clean


def test_template_checks() -> None:
    checkTemplate(TEMPLATE, "t")
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{nope\}\}"):
        checkTemplate("{{sbatch}}{{manifest}}{{nope}}", "t.sh")
    with pytest.raises(ConfigError, match="no {{sbatch}}"):
        checkTemplate("{{manifest}}", "t.sh")


def test_signal_and_array_spec() -> None:
    assert signalSeconds(1) == 30 and signalSeconds(180) == 300 and signalSeconds(20) == 120 and signalSeconds(None) == 120
    assert arraySpec(1, None) == "0" and arraySpec(11, 3) == "0-10%3"


@given(st.text(max_size=80))
def test_tags_are_clean(name: str) -> None:
    tag = makeTag(name, "20240101120000ab12", 3)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", tag) and tag.endswith("-3") and len(slug(name)) <= 40
