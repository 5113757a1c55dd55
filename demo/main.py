"""One run of the demo: TD(lambda) or true online TD(lambda) on the 19-state random walk.

    python main.py --exp experiments/randomwalk/td.json --idx 17

Index ``idx`` picks the parameter setting and the run (the run number seeds the random walk). The learning
curve (RMS error of the value estimate after each episode) goes to ``curve.npy`` in the index's save
folder, written atomically: a temporary name, then ``os.replace``.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from pyexputils.models import loadExperiment


def trueValues(n: int) -> np.ndarray:
    """State values of the n-state random walk (reward -1 on the left end, +1 on the right)."""
    return np.linspace(-1.0, 1.0, n + 2)[1:-1]


def episode(n: int, rng: np.random.Generator) -> list[tuple[int, float, int | None]]:
    """(state, reward, next state or None at the end) from the middle state to either end."""
    s, steps = n // 2, []
    while True:
        s2 = s + (1 if rng.random() < 0.5 else -1)
        if s2 < 0:
            steps.append((s, -1.0, None))
            return steps
        if s2 >= n:
            steps.append((s, 1.0, None))
            return steps
        steps.append((s, 0.0, s2))
        s = s2


def tdLambda(n: int, episodes: int, alpha: float, lam: float, rng: np.random.Generator, online: bool) -> np.ndarray:
    """Tabular TD(lambda) with accumulating traces, or true online TD(lambda) (van Seijen & Sutton 2014)."""
    w, truth, curve = np.zeros(n), trueValues(n), np.empty(episodes)
    for ep in range(episodes):
        z, vOld = np.zeros(n), 0.0
        for s, r, s2 in episode(n, rng):
            v, v2 = w[s], (0.0 if s2 is None else w[s2])
            delta = r + v2 - v
            if online:
                z *= lam
                z[s] += 1.0 - alpha * lam * z[s]
                w += alpha * (delta + v - vOld) * z
                w[s] -= alpha * (v - vOld)
                vOld = v2
            else:
                z *= lam
                z[s] += 1.0
                w += alpha * delta * z
            if not np.all(np.isfinite(w)):  # diverged: the rest of the curve is as bad as it gets
                curve[ep:] = np.nan
                return curve
        curve[ep] = np.sqrt(np.mean((w - truth) ** 2))
    return curve


def saveAtomic(folder: str, name: str, array: np.ndarray) -> None:
    """``np.save`` to a temporary name in ``folder``, then rename: readers never see half a file."""
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", required=True)
    parser.add_argument("--idx", type=int, required=True)
    args = parser.parse_args()

    exp = loadExperiment(args.exp)
    params = exp.getPermutation(args.idx)
    run = exp.getRun(args.idx)
    d = exp.description
    rng = np.random.default_rng(run)
    curve = tdLambda(int(d["states"]), int(d["episodes"]), float(params["alpha"]), float(params["lambda"]), rng,
                     online=d["agent"] == "TrueOnlineTD")  # fmt: skip

    saveAtomic(exp.buildSaveContext(args.idx).path, "curve.npy", curve)
    print(f"{d['agent']} {params} run {run}: final RMSE {curve[-1]:.3f}")


if __name__ == "__main__":
    main()
