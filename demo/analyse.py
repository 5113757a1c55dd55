"""Print the best setting of each demo experiment: lowest RMS error averaged over the learning curve.

    python analyse.py experiments/randomwalk/*.json [--runs 3]

Uses pyexputils.results (``loadResults``, ``getBest``), the seed's analysis helpers.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from pyexputils.models import ExperimentDescription, loadExperiment

RESULT = "curve.npy"


def bestWithResults(exp: ExperimentDescription, runs: int) -> tuple[dict[str, Any], float, float, int] | None:
    """(params, mean, stderr, runs) of the best setting through pyexputils.results; None if it is missing."""
    try:
        from pyexputils.results import getBest, loadResults
    except ImportError:
        return None
    best = getBest(loadResults(exp, RESULT))  # the smallest mean over the curve is the best (the default)
    curves = np.asarray(best.load())  # one learning curve per run
    means = np.nanmean(curves, axis=1)
    return best.params, float(np.mean(means)), float(np.std(means) / np.sqrt(len(means))), len(means)


def bestByHand(exp: ExperimentDescription, runs: int) -> tuple[dict[str, Any], float, float, int]:
    """The same, reading every run's file directly (the fallback)."""
    scores: list[tuple[float, float, int, int]] = []
    for perm in range(exp.numPermutations()):
        means = []
        for run in range(runs):
            path = os.path.join(exp.interpolateSavePath(run * exp.numPermutations() + perm), RESULT)
            if os.path.exists(path):
                means.append(float(np.nanmean(np.load(path))))
        if means:
            m = np.asarray(means)
            score = float(np.mean(m)) if np.all(np.isfinite(m)) else np.inf
            scores.append((score, float(np.std(m) / np.sqrt(len(m))), len(m), perm))
    if not scores:
        raise SystemExit(f"{exp.path}: no results yet")
    score, err, n, perm = min(scores)
    return exp.getPermutation(perm), score, err, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for path in args.experiments:
        exp = loadExperiment(path)
        found = bestWithResults(exp, args.runs) or bestByHand(exp, args.runs)
        params, mean, stderr, n = found
        agent = exp.description.get("agent", exp.getFileName())
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        print(f"{agent:>13}: best {shown}  mean RMSE {mean:.3f} ± {stderr:.3f} ({n} runs)")


if __name__ == "__main__":
    main()
