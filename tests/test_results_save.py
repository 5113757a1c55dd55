"""saveResult / atomicWrite (a run killed mid-write never looks done) and readNpy (same arrays as np.load)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyexputils.models import Config, ExperimentDescription, FileSystemContext
from pyexputils.results import atomicWrite, listMissingResults, readNpy, saveResult


def test_saveResult_into_a_context(tmp_path: Path) -> None:
    exp = ExperimentDescription({"metaParameters": {"a": [1, 2]}}, config=Config(save_path="r/{params}/{run}"))
    path = saveResult(exp.buildSaveContext(1, base=str(tmp_path)), "returns.npy", [1.0, 2.0])
    assert path == str(tmp_path / "r/a-2/0/returns.npy")
    assert np.load(path).tolist() == [1.0, 2.0]
    assert os.listdir(os.path.dirname(path)) == ["returns.npy"]  # no temporary left behind
    mode = stat.S_IMODE(os.stat(path).st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_saveResult_into_a_folder_and_overwrite(tmp_path: Path) -> None:
    saveResult(str(tmp_path / "a"), "x.npy", np.arange(3))
    saveResult(FileSystemContext("a", str(tmp_path)), "x.npy", np.arange(5))
    assert np.load(tmp_path / "a" / "x.npy").tolist() == [0, 1, 2, 3, 4]


def test_atomicWrite_text_and_bytes(tmp_path: Path) -> None:
    atomicWrite(str(tmp_path / "d" / "t.txt"), "héllo")
    atomicWrite(str(tmp_path / "d" / "b.bin"), b"\x00\x01")
    assert (tmp_path / "d" / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "d" / "b.bin").read_bytes() == b"\x00\x01"


def test_killed_mid_write_never_looks_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = ExperimentDescription(
        {"metaParameters": {"a": [1, 2]}}, config=Config(save_path="r/{params}", require=["returns.npy"])
    )
    ctx = exp.buildSaveContext(0, base=str(tmp_path))
    saveResult(ctx, "returns.npy", np.zeros(3))
    real = np.save

    def dies(f: Any, array: Any, **kw: Any) -> None:
        real(f, array[:1], **kw)  # part of the data is out ...
        raise KeyboardInterrupt  # ... when the job is killed

    monkeypatch.setattr(np, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        saveResult(ctx, "returns.npy", np.ones(1000))
    with pytest.raises(KeyboardInterrupt):
        saveResult(exp.buildSaveContext(1, base=str(tmp_path)), "returns.npy", np.ones(1000))
    assert np.load(ctx.resolve("returns.npy")).tolist() == [0.0, 0.0, 0.0]  # the old file, whole
    assert os.listdir(ctx.resolve()) == ["returns.npy"]  # the temporary is gone
    assert listMissingResults(exp, base=str(tmp_path)) == [1]  # setting 1 was never completed


@settings(max_examples=60, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    ),
    fortran=st.booleans(),
)
def test_readNpy_matches_np_load(tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, fortran: bool) -> None:
    path = str(tmp_path_factory.mktemp("npy") / "a.npy")
    np.save(path, np.asfortranarray(array) if fortran else array)
    got = readNpy(path)
    want = np.load(path)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    if got.size:
        got.flat[0] = got.flat[0]  # writable


def test_readNpy_hands_pickles_to_np_load_and_rejects_damage(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert readNpy(str(tmp_path / "o.npy"))[0] == {"a": 1}
    np.save(tmp_path / "f.npy", np.arange(100.0))
    (tmp_path / "t.npy").write_bytes((tmp_path / "f.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated"):
        readNpy(str(tmp_path / "t.npy"))
    with pytest.raises(FileNotFoundError):
        readNpy(str(tmp_path / "none.npy"))
