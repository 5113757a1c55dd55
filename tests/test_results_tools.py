"""The seed's helpers: splitOverParameter, sliceOverParameter, getBest, find, whereParameterEquals,
whereParameterGreaterEq; getBest compares settings (mean over their runs) and skips unread ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import (
    Result,
    find,
    getBest,
    getParam,
    listIndices,
    loadResults,
    rankSettings,
    saveResult,
    sliceOverParameter,
    splitOverParameter,
    where,
    whereParameterEquals,
    whereParameterGreaterEq,
    whereParameterLesserEq,
    whereParametersEqual,
)

SEED = {
    "name": "MountainCar-v0",
    "algorithm": "SARSA",
    "metaParameters": {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]},
}


def make(save_path: str = "results/{name}/{algorithm}/{params}", d: dict[str, Any] = SEED) -> ExperimentDescription:
    return ExperimentDescription(d, config=Config(save_path=save_path))


def results(exp: ExperimentDescription | None = None) -> list[Result]:
    exp = exp or make()
    return [Result("fake/path", exp, i) for i in listIndices(exp)]


# --- seed examples (no data read) -----------------------------------------------------------------
def test_splitOverParameter() -> None:
    bins = splitOverParameter(results(), "alpha")
    assert list(bins) == [1.0, 0.5, 0.25, 0.125]
    assert all(len(b) == 4 and {r.params["alpha"] for r in b} == {k} for k, b in bins.items())


def test_sliceOverParameter() -> None:
    rs = iter(results())
    result = next(rs)
    sl = sliceOverParameter(rs, result, "lambda")
    assert list(sl) == [0.99, 0.98, 0.96, 1.0]  # result itself was taken by next(); alpha 1.0 is kept fixed
    assert all([r.params for r in group] == [{"alpha": 1.0, "lambda": k}] for k, group in sl.items() if k != 1.0)
    assert sl[1.0] == []  # nothing left with alpha 1.0 and lambda 1.0


def test_sliceOverParameter_lists_every_match() -> None:
    exp = make()
    two = results(exp) + results(exp)  # e.g. the same sweep for two agents
    sl = sliceOverParameter(two, two[5], "alpha")
    assert list(sl) == [1.0, 0.5, 0.25, 0.125]
    assert all(len(group) == 2 and {r.params["lambda"] for r in group} == {0.99} for group in sl.values())


def test_find() -> None:
    rs = iter(results())
    result = next(rs)
    match = find(rs, result, ignore=["lambda"])
    assert result.params == {"alpha": 1.0, "lambda": 1.0}
    assert match is not None and match.params["alpha"] == 1.0 and match.params["lambda"] != 1.0
    assert find(results(), results()[5]) is not None and find(results(), results()[5]).idx == 5  # type: ignore[union-attr]
    assert find(results()[:4], results()[5]) is None


def test_whereParameterEquals() -> None:
    got = list(whereParameterEquals(results(), "alpha", 0.25))
    assert [r.params for r in got] == [{"alpha": 0.25, "lambda": v} for v in [1.0, 0.99, 0.98, 0.96]]


def test_whereParameterGreaterEq() -> None:
    got = list(whereParameterGreaterEq(results(), "alpha", 0.25))
    assert sorted({r.params["alpha"] for r in got}) == [0.25, 0.5, 1.0] and len(got) == 12
    assert len(list(whereParameterLesserEq(results(), "lambda", 0.98))) == 8


def test_a_result_without_the_parameter_matches() -> None:
    td = make(d={"metaParameters": {"alpha": [0.1, 0.2]}})
    gtd = make(d={"metaParameters": {"alpha": [0.1, 0.2], "beta": [1, 2]}})
    mixed = results(td) + results(gtd)
    assert len(list(whereParameterEquals(mixed, "beta", 1))) == 2 + 2
    assert len(list(whereParameterGreaterEq(mixed, "beta", 2))) == 2 + 2
    assert len(list(whereParametersEqual(mixed, {"alpha": 0.1, "beta": 2}))) == 1 + 1
    assert len(list(where(mixed, lambda r: r.params["alpha"] > 0.15))) == 1 + 2


def test_nested_parameters_by_dotted_name() -> None:
    exp = make(d={"metaParameters": {"optimizer": {"alpha": [0.1, 0.2], "name": "adam"}, "layers": [{"units": [8, 16]}]}})
    rs = results(exp)
    assert getParam(rs[1].params, "optimizer.alpha") == 0.1 and getParam(rs[1].params, "layers.[0].units") == 16
    assert list(splitOverParameter(rs, "optimizer.alpha")) == [0.1, 0.2]
    assert len(list(whereParameterEquals(rs, "layers.[0].units", 8))) == 2
    assert getParam(rs[0].params, "layers.[3].units", "none") == "none"
    with pytest.raises(KeyError):
        getParam(rs[0].params, "nope")
    match = find(rs, rs[0], ignore=["optimizer"])
    assert match is rs[2]  # rs[0] itself is skipped: same units, other alpha
    assert find(rs[1:], rs[0], ignore=["optimizer"]) is rs[2]  # same units, other alpha


def test_list_values_split_as_tuples() -> None:
    exp = make(d={"metaParameters": {"hidden": [[4, 64], [8, 64]]}})
    assert list(splitOverParameter(results(exp), "hidden")) == [(4, 64), (8, 64)]


# --- getBest reads data --------------------------------------------------------------------------
@pytest.fixture
def sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExperimentDescription:
    """rmsve-like curves: lower is better; alpha 0.25 has the lowest mean, alpha 1.0 the lowest end."""
    monkeypatch.chdir(tmp_path)
    exp = make("results/{name}/{algorithm}/{params}/{run}")
    for i in listIndices(exp, runs=2):
        p = exp.getPermutation(i)
        t = np.linspace(0, 1, 100)
        if p["alpha"] == 1.0:
            c = 2.0 - 1.9 * t  # bad start, best end
        else:
            c = np.full(100, 1.0 + abs(p["alpha"] - 0.25))
        c = c + (1.0 - p["lambda"]) + 0.01 * exp.getRun(i)
        saveResult(exp.buildSaveContext(i), "rmsve.npy", c)
    return exp


def test_getBest_smallest_mean_by_default(sweep: ExperimentDescription) -> None:
    best = getBest(loadResults(sweep, "rmsve.npy"))
    assert best is not None and best.params == {"alpha": 0.25, "lambda": 1.0} and best.runs() == 2


def test_getBest_over_the_last_part_of_the_curve(sweep: ExperimentDescription) -> None:
    best = getBest(loadResults(sweep, "rmsve.npy"), percent=0.1)
    assert best is not None and best.params == {"alpha": 1.0, "lambda": 1.0}
    best = getBest(loadResults(sweep, "rmsve.npy"), steps=5)
    assert best is not None and best.params == {"alpha": 1.0, "lambda": 1.0}
    # the largest value over the last 10 % of steps
    best = getBest(loadResults(sweep, "rmsve.npy"), percent=0.1, comparator=lambda a, b: a > b)
    assert best is not None and best.params == {"alpha": 0.5, "lambda": 0.96}


def test_getBest_compares_settings_not_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make("r/{params}/{run}", d={"metaParameters": {"alpha": [1, 2]}})
    # alpha 1: runs 0.0 and 10.0 (mean 5); alpha 2: runs 4.0 and 4.0 (mean 4). The single best run is alpha 1's.
    for i, v in zip(range(4), [0.0, 4.0, 10.0, 4.0]):
        saveResult(exp.buildSaveContext(i), "x.npy", np.full(3, v))
    best = getBest(loadResults(exp, "x.npy"))
    assert best is not None and best.params == {"alpha": 2}
    ranked = rankSettings(loadResults(exp, "x.npy"))
    assert [(s, n, r.params["alpha"]) for s, n, r in ranked] == [(4.0, 2, 2), (5.0, 2, 1)]


def test_getBest_skips_unread_settings(sweep: ExperimentDescription, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    best_folder = sweep.interpolateSavePath(8)  # alpha 0.25, lambda 1.0, run 0
    shutil.rmtree(Path(best_folder).parent)
    best = getBest(loadResults(sweep, "rmsve.npy"))
    assert best is not None and best.params == {"alpha": 0.25, "lambda": 0.99}
    assert "alpha-0.25_lambda-1.0" in capsys.readouterr().err
    ranked = rankSettings(loadResults(sweep, "rmsve.npy"))
    assert ranked[-1][2].params == {"alpha": 0.25, "lambda": 1.0} and np.isnan(ranked[-1][0]) and ranked[-1][1] == 0


def test_getBest_of_nothing_readable_or_nothing_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    assert getBest([]) is None
    assert getBest(loadResults(exp, "none.npy")) is None  # never a setting without runs


def test_getBest_on_views_scores_what_the_view_gives(sweep: ExperimentDescription) -> None:
    views = (r.reducer(lambda c: c[:10]) for r in loadResults(sweep, "rmsve.npy"))
    best = getBest(views)  # over the first 10 steps alpha 1.0 is worst; 0.25 stays best
    assert best is not None and best.params == {"alpha": 0.25, "lambda": 1.0}
    finals = (r.reducer(lambda c: c[-1]) for r in loadResults(sweep, "rmsve.npy"))
    best = getBest(finals)  # a scalar per setting
    assert best is not None and best.params == {"alpha": 1.0, "lambda": 1.0}
