"""SlurmBackend.submit when sbatch keeps failing with a transient error (no Slurm needed: a stand-in sbatch on
PATH fails every call, as a controller that does not answer would): after its retries it raises BackendError
(Slurm unreachable: `watch` backs off and tries again), never SubmitRejected (a refusal: `watch` stops)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyexputils.runner import slurm
from pyexputils.runner.backend import BackendError, JobSpec, SubmitRejected
from pyexputils.runner.manifest import Manifest


def job(tmp_path: Path) -> JobSpec:
    m = Manifest(tag="t-0", experiment="e.json", project=str(tmp_path), command="true", tasks=[[0]])
    return JobSpec(tag="t-0", manifest_path=str(tmp_path / "m.json"), manifest=m, array_size=1, script="#!/bin/bash\n",
                   options={}, time_limit_minutes=1, workdir=str(tmp_path))  # fmt: skip


def fake(tmp_path: Path, name: str, stderr: str) -> None:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{stderr}' >&2\nexit 1\n")
    path.chmod(0o755)


@pytest.mark.parametrize("message, error", [
    ("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", BackendError),
    ("sbatch: error: Batch job submission failed: Requested node configuration is not available", SubmitRejected),
])  # fmt: skip
def test_transient_errors_end_as_unreachable_refusals_as_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str, error: type) -> None:
    fake(tmp_path, "sbatch", message)
    fake(tmp_path, "squeue", "squeue: error: Unable to contact slurm controller")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(slurm, "BACKOFF_S", (0.0, 0.0))
    with pytest.raises(BackendError) as e:
        slurm.SlurmBackend().submit(job(tmp_path))
    assert type(e.value) is error
    assert ("still failing after 2 retries" in str(e.value)) == (error is BackendError)
