"""Analysis commands of the command line (``plot``, ``table``): registered by :mod:`pyexputils.cli`.

    pyexputils plot  EXP... --file returns.npy [--best] [--param alpha ...] [--runs N] [--last F] [--larger] --out DIR
    pyexputils table EXP... --file returns.npy [--runs N] [--last F] [--out F.csv | --out -]

Bad input raises ``PyExpUtilsError`` with one line naming the file or option (the CLI prints it, exit 2).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Callable

from pyexputils.errors import PyExpUtilsError
from pyexputils.models import ExperimentDescription, loadExperiment
from pyexputils.results.results import ResultList, loadResults

Handler = Callable[[argparse.Namespace], int]


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return x


def _runs(text: str) -> int:
    from pyexputils.cli import _positive  # here: pyexputils.cli imports this module

    return _positive(text)


def register(sub: Any) -> dict[str, Handler]:
    """Add the analysis sub-commands to ``sub`` (argparse sub-parsers); returns their handlers by name."""

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("experiments", nargs="+", metavar="EXP", help="experiment files (JSON/YAML)")
        q.add_argument("--file", required=True, metavar="NAME", help="the result file of each run, e.g. returns.npy")
        q.add_argument("--runs", type=_runs, metavar="N",
                       help="read runs 0..N-1 of each setting (default: the runs found on disk)")  # fmt: skip
        q.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("plot", help="PNG plots: learning curves of the best settings, parameter sensitivity")
    common(p)
    p.add_argument("--best", action="store_true", help="plot the learning curve of each experiment's best setting")
    p.add_argument("--param", action="append", metavar="NAME",
                   help="plot the sensitivity to this parameter (repeatable; default: every swept one)")  # fmt: skip
    p.add_argument("--last", type=_fraction, default=1.0, metavar="FRACTION",
                   help="score settings by the mean over this last fraction of the curve (default 1: all of it)")  # fmt: skip
    p.add_argument("--larger", action="store_true", help="larger is better (returns); default: smaller (errors)")
    p.add_argument("--ylabel", default="", help="label of the value axis (default: the file name)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write curves.png / sensitivity.png into")

    t = sub.add_parser("table", help="one row per setting: parameters, runs found, mean and stderr")
    common(t)
    t.add_argument("--last", type=_fraction, default=0.1, metavar="FRACTION",
                   help="the last_mean/last_stderr columns average this last fraction of the curve (default 0.1)")  # fmt: skip
    t.add_argument("--out", metavar="F.csv", help="write CSV to this file ('-': to stdout) instead of a text table")
    return {"plot": cmdPlot, "table": cmdTable}


def loadGroups(paths: list[str], filename: str, runs: int | None) -> dict[str, ResultList[Any]]:
    """``{label: results}`` of each experiment file; an error naming the file when none of its settings has a run."""
    from pyexputils.results.analysis import experimentLabels

    if not filename or os.path.basename(filename) != filename:
        raise PyExpUtilsError(f"--file {filename!r}: expected the name of a file inside each run's folder")
    exps: list[ExperimentDescription] = [loadExperiment(path) for path in paths]
    groups: dict[str, ResultList[Any]] = {}
    for path, exp, label in zip(paths, exps, experimentLabels(exps)):
        results = loadResults(exp, filename, runs)
        if not any(os.path.exists(p) for r in results for p in r.paths):
            where = results[0].path if len(results) else filename
            raise PyExpUtilsError(f"{path}: no setting has a {filename} yet (the first would be {where})")
        groups[label] = results
    return groups


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def cmdPlot(a: argparse.Namespace) -> int:
    from pyexputils.results.analysis import bestCurves, larger, sensitivities, smaller
    from pyexputils.results.plots import newFigure, saveCurves, saveSensitivity, scoredPart

    newFigure()  # matplotlib is there (else: one line naming the extra), before anything is read
    comparator = larger if a.larger else smaller
    groups = loadGroups(a.experiments, a.file, a.runs)
    both = not a.best and not a.param
    subtitle = f"{'largest' if a.larger else 'smallest'} mean over {scoredPart(None, a.last)}"
    ylabel = a.ylabel or a.file
    files: list[str] = []
    best = bestCurves(groups, percent=a.last, comparator=comparator) if a.best or both else {}
    if a.best or both:
        files.append(saveCurves(best, a.out, subtitle, ylabel))
    bySensitivity = sensitivities(groups, a.param, percent=a.last, comparator=comparator) if a.param or both else {}
    if bySensitivity:
        files.append(saveSensitivity(bySensitivity, a.out, subtitle, ylabel))
    if a.json:
        print(json.dumps({
            "files": files,
            "best": {name: {"params": c.params, "runs": c.runs, "final": _number(float(c.mean[-1]))}
                     for name, c in best.items()},
            "sensitivity": {param: {name: {"values": s.values, "scores": [_number(x) for x in s.scores],
                                           "stderr": [_number(x) for x in s.stderr], "runs": s.runs}
                                    for name, s in byExp.items()}
                            for param, byExp in bySensitivity.items()},
        }, indent=2, default=str))  # fmt: skip
        return 0
    for name, c in best.items():
        print(f"{name}: best {c.label.split(': ', 1)[1]} ({c.runs} runs)")
    for path in files:
        print(f"wrote {path}")
    return 0


def cmdTable(a: argparse.Namespace) -> int:
    from pyexputils.results.analysis import summaries
    from pyexputils.results.table import formatSummary, summaryColumns, writeSummaryCsv

    folder = os.path.dirname(a.out or "")
    if a.out and a.out != "-" and folder and not os.path.isdir(folder):
        raise PyExpUtilsError(f"{a.out}: cannot write the table: no folder {folder}")
    groups = loadGroups(a.experiments, a.file, a.runs)
    rows = summaries(groups if len(groups) > 1 else {"": next(iter(groups.values()))}, a.last)
    if a.json:
        columns, table = summaryColumns(rows)
        data = [{c: (_number(v) if isinstance(v, float) else v) for c, v in zip(columns, row)} for row in table]
        print(json.dumps(data, indent=2, default=str))
    elif a.out == "-":
        writeSummaryCsv(rows, sys.stdout)
    elif a.out:
        writeSummaryCsv(rows, a.out)
        print(f"wrote {a.out} ({len(rows)} settings)")
    else:
        sys.stdout.write(formatSummary(rows))
    return 0
