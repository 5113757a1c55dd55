"""Big sweeps, the submit side: planning, rendering and sending (manifests, ledger) cost a bounded number of
bytes per index (tracemalloc peak at two sizes, no timing)."""
from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pyexputils.models import config as configModule
from pyexputils.runner import session
from pyexputils.runner.bundles import Bundles
from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.fake import FakeBackend
from pyexputils.runner.judge import State
from pyexputils.runner.backend import Limits
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.plan import PlanOptions, Request, RunTime, SettingTimes, TimeTable, plan
from pyexputils.runner.planfit import Measured, RunTimes, fit


def project(root: Path, settings: int, slurm: dict[str, object] | None = None) -> None:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00", **(slurm or {})}}))
    (root / "experiments").mkdir()
    (root / "experiments" / "e.json").write_text(json.dumps({"metaParameters": {"a": list(range(settings // 100)), "b": list(range(100))}}))
    configModule._cached.clear()


def peaks(root: Path, settings: int, runs: int, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """tracemalloc's peak per index of a fresh sweep's dry run (plan and render every script), and of its real
    submit over the fake backend (manifests and ledger written)."""
    sub = root / f"p{settings}"
    project(sub, settings)
    monkeypatch.chdir(sub)
    n = settings * runs
    s = session.Session(backend=FakeBackend())
    sweeps = s.load(["experiments/e.json"], runs, command=True)
    tracemalloc.start()
    dry = s.round(None, sweeps, send=False)
    scripts = sum(len(job.script) for job, _, _ in dry.planned.jobs) if dry.planned else 0
    _, dryPeak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert scripts and dry.planned is not None and dry.planned.plan.runs == n
    del dry
    tracemalloc.start()
    with s.openLedger() as led:
        r = s.round(led, sweeps)
    _, sendPeak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.sent is not None and sum(job.manifest.tasks.runs for job, _ in r.sent.submitted) == n  # type: ignore[attr-defined]
    return dryPeak / n, sendPeak / n


def test_submit_memory_per_index_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = peaks(tmp_path, 20_000, 10, monkeypatch)
    large = peaks(tmp_path, 200_000, 10, monkeypatch)
    for what, a, b in zip(("dry run", "submit"), small, large):
        assert b <= 16, f"{what}: {b:.1f} bytes per index"  # ranges and arrays, no object per index
        assert b <= a * 1.5, (what, a, b)  # the fixed part fades: no cost per index that grows


def test_a_big_submission_is_a_few_rows_and_a_small_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project(tmp_path / "p", 1_000, {"runs_per_task": 100})
    monkeypatch.chdir(tmp_path / "p")
    fake = FakeBackend()
    s = session.Session(backend=fake)
    sweeps = s.load(["experiments/e.json"], 100, command=True)
    with s.openLedger() as led:
        r = s.round(led, sweeps)
        assert r.sent is not None and len(r.sent.submitted) == 1
        job, _ = r.sent.submitted[0]
        assert os.path.getsize(job.manifest_path) < 2000
        m = Manifest.read(job.manifest_path)
        assert isinstance(m.tasks, Bundles) and len(m.tasks) == 1000 and m.tasks[3] == list(range(300, 400))
        assert len(led.attempts(sweeps[0].path)) == 10**5 and led.tasksOf(job.tag) is not None
        rows = led._rows("SELECT COUNT(*) AS k FROM attempt_ranges")
        assert rows[0]["k"] == 1
        # a few indices end failed (retried), the rest completed but nothing is on disk: the next submit sends
        # them all again, at attempt 2
        path = sweeps[0].path
        led.addVerdicts(path, [(i, 1, Verdict(Cause.FAILED if i % 1000 == 1 else Cause.COMPLETED, True, i % 2)) for i in range(10**5)])
        fake.jobs.clear()
        again = s.round(led, sweeps)
        assert again.standings[0].counts()[State.RETRY] == 100
        assert again.sent is not None and all(job.manifest.attempt == 2 for job, _ in again.sent.submitted)
        latest = led.latest(path)
        assert {latest[i].attempt for i in (0, 1, 99_999)} == {2}
        assert sum(job.manifest.tasks.runs for job, _ in again.sent.submitted) == 10**5  # type: ignore[attr-defined]


def fittedPeak(n: int) -> float:
    """tracemalloc's peak per index of fitting ``n`` indices to measured run times (two classes of settings)
    and planning them."""
    settings = 100
    m = Measured(settings, {s: RunTime(5 + s % 7, 1, 8 + s % 7) for s in range(settings)}, RunTime(6, 1, 9))
    tracemalloc.start()
    requests, _ = fit([Request("e", range(n), PlanOptions(time_minutes=10))], {"e": m}, 600)
    p = plan(requests, Limits(max_time_minutes=600, max_array_size=1001))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(requests) == 2 and p.runs == n and all(isinstance(r.times, SettingTimes) for r in requests)
    return peak / n


def test_a_fitted_plan_costs_a_bounded_number_of_bytes_per_index() -> None:
    small, large = fittedPeak(200_000), fittedPeak(2_000_000)
    assert large <= 16, f"{large:.1f} bytes per index"  # no RunTime per index: run times by setting, as arrays
    assert large <= small * 1.5, (small, large)


def measuredPeak(settings: int) -> float:
    """tracemalloc's peak per setting of fitting and planning one run of each of ``settings`` settings, every
    one measured (three classes of run time), their run times as arrays (what Durations.measured gives)."""
    k = np.arange(settings, dtype=np.int64)
    mean = 2.0 * 3.0 ** (k % 3)
    m = Measured(settings, RunTimes(TimeTable(k, mean, mean * 0.1, mean * 1.2)), RunTime(6, 1, 9))
    tracemalloc.start()
    requests, _ = fit([Request("e", range(settings), PlanOptions(time_minutes=10))], {"e": m}, 600)
    p = plan(requests, Limits(max_time_minutes=600, max_array_size=1001))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(requests) == 3 and p.runs == settings
    return peak / settings


def test_planning_many_measured_settings_holds_arrays_not_a_runtime_each() -> None:
    small, large = measuredPeak(20_000), measuredPeak(200_000)
    assert large <= 48, f"{large:.1f} bytes per setting"  # a few arrays of the settings (was ~200 with a dict)
    assert large <= small * 1.5, (small, large)
