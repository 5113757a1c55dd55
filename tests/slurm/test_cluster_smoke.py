"""Smoke test of the test cluster itself: plain sbatch/squeue/scontrol/sacct, no project code."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

TASKS = range(10)
TIMEOUT = 120.0
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{shlex.join(cmd)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def poll(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.3)


def array_states(job_id: str) -> dict[str, str]:
    """State of each task of the array that squeue still knows ({} once Slurm has forgotten the job)."""
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%K %T"],
                          capture_output=True, text=True, timeout=60)
    return dict(line.split() for line in done.stdout.splitlines()) if done.returncode == 0 else {}


@pytest.fixture(scope="module")
def array_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 10-task array submitted with plain sbatch, waited for; its job id and output folder."""
    out = tmp_path_factory.mktemp("array")
    script = out / "task.sh"
    script.write_text(f'#!/bin/bash\necho "$SLURM_ARRAY_TASK_ID" > {shlex.quote(str(out))}/"$SLURM_ARRAY_TASK_ID"\n')
    job_id = run("sbatch", "--parsable", f"--array={TASKS[0]}-{TASKS[-1]}", "--job-name=pyx-smoke",
                 f"--output={out}/slurm-%A_%a.out", str(script)).strip()
    assert job_id.isdigit(), job_id
    poll(f"array job {job_id}", lambda: not ACTIVE & set(array_states(job_id).values()))
    return job_id, out


def test_array_runs_every_task(array_job: tuple[str, Path]) -> None:
    job_id, out = array_job
    assert {i: (out / str(i)).read_text() for i in TASKS if (out / str(i)).exists()} == {i: f"{i}\n" for i in TASKS}
    assert set(array_states(job_id).values()) <= {"COMPLETED"}  # those squeue still lists


def test_jobcomp_records_every_task(slurm_cluster, array_job: tuple[str, Path]) -> None:
    if slurm_cluster.jobcomp is None:
        pytest.skip("this cluster writes no jobcomp file")
    job_id, _ = array_job

    def records() -> dict[str, str]:
        text = slurm_cluster.jobcomp.read_text() if slurm_cluster.jobcomp.exists() else ""
        fields = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines()]
        return {f["ArrayTaskId"]: f["JobState"] for f in fields if f.get("ArrayJobId") == job_id}

    poll("jobcomp records", lambda: len(records()) == len(TASKS), timeout=30)
    assert records() == {str(i): "COMPLETED" for i in TASKS}


def test_max_array_size() -> None:
    config = run("scontrol", "show", "config")
    assert any(line.split() == ["MaxArraySize", "=", "10001"] for line in config.splitlines()), config


def test_sacct_lists_array_completed(slurm_cluster, array_job: tuple[str, Path]) -> None:
    if not slurm_cluster.accounting:
        if os.environ.get("PYX_SLURM_ACCOUNTING") == "1":
            pytest.fail("PYX_SLURM_ACCOUNTING=1 but sacct does not work on this cluster")
        pytest.skip("no accounting (sacct) on this cluster: run with PYX_SLURM_ACCOUNTING=1")
    job_id, _ = array_job

    def rows() -> dict[str, str]:
        out = run("sacct", "-P", "-n", "-X", "-j", job_id, "-o", "JobID,State")
        return dict(line.split("|", 1) for line in out.splitlines())

    poll("sacct records", lambda: len(rows()) == len(TASKS) and set(rows().values()) == {"COMPLETED"}, timeout=30)
    assert rows() == {f"{job_id}_{i}": "COMPLETED" for i in TASKS}
