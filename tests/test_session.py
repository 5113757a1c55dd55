"""Session pieces without a scheduler: what a planned job carries for escalated resources, tag slugs."""
from __future__ import annotations

import json
from pathlib import Path

from pyexputils.models import loadConfig
from pyexputils.runner.backend import Backend, JobSpec, Limits, LiveTask
from pyexputils.runner.policy import Resources
from pyexputils.runner.session import Batch, Session, tagSlug


class NoQueue(Backend):
    name = "none"

    def limits(self, partition: str | None = None) -> Limits:
        return Limits(max_time_minutes=600)

    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        raise AssertionError("not sent")

    def query(self) -> list[LiveTask]:
        return []

    def cancel(self, job_ids: object) -> None:
        pass


def project(root: Path) -> Session:
    (root / "config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00", "mem": "1G", "runs_per_task": 2}}))
    (root / "experiments").mkdir()
    (root / "experiments" / "a.json").write_text(json.dumps({"metaParameters": {"v": [1, 2, 3, 4]}}))
    return Session(loadConfig(str(root)), NoQueue())


def test_an_escalated_batch_carries_its_resources_into_script_and_manifest(tmp_path: Path) -> None:
    s = project(tmp_path)
    sweep = s.load([str(tmp_path / "experiments" / "a.json")], command=True)[0]
    planned = s.plan([Batch(sweep, [0, 1], sweep.options.base), Batch(sweep, [2, 3], Resources(20, 2048, "mem"))])
    (first, r1, _), (second, r2, _) = planned.jobs
    assert (r1, r2) == (Resources(10, 1024, "mem"), Resources(20, 2048, "mem"))
    assert first.manifest.time_limit_s == 600 and second.manifest.time_limit_s == 1200  # the runner's per-run limit
    assert first.options["time"] == "0:20:00" and second.options["time"] == "0:40:00"  # 2 runs per task
    assert first.options["mem"] == "1024M" and second.options["mem"] == "2048M"
    assert first.manifest.status_dir == s.state.status and first.manifest_path == s.state.manifest(first.tag)
    assert tagSlug(first.tag) == sweep.slug == "a"


def test_tag_slug() -> None:
    assert tagSlug("MountainCar-v0-sarsa-20240101120000ab12-3") == "MountainCar-v0-sarsa"
    assert tagSlug("a-lost-0") is None
