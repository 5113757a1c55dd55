"""The per-setting summary table (pyexputils.results.table): columns, CSV, aligned text, pandas DataFrame."""
from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import listIndices, loadResults, saveResult
from pyexputils.results.analysis import Summary
from pyexputils.results.table import (
    formatSummary,
    summaryColumns,
    summaryCsv,
    summaryFrame,
    summaryTable,
    writeSummaryCsv,
)

NAN = math.nan
ROWS = [
    Summary("TD", {"alpha": 0.1, "lambda": 0.9}, 3, 0.5, 0.25, 0.125, 0.0625),
    Summary("GTD", {"alpha": 0.1, "beta": 2}, 0, NAN, NAN, NAN, NAN),
]


def test_summaryColumns_union_of_parameters_and_missing_ones_empty() -> None:
    columns, table = summaryColumns(ROWS)
    assert columns == ["experiment", "alpha", "lambda", "beta", "runs", "mean", "stderr", "last_mean", "last_stderr"]
    assert table[0] == ["TD", 0.1, 0.9, None, 3, 0.5, 0.25, 0.125, 0.0625]
    assert table[1][:5] == ["GTD", 0.1, None, 2, 0]


def test_one_unnamed_experiment_has_no_experiment_column() -> None:
    columns, _ = summaryColumns([Summary("", {"a": 1}, 1, 1.0, NAN, 1.0, NAN)])
    assert columns == ["a", "runs", "mean", "stderr", "last_mean", "last_stderr"]


def test_a_parameter_named_like_a_column_is_prefixed() -> None:
    columns, _ = summaryColumns([Summary("", {"runs": 5, "mean": "x"}, 1, 1.0, NAN, 1.0, NAN)])
    assert columns[:2] == ["param:runs", "param:mean"]


def test_csv_exactly() -> None:
    assert summaryCsv(ROWS) == (
        "experiment,alpha,lambda,beta,runs,mean,stderr,last_mean,last_stderr\n"
        "TD,0.1,0.9,,3,0.5,0.25,0.125,0.0625\n"
        "GTD,0.1,,2,0,nan,nan,nan,nan\n"
    )


def test_csv_keeps_full_precision_and_quotes_what_needs_it(tmp_path: Path) -> None:
    rows = [Summary("a,b", {"hidden": (4, 64), "name": 'say "hi"'}, 2, 1 / 3, 0.1, 2 / 3, 0.2)]
    path = tmp_path / "t.csv"
    writeSummaryCsv(rows, str(path))
    back = list(csv.reader(io.StringIO(path.read_text())))
    assert back[1][:3] == ["a,b", "(4, 64)", 'say "hi"'] and float(back[1][4]) == 1 / 3


def test_csv_to_a_path_that_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(PyExpUtilsError, match=r"nope/t\.csv: cannot write the table"):
        writeSummaryCsv(ROWS, str(tmp_path / "nope" / "t.csv"))


def test_formatSummary_aligned() -> None:
    lines = formatSummary(ROWS).splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["experiment", "alpha", "lambda", "beta", "runs", "mean", "stderr", "last_mean", "last_stderr"]
    assert lines[1].split() == ["TD", "0.1", "0.9", "3", "0.5", "0.25", "0.125", "0.0625"]
    assert lines[2].split() == ["GTD", "0.1", "2", "0", "nan", "nan", "nan", "nan"]
    ends = {len(line) for line in lines}
    assert len(ends) == 1  # numbers right-aligned: every row ends in the same column


def test_summaryFrame() -> None:
    pd = pytest.importorskip("pandas")
    df = summaryFrame(ROWS)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == summaryColumns(ROWS)[0]
    assert df["runs"].tolist() == [3, 0] and df.loc[0, "mean"] == 0.5 and math.isnan(df.loc[1, "mean"])
    back = pd.read_csv(io.StringIO(summaryCsv(ROWS)))
    assert back["last_mean"].iloc[0] == 0.125 and math.isnan(back["last_mean"].iloc[1])


def test_summaryTable_from_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    exp = ExperimentDescription({"metaParameters": {"alpha": [0.1, 0.2]}}, config=Config(save_path="r/{params}/{run}"))
    for i in listIndices(exp, runs=2):
        if i != 1:  # alpha 0.2 has run 1 only
            saveResult(exp.buildSaveContext(i), "x.npy", np.array([1.0, 1.0, 1.0, 5.0]) * (1 + exp.getRun(i)))
    df = summaryTable(loadResults(exp, "x.npy"), last=0.25)
    assert list(df.columns) == ["alpha", "runs", "mean", "stderr", "last_mean", "last_stderr"]
    assert df.to_dict("list")["runs"] == [2, 1]
    assert df["mean"].tolist() == [3.0, 4.0] and df["last_mean"].tolist() == [7.5, 10.0]
    assert df["stderr"].iloc[0] == pytest.approx(1.0) and math.isnan(df["stderr"].iloc[1])
    both = summaryTable({"A": loadResults(exp, "x.npy"), "B": loadResults(exp, "x.npy")})
    assert both["experiment"].tolist() == ["A", "A", "B", "B"]


def test_missing_pandas_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(PyExpUtilsError) as e:
        summaryFrame(ROWS)
    assert str(e.value) == "the table as a DataFrame needs pandas: pip install 'pyexputils[pandas]'"
    assert summaryCsv(ROWS).startswith("experiment,")  # CSV needs no pandas
