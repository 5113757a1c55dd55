"""Resources that fit the runs, through the command line over the fake backend: ``slurm.by`` (one array per
distinct set of options, checked like the block), bundles fitted after a first pass, the cost in
``--dry-run`` and ``status --efficiency``."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from pyexputils.display import costTable, efficiencyTable
from pyexputils.runner.fake import FakeBackend
from pyexputils.runner.plan import ArrayPlan
from test_render import golden
from test_session_fake import A, Project, fastDir, makeProject


@pytest.fixture
def proj(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    with fastDir() as tmp:
        root = Path(tmp)
        makeProject(root, a=[0.1, 0.2, 0.3, 0.4])
        yield Project(root, FakeBackend(), capsys, monkeypatch)


def setSlurm(p: Project, **slurm: Any) -> None:
    cfg = json.loads((p.root / "config.json").read_text())
    cfg["slurm"].update(slurm)
    (p.root / "config.json").write_text(json.dumps(cfg))


def test_by_parameter_value_gets_its_own_array_and_resources(proj: Project) -> None:
    setSlurm(proj, by={"alpha": {"0.3": {"mem": "4G", "time": "0:30:00"}, "0.4": {"mem": "4G", "time": "0:30:00"}}})
    dry = proj.ok("submit", A, "--dry-run").out
    assert "alpha=0.3" in dry and "alpha=0.4" in dry and "4096M" in dry
    proj.ok("submit", A)
    specs = {tuple(i for t in j.spec.manifest.tasks for i in t): (j.spec.options["time"], j.spec.options["mem"])
             for j in proj.fake.jobs.values() if j.spec is not None}  # fmt: skip
    assert specs == {(0, 1): ("0:10:00", "1024M"), (2,): ("0:30:00", "4096M"), (3,): ("0:30:00", "4096M")}
    # a TIMEOUT escalates from the value's own time
    t = proj.task(2)
    proj.fake.end(t.job.id, t.task, "TIMEOUT")
    w = proj.watchOnce()
    assert {e["indices"]: e.get("time_limit") for e in w.events("submitted")} == {"2": "1:00:00"}


@pytest.mark.parametrize(
    "by, message",
    [
        ({"gamma": {"1": {"mem": "1G"}}}, r"config\.json: slurm\.by\.gamma: .* sweeps no parameter 'gamma' \(its parameters: alpha\)"),
        ({"alpha": {"0.9": {"mem": "1G"}}}, r"config\.json: slurm\.by\.alpha\.0\.9: alpha never takes this value \(its values: 0\.1, 0\.2, 0\.3, 0\.4\)"),
        ({"alpha": {"0.3": {"mem": "lots"}}}, r"config\.json: slurm\.by\.alpha\.0\.3\.mem = 'lots': memory 'lots'"),
        ({"alpha": {"0.3": {"array": "0-3"}}}, r"config\.json: slurm\.by\.alpha\.0\.3\.array is set by pyexputils"),
        ({"alpha": {"0.3": {"by": {}}}}, r"config\.json: slurm\.by\.alpha\.0\.3\.by cannot be set per parameter value"),
        ({"alpha": {"0.3": "4G"}}, r"config\.json: slurm\.by\.alpha\.0\.3 must be a mapping of options"),
        ({"alpha": []}, r"config\.json: slurm\.by\.alpha must map values"),
        (["alpha"], r"config\.json: slurm\.by must map parameter names"),
    ],
)
def test_bad_by_blocks_name_file_and_key(proj: Project, by: Any, message: str) -> None:
    setSlurm(proj, by=by)
    got = proj.cli("submit", A, "--dry-run")
    assert got.code == 2 and "Traceback" not in got.err
    assert re.search(message, got.err), got.err


def test_a_second_pass_is_fitted_and_says_what_it_costs(proj: Project) -> None:
    setSlurm(proj, runs_per_task="auto")
    proj.ok("submit", A, "--runs", "30")
    assert "predicted" not in proj.ok("submit", A, "--dry-run").out  # nothing measured yet
    proj.fake.completeAll()
    shutil.rmtree(proj.root / "results" / "a")
    eff = proj.status(A, "--efficiency")
    # not measured: auto bundles to a task per CPU of the fake's 4: 4 tasks of 30 runs of 10 min
    assert eff["efficiency_total"]["timeouts"] == 0 and eff["efficiency"][0]["tasks"] == 4
    assert eff["efficiency"][0]["time_requested_min"] == 300
    assert eff["efficiency"][0]["tasks_ended"] == eff["efficiency"][0]["tasks"]
    text = proj.ok("status", A, "--efficiency").out
    assert "efficiency per array" in text and "core-h used" in text
    dry = proj.ok("submit", A, "--dry-run").out
    assert "fitted to measured run times: 120 runs" in dry
    # 1 s runs: bundled to fill whole minutes (40 per task: 0.8 of a minute), not 120 tasks of 10 min
    m = re.search(r"fitted to measured run times: 120 runs in 1 arrays, ([\d.]+) core-hours asked, ([\d.]+) predicted", dry)
    assert m is not None and float(m.group(1)) == 0.05 and float(m.group(2)) / float(m.group(1)) >= 0.6, dry
    assert "3         40          1     1024M    0:01:00             40s" in dry
    (job,) = json.loads(proj.ok("submit", A, "--dry-run", "--json").out)["jobs"]
    assert (job["settings"], job["runs_per_task"], job["tasks"], job["core_hours"]) == ("~1 s/run", 40, 3, 0.05)
    assert job["predicted_task_s"] == 40.0 and 0.6 * 0.05 <= job["core_hours_predicted"] <= 0.05


def test_cost_table_golden() -> None:
    arrays = [
        ("sarsa-20240101120000ab12-0", ArrayPlan("e", [[0, 1], [2, 3]], 2, 1, 20, 2, 2048, None, {}, "alpha=0.1, ~8 s/run", 30.5, 0.6)),
        ("sarsa-20240101120000ab12-1", ArrayPlan("e", [[4]], 1, 1, 180, 1, None, None, {"mem_per_cpu": "4G"})),
        ("sarsa-20240101120000ab12-2", ArrayPlan("e", [[5, 6, 7]], 3, 3, None, 3, None, None, {}, "not measured")),
    ]
    rows = [{"tag": "sarsa-20240101120000ab12-0", "job": "7", "tasks": 4, "tasks_ended": 3, "runs": 9, "completed": 8,
             "timeouts": 1, "cpus": 2.0, "time_requested_min": 20.0, "task_seconds_used": 2700.0,
             "core_hours_requested": 2.0, "core_hours_used": 1.5, "time_efficiency": 0.75, "mem_requested_mb": 2048.0,
             "mem_max_mb": 900.0, "mem_efficiency": 0.4395, "closed": True}]  # fmt: skip
    golden("cost.txt", costTable(arrays) + "\n\n" + efficiencyTable(rows) + "\n")
