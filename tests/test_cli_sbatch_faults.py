"""Faults real Slurm cannot produce on demand, injected with fake sbatch/squeue on PATH: transient errors are
retried with backoff (after checking squeue), other errors are reported with sbatch's message."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyexputils.runner import slurm
from pyexputils.runner.backend import BackendError, JobSpec, QueueFull, SubmitRejected
from pyexputils.runner.task import slurmEndLine
from pyexputils.runner.manifest import Manifest


def fake(bin: Path, name: str, body: str) -> None:
    p = bin / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(0o755)


@pytest.fixture
def bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "bin"
    b.mkdir()
    monkeypatch.setenv("PATH", f"{b}:{os.environ['PATH']}")
    monkeypatch.setattr(slurm, "BACKOFF_S", (0.01, 0.01, 0.01))
    fake(b, "squeue", "exit 0\n")
    return b


def job(tmp_path: Path) -> JobSpec:
    m = Manifest(tag="t-1", experiment="/e.json", project=str(tmp_path), command="true", tasks=[[0]])
    return JobSpec("t-1", str(tmp_path / "m.json"), m, 1, "#!/bin/bash\ntrue\n", {}, 1, workdir=str(tmp_path))


def test_transient_errors_are_retried(bin: Path, tmp_path: Path) -> None:
    count = tmp_path / "count"
    fake(bin, "sbatch", f'n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n'
         'if [ "$n" -lt 2 ]; then echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2; exit 1; fi\n'
         'cat > /dev/null; echo "4242;cluster"\n')  # fmt: skip
    assert slurm.SlurmBackend().submit(job(tmp_path)) == "4242"
    assert count.read_text().strip() == "3"


def test_a_job_that_arrived_despite_the_error_is_not_submitted_twice(bin: Path, tmp_path: Path) -> None:
    fake(bin, "sbatch", 'echo "sbatch: error: Resource temporarily unavailable" >&2; exit 1\n')
    fake(bin, "squeue", 'echo "77|0|PENDING|pyx-t-1|None"\n')
    assert slurm.SlurmBackend().submit(job(tmp_path)) == "77"


def test_rejection_carries_sbatch_message(bin: Path, tmp_path: Path) -> None:
    fake(bin, "sbatch", 'echo "sbatch: error: invalid partition specified: nope" >&2; exit 1\n')
    with pytest.raises(SubmitRejected, match="sbatch rejected t-1 .*invalid partition specified: nope"):
        slurm.SlurmBackend().submit(job(tmp_path))


def test_transient_forever_gives_up(bin: Path, tmp_path: Path) -> None:
    fake(bin, "sbatch", 'echo "sbatch: error: Socket timed out on send/recv operation" >&2; exit 1\n')
    with pytest.raises(BackendError):
        slurm.SlurmBackend().submit(job(tmp_path))


def test_squeue_parsing_with_working_directories() -> None:
    tasks, count = slurm.parseSqueue("5|0|RUNNING|pyx-a-1|None|/home/me/proj a|b\n5|1|PENDING|pyx-a-1|Priority|\n")
    assert [(t.task, t.workdir) for t in tasks] == [(0, "/home/me/proj a|b"), (1, None)] and count == 2


def test_squeue_parsing() -> None:
    tasks, count = slurm.parseSqueue("5|0|RUNNING|pyx-a-1|None\n5|1|PENDING|pyx-a-1|Priority\n9|N/A|RUNNING|other|None\n")
    assert count == 3 and [(t.job_id, t.task, t.state, t.tag) for t in tasks] == [("5", 0, "RUNNING", "a-1"), ("5", 1, "PENDING", "a-1")]
    parts = slurm.parsePartitions("PartitionName=a\n   Default=NO MaxTime=1-00:00:00\n\nPartitionName=b\n   Default=YES MaxTime=UNLIMITED\n")
    assert [p["MaxTime"] for p in parts] == ["1-00:00:00", "UNLIMITED"]


def test_sacct_parsing_expands_never_started_tasks() -> None:
    got = slurm.parseSacct("7_0|CANCELLED by 0\n7_[2-4%2]|CANCELLED by 0\n7_[6,8-9]|CANCELLED\n8|TIMEOUT\nbad|x\n")
    assert got == {("7", 0): "CANCELLED", ("7", 2): "CANCELLED", ("7", 3): "CANCELLED", ("7", 4): "CANCELLED",
                   ("7", 6): "CANCELLED", ("7", 8): "CANCELLED", ("7", 9): "CANCELLED", ("8", None): "TIMEOUT"}  # fmt: skip


@pytest.mark.parametrize("message", [
    "sbatch: error: AssocMaxSubmitJobLimit",
    "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)",
    "sbatch: error: QOSMaxSubmitJobPerUserLimit",
])
def test_capacity_refusals_are_queue_full_not_rejections(bin: Path, tmp_path: Path, message: str) -> None:
    fake(bin, "sbatch", f'echo "{message}" >&2; exit 1\n')
    with pytest.raises(QueueFull, match="the cluster takes no more jobs now"):
        slurm.SlurmBackend().submit(job(tmp_path))


def test_slurms_own_line_tells_a_cancel_from_a_preemption() -> None:
    """The lines measured in docs/slurm-evidence.md (the task's stderr file, at SIGTERM)."""
    assert slurmEndLine("slurmstepd-vm: error: *** JOB 11 ON vm CANCELLED AT 2026-11-28T19:52:44 ***\n", "11") == "CANCELLED"
    assert slurmEndLine("*** JOB 19 ON vm CANCELLED AT 2026-11-28T19:38:34 DUE TO PREEMPTION ***", "19") == "PREEMPTED"
    assert slurmEndLine("*** JOB 29 ON vm CANCELLED AT 2026-11-28T19:40:49 DUE TO TIME LIMIT ***", "29") == "TIMEOUT"
    assert slurmEndLine("*** JOB 31 ON vm CANCELLED AT 2026-11-28T19:41:18 DUE TO NODE FAILURE, SEE SLURMCTLD LOG FOR DETAILS ***", "31") == "NODE_FAIL"
    assert slurmEndLine("*** JOB 12 ON vm CANCELLED AT 2026-11-28T19:52:44 ***", "11") is None  # another job's line
    assert slurmEndLine("index 3 printed: CANCELLED AT noon", "11") is None


def test_limits_are_read_for_the_real_user_whatever_USER_says(bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    fake(bin, "sacctmgr", f'echo "$@" > {tmp_path}/args\necho 7\n')
    monkeypatch.setenv("USER", "somebody_else")
    monkeypatch.setenv("LOGNAME", "somebody_else")
    assert slurm.SlurmBackend()._maxSubmit() == 7
    assert f"user={pwd.getpwuid(os.getuid()).pw_name} " in (tmp_path / "args").read_text()
