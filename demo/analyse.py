"""Print the best setting of each demo experiment: the lowest RMS error averaged over the learning curve.

    python analyse.py experiments/randomwalk/*.json [--runs 3]

With pyexputils.results, the seed's analysis helpers: ``loadResults`` (one lazy Result per setting, its
runs stacked) and ``getBest`` (the smallest mean over runs and over the curve, by default).
"""
from __future__ import annotations

import argparse

import numpy as np

from pyexputils.models import loadExperiment
from pyexputils.results import getBest, loadResults

RESULT = "curve.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for path in args.experiments:
        exp = loadExperiment(path)
        best = getBest(loadResults(exp, RESULT, args.runs))
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


if __name__ == "__main__":
    main()
