"""The per-setting summary table: as columns and rows, CSV, aligned text, or a pandas DataFrame.

Columns: ``experiment`` (when there are several, or one is named), each parameter by dotted name, ``runs``
(found), ``mean``/``stderr`` over the whole curve and ``last_mean``/``last_stderr`` over its last part.
pandas is optional: ``pip install 'pyexputils[pandas]'``.
"""
from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable, Mapping, Sequence, TextIO

from pyexputils.errors import PyExpUtilsError
from pyexputils.results.analysis import Summary, summaries
from pyexputils.results.results import DuckResult

STATS = ("runs", "mean", "stderr", "last_mean", "last_stderr")


def summaryColumns(rows: Sequence[Summary]) -> tuple[list[str], list[list[Any]]]:
    """The table as column names and one row of values per setting (parameters a setting lacks are None)."""
    params: list[str] = []
    for s in rows:
        params += [k for k in s.params if k not in params]
    named = [f"param:{p}" if p in STATS or p == "experiment" else p for p in params]
    withExperiment = any(s.experiment for s in rows)
    columns = (["experiment"] if withExperiment else []) + named + list(STATS)
    table = [
        ([s.experiment] if withExperiment else [])
        + [s.params.get(p) for p in params]
        + [s.runs, s.mean, s.stderr, s.lastMean, s.lastStderr]
        for s in rows
    ]
    return columns, table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def writeSummaryCsv(rows: Sequence[Summary], out: str | TextIO) -> None:
    """Write the table as CSV (floats in full precision, NaN as ``nan``) to a path or an open text file."""
    columns, table = summaryColumns(rows)
    if isinstance(out, str):
        try:
            with open(out, "w", newline="") as f:
                writeSummaryCsv(rows, f)
        except OSError as e:
            raise PyExpUtilsError(f"{out}: cannot write the table: {e.strerror or e}") from None
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[_cell(v) for v in row] for row in table])


def summaryCsv(rows: Sequence[Summary]) -> str:
    """The table as CSV text."""
    buf = io.StringIO()
    writeSummaryCsv(rows, buf)
    return buf.getvalue()


def formatSummary(rows: Sequence[Summary], digits: int = 4) -> str:
    """The table as aligned plain text (numbers to ``digits`` significant digits), for a terminal."""
    columns, table = summaryColumns(rows)

    def show(v: Any) -> str:
        return ("nan" if math.isnan(v) else f"{v:.{digits}g}") if isinstance(v, float) else _cell(v)

    cells = [columns] + [[show(v) for v in row] for row in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    numeric = [all(isinstance(row[i], (int, float)) for row in table) for i in range(len(columns))]
    lines = [
        "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)).rstrip()
        for row in cells
    ]
    return "\n".join(lines) + "\n"


def summaryFrame(rows: Sequence[Summary]) -> Any:
    """The table as a pandas ``DataFrame`` (needs ``pip install 'pyexputils[pandas]'``)."""
    try:
        import pandas as pd
    except ImportError:
        raise PyExpUtilsError("the table as a DataFrame needs pandas: pip install 'pyexputils[pandas]'") from None
    columns, table = summaryColumns(rows)
    return pd.DataFrame(table, columns=columns)


def summaryTable(
    results: Iterable[DuckResult] | Mapping[str, Iterable[DuckResult]], last: float = 0.1
) -> Any:
    """One row per setting as a pandas ``DataFrame``: parameters, runs found, mean ± stderr, last part.

    ``results`` is one experiment's results, or ``{experiment label: results}`` for several;
    ``last`` is the fraction of each curve the ``last_*`` columns average over.
    """
    groups = results if isinstance(results, Mapping) else {"": results}
    return summaryFrame(summaries(groups, last))
