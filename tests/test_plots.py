"""Plots (pyexputils.results.plots): checked for content -- axes, lines, bands, panels, PNG files -- not pixels;
and one clear line naming the extra when matplotlib is missing."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import listIndices, loadResults, saveResult
from pyexputils.results.analysis import Curve, Sensitivity, bestCurves, sensitivities
from pyexputils.results.plots import (
    newFigure,
    plotCurves,
    plotSensitivity,
    saveCurves,
    savePlots,
    savePng,
    saveSensitivity,
    scoredPart,
)

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


def curve(label: str, runs: int) -> Curve:
    se = np.full(5, 0.1) if runs > 1 else np.full(5, np.nan)
    return Curve(label, {}, runs, np.linspace(1, 0, 5), se)


@pytest.fixture
def agents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two experiments (TD: alpha x lambda, GTD: alpha x beta), 3 runs each, rmsve-like curves of 20 steps."""
    monkeypatch.chdir(tmp_path)
    groups: dict[str, Any] = {}
    for name, sweep in (("TD", {"alpha": [0.1, 0.2, 0.4], "lambda": [0.0, 0.9]}), ("GTD", {"alpha": [0.1, 0.2], "beta": [1, 2]})):
        exp = ExperimentDescription({"name": name, "metaParameters": sweep}, config=Config(save_path="results/{name}/{params}/{run}"))
        for i in listIndices(exp, runs=3):
            p = exp.getPermutation(i)
            level = abs(p["alpha"] - 0.2) + 0.1 * exp.getRun(i) + p.get("lambda", 0) + p.get("beta", 0)
            saveResult(exp.buildSaveContext(i), "rmsve.npy", np.linspace(1, 0, 20) + level)
        groups[name] = loadResults(exp, "rmsve.npy")
    return groups


def test_plotCurves_one_line_per_curve_and_a_band_where_there_is_a_stderr() -> None:
    fig = plotCurves([curve("a", 3), curve("b", 1), None, curve("c", 2)], title="t", ylabel="RMSE")  # None: no runs
    (ax,) = fig.axes
    assert len(ax.lines) == 3
    assert len(ax.collections) == 2  # no band for the single run
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (3 runs)", "b (1 run)", "c (2 runs)"]
    assert ax.get_title() == "t" and ax.get_ylabel() == "RMSE" and ax.get_xlabel() == "step"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.linspace(1, 0, 5))


def test_plotSensitivity_one_panel_per_parameter_one_line_per_experiment() -> None:
    s = {
        "alpha": {"TD": Sensitivity("alpha", [0.1, 0.4], [1.0, 2.0], [0.1, np.nan], [3, 1], [None, None]),
                  "GTD": Sensitivity("alpha", [0.2, 0.4], [1.5, 0.5], [0.1, 0.1], [3, 3], [None, None])},
        "lambda": {"TD": Sensitivity("lambda", [0.0, 0.9], [1.0, 1.2], [0.1, 0.1], [3, 3], [None, None])},
    }  # fmt: skip
    fig = plotSensitivity(s, ylabel="RMSE")
    assert len(fig.axes) == 2
    alpha, lam = fig.axes
    assert len(alpha.containers) == 2 and len(lam.containers) == 1  # one errorbar line per experiment
    assert [t.get_text() for t in alpha.get_xticklabels()] == ["0.1", "0.2", "0.4"]  # the union, sorted
    assert alpha.get_xlabel() == "alpha" and lam.get_xlabel() == "lambda"
    td, gtd = alpha.containers
    assert td.lines[0].get_xdata().tolist() == [0, 2] and gtd.lines[0].get_xdata().tolist() == [1, 2]
    assert [t.get_text() for t in alpha.get_legend().get_texts()] == ["TD", "GTD"]


def test_four_parameters_make_two_rows_of_panels() -> None:
    one = {"x": Sensitivity("p", [1], [1.0], [0.1], [2], [None])}
    fig = plotSensitivity({f"p{i}": one for i in range(4)})
    assert len(fig.axes) == 4
    assert {ax.get_subplotspec().rowspan.start for ax in fig.axes} == {0, 1}


def test_plotSensitivity_of_nothing_is_an_error() -> None:
    with pytest.raises(PyExpUtilsError, match="nothing is swept"):
        plotSensitivity({})


def test_savePlots_several_experiments_on_one_figure(agents: dict[str, Any], tmp_path: Path) -> None:
    files = savePlots(agents, str(tmp_path / "plots"), ylabel="RMSE")
    assert files == [str(tmp_path / "plots" / "curves.png"), str(tmp_path / "plots" / "sensitivity.png")]
    for f in files:
        data = Path(f).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
    # what those files show, drawn again from the same computation
    curves = bestCurves(agents)
    assert [c.label for c in curves.values()] == ["TD: alpha=0.2, lambda=0.0", "GTD: alpha=0.2, beta=1"]
    assert all(c.runs == 3 for c in curves.values())
    s = sensitivities(agents)
    assert list(s) == ["alpha", "lambda", "beta"] and list(s["alpha"]) == ["TD", "GTD"] and list(s["beta"]) == ["GTD"]
    fig = plotSensitivity(s)
    assert [len(ax.containers) for ax in fig.axes] == [2, 1, 1]


def test_savePlots_only_what_is_asked(agents: dict[str, Any], tmp_path: Path) -> None:
    assert savePlots(agents, str(tmp_path / "a"), sensitivity=False) == [str(tmp_path / "a" / "curves.png")]
    assert savePlots(agents, str(tmp_path / "b"), best=False, params=["beta"]) == [str(tmp_path / "b" / "sensitivity.png")]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["sensitivity.png"]


def test_nothing_to_plot(tmp_path: Path) -> None:
    with pytest.raises(PyExpUtilsError, match="no run of any setting"):
        saveCurves({}, str(tmp_path))
    empty = {"alpha": {"TD": Sensitivity("alpha", [0.1], [np.nan], [np.nan], [0], [None])}}
    with pytest.raises(PyExpUtilsError, match="no run of any setting"):
        saveSensitivity(empty, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_savePng_into_a_folder_that_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    fig, _ = newFigure()
    with pytest.raises(PyExpUtilsError, match=r"file/sub/x\.png: cannot write the plot"):
        savePng(fig, str(tmp_path / "file" / "sub" / "x.png"))


def test_no_pyplot_state_is_touched(agents: dict[str, Any], tmp_path: Path) -> None:
    savePlots(agents, str(tmp_path))
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_scoredPart() -> None:
    assert scoredPart(None, 1.0) == "the whole curve" and scoredPart(None, 0.1) == "the last 10% of the curve"
    assert scoredPart(5, 1.0) == "the last 5 steps"


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PyExpUtilsError) as e:
        plotCurves([curve("a", 2)])
    assert str(e.value) == "plots need matplotlib: pip install 'pyexputils[plot]'"
    import pyexputils.results  # the rest of the package works without it

    assert pyexputils.results.getBest([]) is None
