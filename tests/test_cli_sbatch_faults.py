"""Faults real Slurm cannot produce on demand, injected with fake sbatch/squeue on PATH: transient errors are
retried with backoff (after checking squeue), other errors are reported with sbatch's message."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyexputils.runner import slurm
from pyexputils.runner.backend import BackendError, JobSpec, SubmitRejected
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


def test_squeue_parsing() -> None:
    tasks, count = slurm.parseSqueue("5|0|RUNNING|pyx-a-1|None\n5|1|PENDING|pyx-a-1|Priority\n9|N/A|RUNNING|other|None\n")
    assert count == 3 and [(t.job_id, t.task, t.state, t.tag) for t in tasks] == [("5", 0, "RUNNING", "a-1"), ("5", 1, "PENDING", "a-1")]
    parts = slurm.parsePartitions("PartitionName=a\n   Default=NO MaxTime=1-00:00:00\n\nPartitionName=b\n   Default=YES MaxTime=UNLIMITED\n")
    assert [p["MaxTime"] for p in parts] == ["1-00:00:00", "UNLIMITED"]
