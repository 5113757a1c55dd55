"""The results API as the seed documents it, without its traps: permutable() is the sweep, sliceOverParameter
gives lists, loadResults can be iterated again, a parameter name no result has raises with the closest names,
and getBest never returns a setting without runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import (
    Result,
    ResultList,
    find,
    getBest,
    listIndices,
    loadResults,
    saveResult,
    sliceOverParameter,
    splitOverParameter,
    where,
    whereParameterEquals,
    whereParameterGreaterEq,
    whereParameterLesserEq,
    whereParametersEqual,
)
from pyexputils.results.tools import ParameterError, parameterNames

SEED = {
    "algorithm": "SARSA",
    "environment": "MountainCar",
    "metaParameters": {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]},
}


def make(d: dict[str, Any] = SEED, save_path: str = "results/{environment}/{algorithm}/{params}/{run}") -> ExperimentDescription:
    return ExperimentDescription(d, config=Config(save_path=save_path))


@pytest.fixture
def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExperimentDescription:
    """The seed's sweep with 2 runs of returns.npy per setting."""
    monkeypatch.chdir(tmp_path)
    exp = make()
    for i in listIndices(exp, runs=2):
        p = exp.getPermutation(i)
        saveResult(exp.buildSaveContext(i), "returns.npy", np.full(10, p["alpha"] * p["lambda"] + exp.getRun(i)))
    return exp


# --- the seed's examples, as written -----------------------------------------------------------------
def test_seed_permutable() -> None:
    exp = ExperimentDescription(SEED)
    params = exp.permutable()
    assert params == {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]}


def test_seed_sliceOverParameter(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    result = next(results)
    slice = sliceOverParameter(results, result, "lambda")
    assert list(slice) == [1.0, 0.99, 0.98, 0.96]
    assert all(isinstance(v, list) and len(v) == 1 and isinstance(v[0], Result) for v in slice.values())
    assert slice[1.0][0] is result
    assert [(v[0].params["alpha"], v[0].params["lambda"]) for v in slice.values()] == [
        (1.0, 1.0), (1.0, 0.99), (1.0, 0.98), (1.0, 0.96)
    ]


def test_seed_splitOverParameter(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    bins = splitOverParameter(results, "alpha")
    assert list(bins) == [1.0, 0.5, 0.25, 0.125]
    assert all(len(v) == 4 and all(isinstance(r, Result) for r in v) for v in bins.values())


def test_seed_result_loop_then_filter(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    paths = [result.path for result in results]
    assert paths[0] == "results/MountainCar/SARSA/alpha-1.0_lambda-1.0/0/returns.npy"
    # only load results from disk where alpha > 0.2 -- the same `results`, a second pass
    results2 = filter(lambda res: res.params["alpha"] > 0.2, results)
    assert [r.load().shape for r in results2] == [(2, 10)] * 12


def test_seed_find(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    result = next(results)
    match = find(results, result, ignore=["lambda"])
    assert result.params == {"alpha": 1.0, "lambda": 1.0}
    assert match is not None and match.params["alpha"] == 1.0 and match.params["lambda"] != 1.0


def test_seed_where(sweep: ExperimentDescription) -> None:
    results = whereParameterEquals(loadResults(sweep, "returns.npy"), "alpha", 0.25)
    assert [res.params for res in results] == [{"alpha": 0.25, "lambda": v} for v in [1.0, 0.99, 0.98, 0.96]]
    results = whereParameterGreaterEq(loadResults(sweep, "returns.npy"), "alpha", 0.25)
    assert sorted({res.params["alpha"] for res in results}) == [0.25, 0.5, 1.0]


def test_seed_getBest(sweep: ExperimentDescription) -> None:
    best = getBest(loadResults(sweep, "returns.npy"), percent=0.1, comparator=lambda a, b: a > b)
    assert best is not None and best.params == {"alpha": 1.0, "lambda": 1.0}


# --- loadResults can be iterated more than once ---------------------------------------------------------
def test_loadResults_iterates_again_with_the_same_results(sweep: ExperimentDescription, monkeypatch: pytest.MonkeyPatch) -> None:
    results = loadResults(sweep, "returns.npy")
    first = list(results)
    second = list(results)
    assert len(first) == len(second) == len(results) == 16
    assert all(a is b for a, b in zip(first, second))
    reads: list[str] = []
    real = Result._read
    monkeypatch.setattr(Result, "_read", lambda self, path: reads.append(path) or real(self, path))
    for _ in range(3):
        [r.mean() for r in results]
    assert len(reads) == 32  # 16 settings x 2 runs, read once over three passes


def test_next_has_its_own_cursor(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    a, b = next(results), next(results)
    assert (a.idx, b.idx) == (0, 1) and [r.idx for r in results][:2] == [0, 1]
    assert next(results).idx == 2
    rest = [next(results) for _ in range(13)]
    assert rest[-1].idx == 15
    with pytest.raises(StopIteration):
        next(results)


def test_ResultList_indexing_and_slices(sweep: ExperimentDescription) -> None:
    results = loadResults(sweep, "returns.npy")
    assert results[-1].idx == 15 and results[-1] is results[15] and results[3] is list(results)[3]
    part = results[2:5]
    assert isinstance(part, ResultList) and [r.idx for r in part] == [2, 3, 4] and part[0] is results[2]
    assert [r.idx for r in part] == [2, 3, 4]  # twice
    assert "16 results" in repr(results)
    with pytest.raises(IndexError):
        results[16]


def test_filters_return_lists_that_iterate_again(sweep: ExperimentDescription) -> None:
    for got in (
        whereParameterEquals(loadResults(sweep, "returns.npy"), "alpha", 0.25),
        whereParametersEqual(loadResults(sweep, "returns.npy"), {"alpha": 0.25}),
        where(loadResults(sweep, "returns.npy"), lambda r: r.params["alpha"] == 0.25),
    ):
        assert [r.idx for r in got] == [8, 9, 10, 11] and [r.idx for r in got] == [8, 9, 10, 11]
        assert next(got).idx == 8


# --- a parameter name no result has -----------------------------------------------------------------------
def results(exp: ExperimentDescription) -> list[Result]:
    return [Result("fake/path", exp, i) for i in listIndices(exp)]


@pytest.mark.parametrize(
    "call",
    [
        lambda rs: splitOverParameter(rs, "lamda"),
        lambda rs: sliceOverParameter(rs, rs[0], "lamda"),
        lambda rs: whereParameterEquals(rs, "lamda", 1.0),
        lambda rs: whereParameterGreaterEq(rs, "lamda", 1.0),
        lambda rs: whereParameterLesserEq(rs, "lamda", 1.0),
        lambda rs: whereParametersEqual(rs, {"alpha": 1.0, "lamda": 1.0}),
        lambda rs: find(rs, rs[0], ignore=["lamda"]),
    ],
)
def test_an_unknown_name_raises_with_the_closest_names(call: Any) -> None:
    with pytest.raises(ParameterError) as e:
        call(results(make()))
    assert str(e.value) == "no result has a parameter 'lamda'; closest: lambda (parameters: alpha, lambda)"
    assert isinstance(e.value, PyExpUtilsError) and isinstance(e.value, KeyError)


def test_an_unknown_nested_name_suggests_dotted_names() -> None:
    exp = make({"metaParameters": {"optimizer": {"alpha": [0.1, 0.2], "name": "adam"}, "layers": [{"units": [8, 16]}]}})
    with pytest.raises(ParameterError, match=r"closest: optimizer\.alpha"):
        splitOverParameter(results(exp), "optimizer.alpah")
    with pytest.raises(ParameterError, match=r"closest: layers\.\[0\]\.units"):
        splitOverParameter(results(exp), "layers.[0].unit")
    assert list(splitOverParameter(results(exp), "layers.[0].units")) == [8, 16]


def test_nothing_close_still_lists_the_parameters() -> None:
    with pytest.raises(ParameterError) as e:
        splitOverParameter(results(make()), "xyz")
    assert str(e.value) == "no result has a parameter 'xyz' (parameters: alpha, lambda)"


def test_no_results_no_error() -> None:
    assert splitOverParameter([], "anything") == {} and list(whereParameterEquals([], "x", 1)) == []


def test_a_result_without_the_parameter_still_matches() -> None:
    td = results(make({"metaParameters": {"alpha": [0.1, 0.2]}}))
    gtd = results(make({"metaParameters": {"alpha": [0.1, 0.2], "beta": [1, 2]}}))
    mixed = td + gtd
    assert [r.params for r in whereParameterEquals(mixed, "beta", 1)] == [
        {"alpha": 0.1}, {"alpha": 0.2}, {"alpha": 0.1, "beta": 1}, {"alpha": 0.2, "beta": 1}
    ]
    assert list(splitOverParameter(mixed, "beta")) == [1, 2]  # TD's results have no beta: left out
    with pytest.raises(ParameterError, match="closest: beta"):
        whereParameterEquals(mixed, "betta", 1)


def test_parameterNames() -> None:
    assert parameterNames({"a": 1, "o": {"b": 2}, "l": [{"u": 3}], "h": [4, 64]}) == [
        "a", "o", "o.b", "l", "l.[0]", "l.[0].u", "h"
    ]


# --- getBest never returns a setting with no runs ----------------------------------------------------------
def test_getBest_leaves_out_settings_without_runs_and_says_how_many(
    sweep: ExperimentDescription, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    # the best (smallest alpha*lambda: 0.125 x 0.96) and two more settings have no runs
    for perm in (15, 14, 0):
        shutil.rmtree(Path(sweep.interpolateSavePath(perm)).parent)
    capsys.readouterr()
    best = getBest(loadResults(sweep, "returns.npy"))
    assert best is not None and best.params == {"alpha": 0.125, "lambda": 0.99} and best.runs() == 2
    err = capsys.readouterr().err
    assert "pyexputils: getBest: 3 of 16 settings have no runs and were left out" in err.splitlines()


def test_getBest_with_no_runs_anywhere_is_None(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert getBest(loadResults(make(), "returns.npy")) is None
    assert "pyexputils: getBest: none of the 16 settings has a run" in capsys.readouterr().err.splitlines()


def test_getBest_says_nothing_when_every_setting_has_runs(sweep: ExperimentDescription,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert getBest(loadResults(sweep, "returns.npy")) is not None
    assert "getBest" not in capsys.readouterr().err


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(-10, 10)), min_size=1, max_size=12))
def test_getBest_is_the_smallest_mean_among_settings_with_runs(values: list[float | None]) -> None:
    class Fake:
        def __init__(self, i: int, v: float | None) -> None:
            self.params = {"i": i}
            self.v = v

        def runs(self) -> int:
            return 0 if self.v is None else 1

        def mean(self) -> Any:
            return None if self.v is None else np.full(3, self.v)

    fakes = [Fake(i, v) for i, v in enumerate(values)]
    best = getBest(fakes)  # type: ignore[arg-type]
    present = [v for v in values if v is not None]
    if not present:
        assert best is None
    else:
        assert best is not None and best.runs() == 1 and best.v == min(present)  # type: ignore[union-attr]
