"""runner.durations: per-setting measurements folded once from the runner's status files, bounded in size."""
from __future__ import annotations

import json
import os
from pathlib import Path

from pyexputils.runner.durations import RING, Durations, SubmissionInfo
from pyexputils.runner.policy import Measure
from pyexputils.runner.statedir import StateDir


def writeTask(state: StateDir, tag: str, task: int, runs: list[tuple[int, str, float, float | None]], end: bool = True) -> None:
    folder = Path(state.statusOf(tag))
    folder.mkdir(parents=True, exist_ok=True)
    t = 1000.0
    lines = [{"event": "task_start", "time": t, "parallel": 1, "indices": [i for i, *_ in runs]}]
    for index, cause, seconds, mem in runs:
        t += seconds
        e = {"event": "end", "time": t, "index": index, "cause": cause, "seconds": seconds}
        if mem is not None:
            e["maxrss_mb"] = mem
        lines.append(e)
    if end:
        lines.append({"event": "task_end", "time": t + 1})
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def sub(tag: str, size: int = 2) -> SubmissionInfo:
    return SubmissionInfo(tag, "77", size, {"time": "0:10:00", "cpus_per_task": 2, "mem": "1000M"})


def test_fold_once_save_load_and_measure(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    writeTask(state, "a-1", 0, [(0, "COMPLETED", 10.0, 100.0), (4, "COMPLETED", 12.0, 150.0), (1, "TIMEOUT", 30.0, None)])
    writeTask(state, "a-1", 1, [(2, "COMPLETED", 40.0, None)], end=False)  # still running
    d = Durations.load(state, "/p/e.json", 4)
    d.refresh(state, [sub("a-1")], live={"77"})
    assert d.changed and int(d.n[0]) == 2 and int(d.n[2]) == 0  # the unfinished task waits
    d.refresh(state, [sub("a-1")], live={"77"})
    assert int(d.n[0]) == 2  # folded once
    d.save()
    again = Durations.load(state, "/p/e.json", 4)
    assert int(again.n[0]) == 2 and again.arrays["a-1"]["folded"] == "0"
    again.refresh(state, [sub("a-1")], live=set())  # the job left the queue: the rest is folded, closed
    assert int(again.n[2]) == 1 and again.arrays["a-1"]["closed"]
    m = again.measured()
    assert m is not None and m.perSetting[0].mean == 11.0 and m.perSetting[2].mean == 40.0
    assert m.perSetting[1].mean == 60.0  # only a TIMEOUT at 30 s: at least twice that
    assert again.measure(4) == Measure(m.perSetting[0].p95, 150.0)
    (row,) = again.efficiency()
    assert row["tasks_ended"] == 2 and row["timeouts"] == 1 and row["time_requested_min"] == 10.0
    assert row["cpus"] == 2.0 and row["mem_requested_mb"] == 1000.0 and row["mem_efficiency"] == 0.15
    assert 0 < row["time_efficiency"] < 1
    assert Durations.load(state, "/p/e.json", 5).measured() is None  # another sweep shape: afresh


def test_size_is_per_setting_not_per_run(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    d = Durations.load(state, "/p/e.json", 3)
    for k in range(10_000):
        d.add(k, "COMPLETED", float(k % 7 + 1))
    d.save()
    assert os.path.getsize(d.path) < 4096
    assert d.ring.shape == (3, RING)
    m = d.measured()
    assert m is not None and m.overall is not None and 1 <= m.overall.mean <= 7


def test_unreadable_file_starts_afresh(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    path = Path(state.durations("/p/e.json"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip")
    assert Durations.load(state, "/p/e.json", 2).measured() is None
