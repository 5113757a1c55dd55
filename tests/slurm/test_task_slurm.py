"""The in-job runner under the real local Slurm: a hand-written sbatch array script that execs it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pyexputils.runner.manifest import Manifest
from pyexputils.runner.status import outcomes, readEvents

pytestmark = pytest.mark.slurm

PROG = r'''
import os, sys, time
save = os.environ["PYX_SAVE_PATH"]
time.sleep(float(sys.argv[1]))
os.makedirs(save, exist_ok=True)
with open(os.path.join(save, "done.txt"), "w") as f:
    f.write(os.environ["PYX_INDEX"] + " " + os.environ.get("SLURM_JOB_ID", ""))
'''


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> None:
    """The project's local Slurm (the ``slurm_cluster`` fixture of tests/conftest.py when there is one)."""
    try:
        request.getfixturevalue("slurm_cluster")
        return
    except pytest.FixtureLookupError:
        pass
    if shutil.which("sbatch") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("no Slurm cluster up (scripts/slurm-cluster up)")


def project(root: Path, naps: list[float], tasks: list[list[int]], **kw: Any) -> Manifest:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({"save_path": "results/{params}/{run}", "require": ["done.txt"]}))
    (root / "exp.json").write_text(json.dumps({"metaParameters": {"nap": naps}}))
    m = Manifest(tag="s1", experiment=str(root / "exp.json"), project=str(root), command="python prog.py {nap}",
                 tasks=tasks, require=["done.txt"], log_dir=str(root / "logs"), status_dir=str(root / "status"), **kw)  # fmt: skip
    m.write(str(root / "manifest.json"))
    (root / "logs").mkdir()
    return m


def submit(root: Path, tasks: int, time_limit: str = "0:05:00", signal_at: int = 30) -> str:
    script = root / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --array=0-{tasks - 1}\n"
        f"#SBATCH --output={root}/logs/%A_%a.out\n"
        f"#SBATCH --time={time_limit}\n"
        f"#SBATCH --signal=B:USR1@{signal_at}\n"
        "#SBATCH --job-name=pyx-task-test\n"
        f"exec {sys.executable} -m pyexputils.runner.task {root}/manifest.json\n"
    )
    out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=True, cwd=root)
    return out.stdout.strip().split(";")[0]


def waitGone(job: str, timeout: float) -> None:
    stop = time.time() + timeout
    while time.time() < stop:
        out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True)
        live = [line for line in out.stdout.splitlines() if line.split()[-1] not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")]
        if out.returncode != 0 or not live:
            return
        time.sleep(0.5)
    subprocess.run(["scancel", job])
    raise AssertionError(f"job {job} still live after {timeout} s")


def events(root: Path, task: int) -> list[dict[str, Any]]:
    return list(readEvents(str(root / "status" / "s1" / f"{task}.jsonl")))


def waitEvent(root: Path, task: int, kind: str, timeout: float) -> None:
    stop = time.time() + timeout
    while time.time() < stop:
        if any(e["event"] == kind for e in events(root, task)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event in task {task}: {events(root, task)}")


def test_array_of_three_tasks_completes_every_index(cluster: None, tmp_path: Path) -> None:
    project(tmp_path, [0.1, 0.2], [[0, 1], [2, 3], [4, 5]], parallel=2)
    job = submit(tmp_path, 3)
    waitGone(job, 120)
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()
    paths = [str(tmp_path / "status" / "s1" / f"{t}.jsonl") for t in range(3)]
    outs = outcomes(paths)
    assert sorted(outs) == list(range(6))
    for i, o in outs.items():
        assert o.state == "COMPLETED" and o.exit == 0 and o.host == host and o.job == job, (i, o)
        assert (tmp_path / "results" / f"nap-{[0.1, 0.2][i % 2]}" / str(i // 2) / "done.txt").exists()
    for t in range(3):
        evs = events(tmp_path, t)
        assert evs[0]["event"] == "task_start" and evs[-1]["event"] == "task_end" and evs[-1]["exit"] == 0
        assert evs[0]["indices"] == [2 * t, 2 * t + 1] and {e["task"] for e in evs} == {t}
    assert sorted(os.listdir(tmp_path / "logs" / "s1")) == sorted(f"{i}.{x}" for i in range(6) for x in ("out", "err"))


def test_scancel_records_cancelled_and_skips_the_rest(cluster: None, tmp_path: Path) -> None:
    project(tmp_path, [30.0, 0.1], [[0, 1, 2, 3]])
    job = submit(tmp_path, 1)
    waitEvent(tmp_path, 0, "start", 60)
    subprocess.run(["scancel", job], check=True)
    waitGone(job, 60)
    waitEvent(tmp_path, 0, "task_end", 10)
    ends = {e["index"]: e for e in events(tmp_path, 0) if e["event"] in ("end", "skip")}
    assert ends[0]["event"] == "end" and ends[0]["cause"] == "CANCELLED" and ends[0]["signal"] == signal.SIGTERM
    assert [ends[i]["event"] for i in (1, 2, 3)] == ["skip"] * 3 and {ends[i]["cause"] for i in (1, 2, 3)} == {"CANCELLED"}


def test_time_limit_warning_records_timeout(cluster: None, tmp_path: Path) -> None:
    """--time=1 with USR1 50 s early: the warning arrives 10-40 s after the start (Slurm's 30 s tick)."""
    project(tmp_path, [300.0, 0.1], [[0, 1]])
    t0 = time.time()
    job = submit(tmp_path, 1, time_limit="1", signal_at=50)
    waitGone(job, 150)
    evs = events(tmp_path, 0)
    stop = [e for e in evs if e["event"] == "stop"]
    assert stop and stop[0]["name"] == "SIGUSR1" and stop[0]["running"] == [0]
    ends = {e["index"]: e for e in evs if e["event"] in ("end", "skip")}
    assert ends[0]["cause"] == "TIMEOUT" and ends[1] == {**ends[1], "event": "skip", "cause": "TIMEOUT"}
    assert evs[-1]["event"] == "task_end" and evs[-1]["cut_off"] is True
    print(f"USR1 after {stop[0]['time'] - t0:.1f} s; task_end after {evs[-1]['time'] - t0:.1f} s")
