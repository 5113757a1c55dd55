"""The in-job runner's view of a manifest: plain-Python tasks equal to the planner's, and no NumPy in a job."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.bundles import Bundles
from pyexputils.runner import packed
from pyexputils.runner.manifest import Manifest, TaskRanges

indexLists = st.lists(st.integers(0, 3000), max_size=300, unique=True).map(sorted)


def manifest(tasks: object) -> Manifest:
    return Manifest(tag="t", experiment="/e.json", project="/p", command="true", tasks=tasks)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(indexLists, st.integers(1, 40), st.sampled_from([3, 1 << 16]))
def test_the_runner_reads_every_task_as_the_planner_made_it(tmp_path_factory: pytest.TempPathFactory, idx: list[int], per: int, block: int) -> None:
    """Ranges, or scattered indices packed (version 3, in blocks of any size): the runner's plain-Python
    tasks are the planner's."""
    path = str(tmp_path_factory.mktemp("m") / "m.json")
    planned = Bundles.of(idx, per)
    mp = pytest.MonkeyPatch()
    mp.setattr(packed, "BLOCK", block)
    try:
        manifest(planned).write(path)
    finally:
        mp.undo()
    lean = Manifest.read(path, lean=True).tasks
    assert isinstance(lean, TaskRanges) and isinstance(Manifest.read(path).tasks, Bundles)
    assert len(lean) == len(planned) and lean.runs == len(idx)
    assert [lean[t] for t in range(len(lean))] == [list(t) for t in planned] == [idx[k : k + per] for k in range(0, len(idx), per)]
    if len(lean):
        assert lean[-1] == planned[len(planned) - 1] and lean[0:2] == [list(t) for t in planned][0:2]


def test_a_version_2_manifest_of_scattered_indices_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    manifest([[0]]).write(str(path))
    path.write_text(path.read_text().replace('"tasks":[[0]]', '"tasks":{"per":2,"indices":[1,4,9]}').replace('"version":3', '"version":2'))
    for lean in (True, False):
        got = Manifest.read(str(path), lean=lean)
        assert got.version == 2 and [list(t) for t in got.tasks] == [[1, 4], [9]]


def test_a_bad_compact_task_list_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    manifest([[0]]).write(str(path))
    for bad in ('{"per":2,"ranges":[0,4,9]}', '{"per":2,"packed":"bm90IHBhY2tlZA=="}', '{"per":2,"packed":"!!"}'):
        path.write_text(path.read_text().replace('"tasks":[[0]]', f'"tasks":{bad}'))
        for lean in (True, False):
            with pytest.raises(PyExpUtilsError, match=re.escape(f"{path}: cannot read manifest: tasks")):
                Manifest.read(str(path), lean=lean)
        manifest([[0]]).write(str(path))


def test_a_job_runner_starts_without_numpy() -> None:
    code = "import sys, pyexputils.runner.task; print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
