"""Print the best setting of each demo experiment (the lowest RMS error averaged over the learning curve),
then write the plots and the per-setting table and say where they are.

    python analyse.py experiments/randomwalk/*.json [--runs 3] [--out results/plots]

With pyexputils.results, the seed's analysis helpers: ``loadResults`` (one lazy Result per setting, its
runs stacked) and ``getBest`` (the smallest mean over runs and over the curve, by default); then
``savePlots`` (learning curves of the best settings, parameter sensitivity; both agents on each figure)
and ``writeSummaryCsv`` (one row per setting). The same from the command line:
``pyexputils plot EXP... --file curve.npy --out DIR`` and ``pyexputils table EXP... --file curve.npy``.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from pyexputils.models import loadExperiment
from pyexputils.results import getBest, loadResults
from pyexputils.results.analysis import experimentLabels, summaries
from pyexputils.results.plots import savePlots
from pyexputils.results.table import writeSummaryCsv

RESULT = "curve.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="results/plots", help="folder of the plots and the table")
    args = parser.parse_args()
    exps = [loadExperiment(path) for path in args.experiments]
    groups = {label: loadResults(exp, RESULT, args.runs) for label, exp in zip(experimentLabels(exps), exps)}
    for exp, results in zip(exps, groups.values()):
        best = getBest(results)
        agent = exp.description.get("agent", exp.getFileName())
        if best is None or best.runs() == 0:
            print(f"{agent:>13}: no results yet")
            continue
        perRun = np.nanmean(np.atleast_2d(best.load()), axis=1)  # each run's RMSE over its curve
        stderr = np.std(perRun, ddof=1) / np.sqrt(len(perRun)) if len(perRun) > 1 else float("nan")
        shown = ", ".join(f"{k}={v}" for k, v in best.params.items())
        final = best.mean()[-1]
        print(f"{agent:>13}: best {shown}: RMSE {np.mean(perRun):.3f} ± {stderr:.3f} over the curve, "
              f"{final:.3f} at the end ({best.runs()} runs)")
    if not any(r.runs() for results in groups.values() for r in results):
        return
    written = savePlots(groups, args.out, ylabel="RMS error")
    table = os.path.join(args.out, "settings.csv")
    writeSummaryCsv(summaries(groups), table)
    print(f"plots: {', '.join(os.path.abspath(p) for p in written)}")
    print(f"table: {os.path.abspath(table)} (one row per setting: runs, mean and stderr over the curve and its last 10 %)")


if __name__ == "__main__":
    main()
