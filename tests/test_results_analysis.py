"""What to plot and tabulate (pyexputils.results.analysis): runs as rows, mean and stderr, scores of the
curve's tail, learning curves, parameter sensitivity (the best over the other parameters), summaries."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import ParameterError, getBest, listIndices, loadResults, saveResult
from pyexputils.results.analysis import (
    Curve,
    bestCurves,
    experimentLabels,
    flatParams,
    larger,
    learningCurve,
    meanAndStderr,
    runScores,
    runsMatrix,
    scoreAndStderr,
    sensitivities,
    sensitivity,
    settingLabel,
    smaller,
    sortedValues,
    summaries,
    summarize,
    sweptNames,
    tailLength,
)


class Fake:
    """An in-memory result: ``data`` is (runs, steps), or None for a setting without runs."""

    def __init__(self, params: dict[str, Any], data: Any, path: str = "fake.npy") -> None:
        self.params = params
        self.data = None if data is None else np.asarray(data, dtype=float)
        self.path = path

    def load(self) -> Any:
        return self.data

    def runs(self) -> int:
        return 0 if self.data is None else (len(self.data) if self.data.ndim >= 2 else 1)

    def mean(self) -> Any:
        return None if self.data is None else np.nanmean(np.atleast_2d(self.data), axis=0)


def grid(scores: dict[tuple[float, int], list[float] | None]) -> list[Fake]:
    """One Fake per (alpha, n) whose runs are flat curves at the given levels."""
    return [Fake({"alpha": a, "n": n}, None if v is None else [[x] * 4 for x in v]) for (a, n), v in scores.items()]


# --- runs, mean, stderr, tails ---------------------------------------------------------------------------
def test_runsMatrix_shapes() -> None:
    assert runsMatrix(Fake({}, [[1, 2], [3, 4]])).shape == (2, 2)  # type: ignore[arg-type,union-attr]
    assert runsMatrix(Fake({}, [1, 2, 3])).tolist() == [[1, 2, 3]]  # type: ignore[arg-type,union-attr]
    assert runsMatrix(Fake({}, 5.0)).tolist() == [[5.0]]  # type: ignore[arg-type,union-attr]
    assert runsMatrix(Fake({}, None)) is None  # type: ignore[arg-type]
    with pytest.raises(PyExpUtilsError, match=r"fake\.npy: one run has shape \(2, 2\)"):
        runsMatrix(Fake({}, np.zeros((3, 2, 2))))  # type: ignore[arg-type]


def test_runsMatrix_one_value_per_run_from_a_view(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = ExperimentDescription({"metaParameters": {"a": [1]}}, config=Config(save_path="r/{params}/{run}"))
    for i in listIndices(exp, runs=3):
        saveResult(exp.buildSaveContext(i), "x.npy", np.arange(4.0) + i)
    result = loadResults(exp, "x.npy")[0]
    assert runsMatrix(result).tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]  # type: ignore[union-attr]
    finals = result.reducer(lambda d: d[:, -1])  # one value per run
    assert runsMatrix(finals).tolist() == [[3], [4], [5]]  # type: ignore[union-attr]


def test_meanAndStderr_known_values() -> None:
    mean, se = meanAndStderr(np.array([[1.0, 2.0, np.nan], [3.0, 6.0, 5.0]]))
    assert mean.tolist() == [2.0, 4.0, 5.0]
    assert se[0] == pytest.approx(1.0) and se[1] == pytest.approx(2.0) and math.isnan(se[2])  # one run: NaN
    mean, se = meanAndStderr(np.array([[np.nan], [np.nan]]))
    assert math.isnan(mean[0]) and math.isnan(se[0])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                  elements=st.floats(-1e6, 1e6)))  # fmt: skip
def test_meanAndStderr_is_mean_and_std_over_sqrt_n(rows: np.ndarray) -> None:
    mean, se = meanAndStderr(rows)
    np.testing.assert_allclose(mean, rows.mean(axis=0), rtol=1e-9, atol=1e-6)
    if len(rows) < 2:
        assert np.all(np.isnan(se))
    else:
        np.testing.assert_allclose(se, rows.std(axis=0, ddof=1) / np.sqrt(len(rows)), rtol=1e-9, atol=1e-6)


def test_tailLength() -> None:
    assert tailLength(100) == 100 and tailLength(100, percent=0.1) == 10 and tailLength(100, steps=5) == 5
    assert tailLength(100, steps=10, percent=0.5) == 5 and tailLength(3, percent=0.1) == 1
    assert tailLength(10, steps=50) == 10
    for bad in (dict(percent=0.0), dict(percent=1.5), dict(steps=0)):
        with pytest.raises(PyExpUtilsError):
            tailLength(10, **bad)  # type: ignore[arg-type]


def test_runScores_and_scoreAndStderr() -> None:
    rows = np.array([[9.0, 1.0, 3.0], [9.0, 3.0, np.nan]])
    assert runScores(rows).tolist() == [13 / 3, 6.0]
    assert runScores(rows, steps=2).tolist() == [2.0, 3.0]
    last = runScores(rows, percent=0.34)  # int(3 * 0.34) = 1 step: run 1's last step is NaN
    assert last[0] == 3.0 and math.isnan(last[1])
    s, e = scoreAndStderr(rows, steps=2)
    assert s == 2.5 and e == pytest.approx(0.5)


def test_scores_agree_with_getBest_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyexputils.results import score

    rng = np.random.default_rng(0)
    fakes = [Fake({"i": i}, rng.random((3, 20))) for i in range(5)]
    for f in fakes:
        assert scoreAndStderr(runsMatrix(f), percent=0.25)[0] == pytest.approx(score(f, percent=0.25))  # type: ignore[arg-type]


# --- names ---------------------------------------------------------------------------------------------------
def test_names() -> None:
    params = {"alpha": 0.1, "optimizer": {"name": "adam", "beta": 0.9}, "layers": [{"units": 8}, {"units": 16}]}
    assert flatParams(params) == {"alpha": 0.1, "optimizer.name": "adam", "optimizer.beta": 0.9,
                                  "layers.[0].units": 8, "layers.[1].units": 16}  # fmt: skip
    assert settingLabel({"alpha": 0.1, "o": {"b": 2}}) == "alpha=0.1, o.b=2"
    fakes = [Fake({"a": 1, "b": x, "c": [1, 2]}, None) for x in (1, 2)]
    assert sweptNames(fakes) == ["b"]  # type: ignore[arg-type]
    assert sortedValues([0.8, 0.1, 0.4]) == [0.1, 0.4, 0.8] and sortedValues(["b", "a"]) == ["b", "a"]
    assert sortedValues([True, False]) == [True, False]


def test_experimentLabels() -> None:
    def exp(d: dict[str, Any], path: str) -> ExperimentDescription:
        return ExperimentDescription({**d, "metaParameters": {"a": [1]}}, path=path, config=Config())

    assert experimentLabels([exp({"agent": "TD"}, "e/td.json"), exp({"agent": "Q"}, "e/q.json")]) == ["TD", "Q"]
    assert experimentLabels([exp({"agent": "TD"}, "e/a.json"), exp({"agent": "TD"}, "e/b.json")]) == ["a", "b"]
    assert experimentLabels([exp({}, "x/a.json"), exp({}, "y/a.json")]) == ["x/a.json", "y/a.json"]


# --- learning curves -------------------------------------------------------------------------------------------
def test_learningCurve_matches_Result_mean_and_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = ExperimentDescription({"metaParameters": {"a": [1, 2]}}, config=Config(save_path="r/{params}/{run}"))
    rng = np.random.default_rng(1)
    for i in listIndices(exp, runs=4):
        saveResult(exp.buildSaveContext(i), "x.npy", rng.random(7))
    for r in loadResults(exp, "x.npy"):
        c = learningCurve(r)
        assert c is not None and c.runs == 4 and c.label == f"a={r.params['a']}" and c.params == r.params
        np.testing.assert_allclose(c.mean, r.mean())
        np.testing.assert_allclose(c.stderr, r.stderr())
    assert learningCurve(Fake({}, None), "x") is None  # type: ignore[arg-type]


def test_bestCurves_picks_getBest_per_experiment() -> None:
    a = grid({(0.1, 1): [3.0, 3.0], (0.2, 1): [1.0, 2.0], (0.3, 1): None})
    b = grid({(0.1, 1): [5.0], (0.2, 1): [9.0]})
    curves = bestCurves({"A": a, "B": b})  # type: ignore[dict-item]
    assert list(curves) == ["A", "B"]
    assert curves["A"].label == "A: alpha=0.2, n=1" and curves["A"].runs == 2 and curves["A"].mean.tolist() == [1.5] * 4
    assert curves["B"].params == {"alpha": 0.1, "n": 1} and np.all(np.isnan(curves["B"].stderr))
    assert bestCurves({"A": a}, comparator=larger)["A"].params == {"alpha": 0.1, "n": 1}  # type: ignore[dict-item]
    assert bestCurves({"none": grid({(0.1, 1): None})}) == {}  # type: ignore[dict-item]


# --- sensitivity ---------------------------------------------------------------------------------------------------
def test_sensitivity_known_values() -> None:
    fakes = grid({
        (0.4, 1): [1.0, 3.0], (0.4, 2): [0.5, 0.5],
        (0.1, 1): [4.0], (0.1, 2): None,
        (0.2, 1): None, (0.2, 2): None,
    })  # fmt: skip
    s = sensitivity(fakes, "alpha")  # type: ignore[arg-type]
    assert s.param == "alpha" and s.values == [0.1, 0.2, 0.4]  # numbers in increasing order
    assert s.scores[0] == 4.0 and math.isnan(s.scores[1]) and s.scores[2] == 0.5
    assert math.isnan(s.stderr[0]) and math.isnan(s.stderr[1]) and s.stderr[2] == 0.0
    assert s.runs == [1, 0, 2]
    assert [None if b is None else b.params["n"] for b in s.best] == [1, None, 2]
    up = sensitivity(fakes, "alpha", comparator=larger)  # type: ignore[arg-type]
    assert up.scores[2] == 2.0 and up.stderr[2] == pytest.approx(1.0) and up.runs[2] == 2
    with pytest.raises(ParameterError, match="closest: alpha"):
        sensitivity(fakes, "alpah")  # type: ignore[arg-type]


def test_sensitivity_over_the_last_part_of_the_curve() -> None:
    early = Fake({"a": 1, "b": 1}, [[0.0, 0.0, 0.0, 9.0]])
    late = Fake({"a": 1, "b": 2}, [[9.0, 9.0, 9.0, 1.0]])
    s = sensitivity([early, late], "a", percent=0.25)  # type: ignore[list-item]
    assert s.scores == [1.0] and s.best == [late]
    assert sensitivity([early, late], "a").best == [early]  # type: ignore[list-item]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=1, max_size=4, unique=True),
    st.integers(1, 4),
    st.data(),
    st.booleans(),
)
def test_sensitivity_is_the_best_over_the_other_parameters(
    alphas: list[float], ns: int, data: st.DataObject, up: bool
) -> None:
    scores: dict[tuple[float, int], list[float] | None] = {}
    for key in itertools.product(alphas, range(ns)):
        scores[key] = data.draw(st.one_of(st.none(), st.lists(st.floats(-100, 100), min_size=1, max_size=3)))
    fakes = grid(scores)
    s = sensitivity(fakes, "alpha", comparator=larger if up else smaller)  # type: ignore[arg-type]
    assert s.values == sorted(alphas)
    for value, got, runs in zip(s.values, s.scores, s.runs):
        means = [float(np.mean(v)) for (a, _), v in scores.items() if a == value and v is not None]
        if not means:
            assert math.isnan(got) and runs == 0
        else:
            assert got == pytest.approx(max(means) if up else min(means))
            assert runs >= 1
    # and per value of n (the other parameter): the best over alpha
    other = sensitivity(fakes, "n", comparator=larger if up else smaller)  # type: ignore[arg-type]
    for value, got in zip(other.values, other.scores):
        means = [float(np.mean(v)) for (_, n), v in scores.items() if n == value and v is not None]
        assert (math.isnan(got) and not means) or got == pytest.approx(max(means) if up else min(means))


def test_sensitivities_default_params_and_experiments_without_one() -> None:
    td = [Fake({"alpha": a}, [[a]]) for a in (0.1, 0.2)]
    gtd = [Fake({"alpha": a, "beta": b}, [[a + b]]) for a in (0.1, 0.2) for b in (1, 2)]
    out = sensitivities({"TD": td, "GTD": gtd})  # type: ignore[dict-item]
    assert list(out) == ["alpha", "beta"]
    assert list(out["alpha"]) == ["TD", "GTD"] and list(out["beta"]) == ["GTD"]  # TD has no beta
    assert out["alpha"]["GTD"].scores == pytest.approx([1.1, 1.2])
    assert list(sensitivities({"TD": td}, ["alpha"])) == ["alpha"]  # type: ignore[dict-item]
    with pytest.raises(ParameterError, match="closest: beta"):
        sensitivities({"TD": td, "GTD": gtd}, ["betta"])  # type: ignore[dict-item]


# --- summaries -------------------------------------------------------------------------------------------------------
def test_summarize() -> None:
    f = Fake({"alpha": 0.1, "o": {"b": 2}}, [[1.0, 1.0, 1.0, 3.0], [3.0, 3.0, 3.0, 5.0]])
    s = summarize(f, last=0.25, experiment="TD")  # type: ignore[arg-type]
    assert (s.experiment, s.params, s.runs) == ("TD", {"alpha": 0.1, "o.b": 2}, 2)
    assert s.mean == 2.5 and s.stderr == pytest.approx(1.0) and s.lastMean == 4.0 and s.lastStderr == pytest.approx(1.0)
    empty = summarize(Fake({"alpha": 0.2}, None))  # type: ignore[arg-type]
    assert empty.runs == 0 and all(math.isnan(x) for x in (empty.mean, empty.stderr, empty.lastMean, empty.lastStderr))


def test_summaries_in_order_and_the_fraction_checked_first() -> None:
    rows = summaries({"A": grid({(0.1, 1): [1.0], (0.2, 1): None}), "B": grid({(0.3, 1): [2.0, 4.0]})})  # type: ignore[dict-item]
    assert [(r.experiment, r.params["alpha"], r.runs, r.mean) for r in rows] == [
        ("A", 0.1, 1, 1.0), ("A", 0.2, 0, pytest.approx(math.nan, nan_ok=True)), ("B", 0.3, 2, 3.0)
    ]
    with pytest.raises(PyExpUtilsError, match="percent 2"):
        summaries({"A": []}, last=2)


def test_curve_is_a_plain_record() -> None:
    c = Curve("x", {}, 1, np.zeros(2), np.zeros(2))
    assert c.label == "x" and c.runs == 1
