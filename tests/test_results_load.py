"""loadResults / Result / ResultView: seed examples, runs grouped per setting, partial and unreadable
results (one line on stderr, no exception), and the cache (each file read once)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import Result, ResultView, listIndices, loadResults, readNpy, saveResult

SEED = {
    "name": "MountainCar-v0",
    "algorithm": "SARSA",
    "metaParameters": {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]},
}
FLAT = "results/{name}/{algorithm}/{params}"  # the seed's layout: one file per setting
RUNS = "results/{name}/{algorithm}/{params}/{run}"  # one folder per run


def make(save_path: str = FLAT) -> ExperimentDescription:
    return ExperimentDescription(SEED, config=Config(save_path=save_path))


def curve(i: int, exp: ExperimentDescription) -> np.ndarray:
    p = exp.getPermutation(i)
    return np.linspace(1, 0, 20) * p["alpha"] + p["lambda"] + exp.getRun(i)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- seed examples --------------------------------------------------------------------------------
def test_result_path_params_and_lazy_filter(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make()
    for i in listIndices(exp):
        saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))
    results = loadResults(exp, "returns.npy")
    first = next(results)
    assert first.path == "results/MountainCar-v0/SARSA/alpha-1.0_lambda-1.0/returns.npy"
    assert first.params == {"alpha": 1.0, "lambda": 1.0}
    assert "returns.npy" in repr(first)

    reads: list[str] = []
    real = Result._read
    monkeypatch.setattr(Result, "_read", lambda self, path: reads.append(path) or real(self, path))
    # only load results from disk where alpha > 0.2
    kept = list(filter(lambda res: res.params["alpha"] > 0.2, loadResults(exp, "returns.npy")))
    assert [r.params["alpha"] for r in kept] == [1.0] * 4 + [0.5] * 4 + [0.25] * 4
    assert reads == []  # filtering reads nothing
    for r in kept:
        np.testing.assert_allclose(r.load(), curve(r.idx, exp))
    assert len(reads) == 12


def test_load_is_cached(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make()
    saveResult(exp.buildSaveContext(0), "returns.npy", curve(0, exp))
    r = next(loadResults(exp, "returns.npy"))
    opened: list[str] = []
    real = readNpy

    def counting(path: str) -> Any:
        opened.append(path)
        return real(path)

    monkeypatch.setattr("pyexputils.results.results.readNpy", counting)
    a = r.load()
    view = r.reducer(lambda m: m[:5])
    assert r.load() is a and len(view.load()) == 5 and view.mean() is not None
    assert opened == [r.path]


def test_reducer_getFirstNSteps(project: Path) -> None:
    exp = make()
    for i in listIndices(exp):
        saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))

    def getFirstNSteps(results: Any, n: int) -> Any:
        for result in results:
            yield result.reducer(lambda data: data[0:n])

    views = list(getFirstNSteps(loadResults(exp, "returns.npy"), 3))
    assert all(isinstance(v, ResultView) for v in views)
    assert [v.load().shape for v in views] == [(3,)] * 16
    assert views[5].params == exp.getPermutation(5) and views[5].idx == 5


def test_two_views_share_one_cache(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make()
    saveResult(exp.buildSaveContext(0), "returns.npy", curve(0, exp))
    result = next(loadResults(exp, "returns.npy"))
    calls: list[str] = []
    real = Result._read
    monkeypatch.setattr(Result, "_read", lambda self, path: calls.append(path) or real(self, path))
    view = result.reducer(lambda m: m.mean())
    view2 = result.reducer(lambda m: m.std())
    assert view.load() == pytest.approx(curve(0, exp).mean())
    assert view2.load() == pytest.approx(curve(0, exp).std())
    assert view.reducer(lambda x: x * 2).load() == pytest.approx(2 * curve(0, exp).mean())  # composes
    assert view.load() == pytest.approx(curve(0, exp).mean())  # and leaves the first view alone
    assert len(calls) == 1


def test_seed_constructor_reads_one_file(project: Path) -> None:
    exp = make()
    np.save("x.npy", np.arange(4.0))
    r = Result("x.npy", exp, 2)
    assert r.params == {"alpha": 1.0, "lambda": 0.98}
    assert r.load().tolist() == [0, 1, 2, 3] and r.runs() == 1 and r.paths == ["x.npy"]


# --- partial and unreadable results ------------------------------------------------------------------
def test_missing_result_prints_one_line_and_returns_none(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make()
    r = next(loadResults(exp, "returns.npy"))
    assert r.load() is None and r.mean() is None and r.stderr() is None and r.runs() == 0
    assert r.reducer(lambda m: m[0]).load() is None
    err = capsys.readouterr().err
    assert err == f"pyexputils: cannot load {r.path}: no such file\n"  # once, though asked four times


@pytest.mark.parametrize(
    "content",
    [b"", b"not numpy at all", b"\x93NUMPY\x01\x00garbage", None],
    ids=["empty", "text", "bad-header", "truncated"],
)
def test_unreadable_result(project: Path, capsys: pytest.CaptureFixture[str], content: bytes | None) -> None:
    exp = make()
    path = saveResult(exp.buildSaveContext(0), "returns.npy", np.arange(100.0))
    if content is None:
        content = Path(path).read_bytes()[:200]
    Path(path).write_bytes(content)
    r = next(loadResults(exp, "returns.npy"))
    assert r.load() is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"pyexputils: cannot load {path}: ")


def test_partial_results_keep_plotting_code_running(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make()
    for i in listIndices(exp):
        if i % 3:
            saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))
    means = [r.mean() for r in loadResults(exp, "returns.npy")]
    assert [m is None for m in means] == [i % 3 == 0 for i in range(16)]
    assert len(capsys.readouterr().err.splitlines()) == 6


def test_a_folder_that_is_not_readable_as_a_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make()
    os.makedirs(os.path.join(exp.interpolateSavePath(0), "returns.npy"))
    assert next(loadResults(exp, "returns.npy")).load() is None
    assert "cannot load" in capsys.readouterr().err


# --- runs grouped per setting ------------------------------------------------------------------------
def test_runs_are_stacked_per_setting(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make(RUNS)
    for i in listIndices(exp, runs=3):
        saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))
    results = list(loadResults(exp, "returns.npy"))
    assert len(results) == 16  # one per setting, not per run
    r = results[1]
    assert r.grouped and r.runs() == 3 and r.load().shape == (3, 20)
    assert r.path == "results/MountainCar-v0/SARSA/alpha-1.0_lambda-0.99/0/returns.npy"
    assert r.paths == [f"results/MountainCar-v0/SARSA/alpha-1.0_lambda-0.99/{k}/returns.npy" for k in range(3)]
    stacked = np.stack([curve(1 + 16 * k, exp) for k in range(3)])
    np.testing.assert_allclose(r.mean(), stacked.mean(axis=0))
    np.testing.assert_allclose(r.stderr(), stacked.std(axis=0, ddof=1) / np.sqrt(3))
    assert capsys.readouterr().err == ""


def test_runs_are_discovered_from_one_listing_per_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = make(RUNS)
    for i in (0, 16, 48, 1, 33):  # setting 0: runs 0, 1, 3; setting 1: runs 0, 2
        saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))
    os.makedirs(os.path.join(exp.interpolateSavePath(0), "..", "notes"))  # not a run folder
    os.makedirs(os.path.join(exp.interpolateSavePath(0), "..", "07"))  # not a run number either
    listings: list[str] = []
    real = os.listdir
    monkeypatch.setattr("pyexputils.results.results.os.listdir", lambda p: listings.append(p) or real(p))
    r0, r1, r2 = list(loadResults(exp, "returns.npy"))[:3]
    assert r0.runs() == 3 and r1.runs() == 2 and r2.runs() == 0
    assert [p.split("/")[-2] for p in r0.paths] == ["0", "1", "3"]
    assert len(listings) == 3


def test_runs_can_be_fixed_and_missing_runs_are_reported(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = make(RUNS)
    for i in (0, 16, 48):
        saveResult(exp.buildSaveContext(i), "returns.npy", curve(i, exp))
    r = next(loadResults(exp, "returns.npy", runs=5))
    assert r.runs() == 3
    np.testing.assert_allclose(r.mean(), np.mean([curve(i, exp) for i in (0, 16, 48)], axis=0))
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "pyexputils: cannot load 2 of 5 runs of results/MountainCar-v0/SARSA/alpha-1.0_lambda-1.0/{run}/returns.npy "
        "(runs 2, 4); first: results/MountainCar-v0/SARSA/alpha-1.0_lambda-1.0/2/returns.npy: no such file"
    ]


def test_runs_of_different_lengths_are_padded(project: Path) -> None:
    exp = make(RUNS)
    saveResult(exp.buildSaveContext(0), "returns.npy", np.array([1.0, 2.0, 3.0]))
    saveResult(exp.buildSaveContext(16), "returns.npy", np.array([3.0, 4.0]))
    r = next(loadResults(exp, "returns.npy"))
    assert r.load().shape == (2, 3) and np.isnan(r.load()[1, 2])
    np.testing.assert_allclose(r.mean(), [2.0, 3.0, 3.0])
    assert r.runs() == 2


def test_one_file_holding_all_runs(project: Path) -> None:
    exp = make()
    saveResult(exp.buildSaveContext(0), "returns.npy", np.array([[1.0, 2.0], [3.0, 6.0]]))
    r = next(loadResults(exp, "returns.npy"))
    assert not r.grouped and r.runs() == 2
    np.testing.assert_allclose(r.mean(), [2.0, 4.0])
    np.testing.assert_allclose(r.stderr(), [1.0, 2.0])


def test_one_run_has_no_stderr(project: Path) -> None:
    exp = make(RUNS)
    saveResult(exp.buildSaveContext(0), "returns.npy", np.arange(3.0))
    r = next(loadResults(exp, "returns.npy"))
    assert r.runs() == 1 and np.isnan(r.stderr()).all()
    np.testing.assert_allclose(r.mean(), np.arange(3.0))


def test_base_folder(tmp_path: Path) -> None:
    exp = make(RUNS)
    saveResult(exp.buildSaveContext(0, base=str(tmp_path)), "returns.npy", np.arange(3.0))
    r = next(loadResults(exp, "returns.npy", base=str(tmp_path)))
    assert r.path.startswith(str(tmp_path)) and r.runs() == 1


def test_other_formats_through_np_load_and_subclasses(project: Path) -> None:
    exp = make()
    os.makedirs(exp.interpolateSavePath(0))
    np.savez(os.path.join(exp.interpolateSavePath(0), "r.npz"), a=np.arange(3))
    r = next(loadResults(exp, "r.npz"))
    assert r.load()["a"].tolist() == [0, 1, 2]

    class Text(Result):
        def _read(self, path: str) -> Any:
            return np.loadtxt(path)

    Path(exp.interpolateSavePath(0), "r.txt").write_text("1\n2\n")
    r2 = next(loadResults(exp, "r.txt", ResultClass=Text))
    assert isinstance(r2, Text) and r2.load().tolist() == [1.0, 2.0]
