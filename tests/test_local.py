"""The local backend: the in-job runner in a process pool, with time limits, query and cancel."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config
import pyexputils.runner.local as local
from pyexputils.runner.backend import JobSpec, SubmitRejected
from pyexputils.runner.local import Job, LocalBackend, Pool, defaultWorkers, taskStates
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.status import outcomes
from test_task import Project


def spec(p: Project, m: Manifest, minutes: int | None = None) -> JobSpec:
    path = str(p.root / "manifest.json")
    return JobSpec(tag=m.tag, manifest_path=path, manifest=m, array_size=len(m.tasks), script="", options={},
                   time_limit_minutes=minutes)  # fmt: skip


def statusFiles(p: Project, m: Manifest) -> list[str]:
    return [str(p.root / "status" / m.tag / f"{t}.jsonl") for t in range(len(m.tasks))]


def test_submit_and_finish_runs_every_task(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "nap0.3"])
    m = p.manifest([[0, 1], [2, 3], [4, 5]])
    progress = io.StringIO()
    backend = LocalBackend(workers=2, state_dir=str(tmp_path / "state"), progress=progress)
    assert backend.submit(spec(p, m)) == "local-t1"
    assert not (tmp_path / "status").exists()  # queued only
    backend.finish()
    outs = outcomes(statusFiles(p, m))
    assert {i: o.state for i, o in outs.items()} == {i: "COMPLETED" for i in range(6)}
    assert {o.job for o in outs.values()} == {"local-t1"}
    assert progress.getvalue().splitlines()[-1] == "[local] 3/3 tasks ended; indices: 6 COMPLETED"
    assert taskStates(m, alive=False) == {0: "COMPLETED", 1: "COMPLETED", 2: "COMPLETED"}
    assert (tmp_path / ".logs" / "t1" / "task-0.log").exists()
    assert backend.query() == [] and os.listdir(tmp_path / "state" / "local") == []


def test_workers_bound_the_runners_at_once(tmp_path: Path) -> None:
    p = Project(tmp_path, ["nap0.3"])
    m = p.manifest([[0], [1], [2], [3]])
    Pool([Job(str(tmp_path / "manifest.json"), m)], workers=2).run()
    events = sorted((e["time"], e["event"]) for t in range(4) for e in p.events(t) if e["event"] in ("start", "end"))
    live = most = 0
    for _, kind in events:
        live += 1 if kind == "start" else -1
        most = max(most, live)
    assert most == 2


def test_per_index_time_limit_overrun_is_timeout(tmp_path: Path) -> None:
    p = Project(tmp_path, ["stubborn", "ok"])
    m = p.manifest([[0, 1]], time_limit_s=1, grace_s=0.3)
    codes = Pool([Job(str(tmp_path / "manifest.json"), m)], workers=1).run()
    assert codes == {("local-t1", 0): 1}
    outs = outcomes(statusFiles(p, m))
    assert outs[0].state == "TIMEOUT" and outs[1].state == "COMPLETED"


def test_task_time_limit_warns_the_runner_like_slurm(tmp_path: Path) -> None:
    p = Project(tmp_path, ["trap", "ok"])
    m = p.manifest([[0, 1]], grace_s=1)
    t0 = time.time()
    Pool([Job(str(tmp_path / "manifest.json"), m, time_limit_s=1.0)], workers=1).run()
    assert time.time() - t0 < 20  # the trap run sleeps 60 s: it was stopped
    outs = outcomes(statusFiles(p, m))
    assert outs[0].state == "TIMEOUT" and outs[1].state == "TIMEOUT" and not outs[1].started
    assert (tmp_path / "results" / "mode-trap" / "0" / "checkpoint").exists()  # the run got its SIGTERM
    assert taskStates(m, alive=False) == {0: "TIMEOUT"}


def test_runner_that_ignores_the_warning_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Project(tmp_path, ["ok"])
    m = p.manifest([[0]], grace_s=0.2)
    monkeypatch.setattr(local, "KILL_AFTER_S", 0.2)
    pool = Pool([Job(str(tmp_path / "manifest.json"), m, time_limit_s=0.5)], workers=1)
    # a stand-in for a runner that ignores SIGUSR1 and SIGTERM
    deaf = "import signal, time; [signal.signal(s, signal.SIG_IGN) for s in (10, 15)]; time.sleep(60)"
    monkeypatch.setattr(pool, "_start", lambda job, task: subprocess.Popen([sys.executable, "-c", deaf]))
    t0 = time.time()
    assert pool.run() == {("local-t1", 0): -signal.SIGKILL}
    assert time.time() - t0 < 20  # the deaf runner sleeps 60 s: it was killed


def test_detached_pool_query_and_cancel(tmp_path: Path) -> None:
    p = Project(tmp_path, ["sleep"])
    m = p.manifest([[0], [1], [2]])
    backend = LocalBackend(workers=1, state_dir=str(tmp_path / "state"), detach=True)
    job = backend.submit(spec(p, m))
    backend.finish()  # returns at once
    p.waitFor("start", task=0)
    live = {(t.job_id, t.task): t.state for t in backend.query()}
    assert live == {(job, 0): "RUNNING", (job, 1): "PENDING", (job, 2): "PENDING"}
    backend.cancel([job])
    stop = time.time() + 10
    while backend.query() and time.time() < stop:
        time.sleep(0.05)
    assert backend.query() == []
    assert taskStates(m, alive=False) == {0: "CANCELLED", 1: "CANCELLED", 2: "CANCELLED"}
    outs = outcomes(statusFiles(p, m))
    assert outs[0].state == "CANCELLED" and outs[0].started and outs[2].state == "CANCELLED" and not outs[2].started


def test_submit_checks_the_spec(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok"])
    m = p.manifest([[0], [1]])
    backend = LocalBackend(workers=1, state_dir=str(tmp_path / "state"))
    bad = JobSpec(tag="t1", manifest_path=str(tmp_path / "manifest.json"), manifest=m, array_size=3, script="",
                  options={}, time_limit_minutes=None)  # fmt: skip
    with pytest.raises(SubmitRejected):
        backend.submit(bad)
    assert backend.submit(spec(p, m), test_only=True) == ""
    backend.finish()  # nothing queued
    assert not (tmp_path / "status").exists()


def test_workers_from_config(tmp_path: Path) -> None:
    assert defaultWorkers({"workers": 3}) == 3
    assert defaultWorkers({}) >= 1
    with pytest.raises(PyExpUtilsError, match="local.workers"):
        defaultWorkers({"workers": 0}, "config.json")
    config = Config(local={"workers": 5}, path=str(tmp_path / "config.json"), save_path="res/{params}/{run}")
    backend = LocalBackend.fromConfig(config)
    assert backend.workers == 5 and backend.registry.folder == str(tmp_path / "res" / ".pyexputils" / "local")
    assert backend.limits().cpus == 5
    with pytest.raises(PyExpUtilsError, match="local.wrkers"):
        LocalBackend.fromConfig(Config(local={"wrkers": 5}))
