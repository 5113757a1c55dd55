"""PNG plots of results (matplotlib, Agg; ``pip install 'pyexputils[plot]'``): learning curves, sensitivity.

What to draw is computed in :mod:`pyexputils.results.analysis`; this module only draws it. Figures are
``matplotlib.figure.Figure`` objects on an Agg canvas: no pyplot, no global state, no display needed.
matplotlib is imported on first use, so ``pyexputils.results`` works without it.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pyexputils.errors import PyExpUtilsError
from pyexputils.results.analysis import (
    Comparator,
    Curve,
    Sensitivity,
    bestCurves,
    sensitivities,
    smaller,
    sortedValues,
)
from pyexputils.results.results import DuckResult

INSTALL = "pip install 'pyexputils[plot]'"


def newFigure(panels: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, list[Any]]:
    """An Agg figure with ``panels`` axes (at most 3 a row) and the list of its axes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PyExpUtilsError(f"plots need matplotlib: {INSTALL}") from None
    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        fig.delaxes(ax)
    return fig, axes[:panels]


def drawCurves(ax: Any, curves: Iterable[Curve | None], ylabel: str = "", band: bool = True) -> None:
    """One line per curve (mean over runs) with a shaded ±1 stderr band, and a legend; None (no runs) is skipped."""
    for c in curves:
        if c is None:
            continue
        x = np.arange(len(c.mean))
        (line,) = ax.plot(x, c.mean, label=f"{c.label} ({c.runs} run{'s' if c.runs != 1 else ''})")
        if band and np.any(np.isfinite(c.stderr)):
            ok = np.isfinite(c.stderr)
            ax.fill_between(x, c.mean - c.stderr, c.mean + c.stderr, where=ok, color=line.get_color(), alpha=0.2,
                            linewidth=0)  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if ax.lines:
        ax.legend(fontsize="small")


def drawSensitivity(ax: Any, param: str, byExperiment: Mapping[str, Sensitivity], ylabel: str = "") -> None:
    """One line per experiment: the best score at each value of ``param``, with ±1 stderr bars."""
    values: list[Any] = []
    for s in byExperiment.values():
        values += [v for v in s.values if v not in values]
    values = sortedValues(values)
    where = {repr(v): i for i, v in enumerate(values)}
    for name, s in byExperiment.items():
        x = [where[repr(v)] for v in s.values]
        err = np.nan_to_num(np.asarray(s.stderr, dtype=float), nan=0.0)
        ax.errorbar(x, s.scores, yerr=err, marker="o", capsize=3, label=name or None)
    ax.set_xticks(range(len(values)), [str(v) for v in values])
    ax.set_xlabel(param)
    ax.set_ylabel(ylabel)
    if any(byExperiment):
        ax.legend(fontsize="small")


def plotCurves(curves: Iterable[Curve | None], title: str = "", ylabel: str = "") -> Any:
    """A figure of learning curves (one axes, one line and band per curve)."""
    fig, (ax,) = newFigure()
    drawCurves(ax, curves, ylabel)
    if title:
        ax.set_title(title, fontsize="medium")
    return fig


def plotSensitivity(bySensitivity: Mapping[str, Mapping[str, Sensitivity]], ylabel: str = "") -> Any:
    """A figure of parameter sensitivity: one panel per parameter, one line per experiment.

    ``bySensitivity`` is ``{param: {experiment: Sensitivity}}``, as ``analysis.sensitivities`` gives it.
    """
    if not bySensitivity:
        raise PyExpUtilsError("no parameter to plot the sensitivity of (nothing is swept)")
    fig, axes = newFigure(len(bySensitivity), width=4.5, height=3.5)
    for ax, (param, byExperiment) in zip(axes, bySensitivity.items()):
        drawSensitivity(ax, param, byExperiment, ylabel)
    return fig


def savePng(fig: Any, path: str) -> str:
    """Write ``fig`` as a PNG to ``path`` (folders made as needed); returns ``path``."""
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    except OSError as e:
        raise PyExpUtilsError(f"{path}: cannot write the plot: {e.strerror or e}") from None
    return path


def saveCurves(curves: Mapping[str, Curve], out: str, subtitle: str = "", ylabel: str = "") -> str:
    """Write ``curves.png`` (one line and band per curve) into folder ``out``; returns its path."""
    if not curves:
        raise PyExpUtilsError("no run of any setting was found: no learning curve to plot")
    title = "best setting of each experiment" + (f" ({subtitle})" if subtitle else "")
    return savePng(plotCurves(curves.values(), title, ylabel), os.path.join(out, "curves.png"))


def saveSensitivity(
    bySensitivity: Mapping[str, Mapping[str, Sensitivity]], out: str, subtitle: str = "", ylabel: str = ""
) -> str:
    """Write ``sensitivity.png`` (one panel per parameter, one line per experiment) into ``out``; returns its path."""
    if not any(max(s.runs, default=0) for byExp in bySensitivity.values() for s in byExp.values()):
        raise PyExpUtilsError("no run of any setting was found: no sensitivity to plot")
    fig = plotSensitivity(bySensitivity, ylabel)
    fig.suptitle("best over the other parameters at each value" + (f" ({subtitle})" if subtitle else ""),
                 fontsize="medium")  # fmt: skip
    return savePng(fig, os.path.join(out, "sensitivity.png"))


def savePlots(
    groups: Mapping[str, Iterable[DuckResult]],
    out: str,
    *,
    best: bool = True,
    params: Sequence[str] | None = None,
    sensitivity: bool = True,
    steps: int | None = None,
    percent: float = 1.0,
    comparator: Comparator = smaller,
    ylabel: str = "",
) -> list[str]:
    """Write ``curves.png`` (the best setting of each experiment) and ``sensitivity.png`` into ``out``.

    ``groups`` is ``{experiment label: results}``; several experiments share each figure. ``params``
    picks the parameters of the sensitivity panels (default: every swept one). Returns the paths written.
    """
    newFigure()  # fail on a missing matplotlib before reading anything
    lists = {name: list(results) for name, results in groups.items()}
    subtitle = "mean over " + scoredPart(steps, percent)
    written: list[str] = []
    if best:
        written.append(saveCurves(bestCurves(lists, steps, percent, comparator), out, subtitle, ylabel))
    if sensitivity:
        written.append(saveSensitivity(sensitivities(lists, params, steps, percent, comparator), out, subtitle, ylabel))
    return written


def scoredPart(steps: int | None, percent: float) -> str:
    """Which part of the curve a score averages, in words."""
    if steps is not None:
        return f"the last {steps if percent == 1 else f'{percent:g} x {steps}'} steps"
    return "the whole curve" if percent == 1 else f"the last {percent * 100:g}% of the curve"
