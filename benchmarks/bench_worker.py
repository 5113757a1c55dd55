"""One timed workload for one implementation; prints one JSON line. Run by bench_results.py.

    python bench_worker.py IMPL WORKLOAD DATADIR [REPEAT]

IMPL: ``ours`` (pyexputils), ``v8`` (PyExpUtils-andnp 8.x) or ``v3`` (PyExpUtils-andnp 3.x), each run
with the interpreter of the environment it is installed in; ``first`` (missing workloads only: pyexputils
without its listing cache, as a first look, every setting folder listed); or ``listing`` (missing workloads only: every
setting folder listed once with 16 threads and nothing else, what any implementation that reads each
setting folder pays; run with ours' interpreter). WORKLOAD: ``getperm``, ``missing``,
``load``, or ``noop`` (imports only: the baseline that call counts subtract). DATADIR holds config.json
and exp.json (and the results); the worker runs from there, as a project would.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

impl, workload, datadir = sys.argv[1], sys.argv[2], sys.argv[3]
repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 3
os.chdir(datadir)
with open("exp.json") as f:
    d = json.load(f)
with open("bench.json") as f:
    spec = json.load(f)

import numpy as np  # noqa: E402

if impl == "listing":
    from concurrent.futures import ThreadPoolExecutor

    def missing(runs: int) -> list[int]:
        root = os.path.join("results", d["name"])  # the missing workloads save to results/{name}/{params}/{run}
        with os.scandir(root) as entries:
            folders = [e.path for e in entries]
        batches = [folders[i : i + 16] for i in range(0, len(folders), 16)]  # 16 listings a thread at a time
        with ThreadPoolExecutor(16) as pool:
            return [n for batch in pool.map(lambda b: [os.listdir(f) for f in b], batches) for names in batch for n in names]

elif impl in ("ours", "first"):
    from pyexputils.models import ExperimentDescription
    from pyexputils.results import getBest, listIndices, listMissingResults, loadResults

    exp: Any = ExperimentDescription(d, path=None)

    def missing(runs: int) -> list[int]:
        return listMissingResults(exp, runs, cache=impl == "ours")  # first: as a first look, every folder listed

    def best() -> Any:
        return getBest(loadResults(exp, spec["filename"]))

else:
    from PyExpUtils.models.ExperimentDescription import ExperimentDescription as Upstream  # type: ignore

    exp = Upstream(d)
    if impl == "v3":
        from PyExpUtils.results.backends.backend import BaseResult  # type: ignore
        from PyExpUtils.results.indices import listIndices  # type: ignore
        from PyExpUtils.results.results import getBest as upstreamBest  # type: ignore

        class NpyResult(BaseResult):  # type: ignore[misc]
            """The seed's Result: np.load of the file; mean() is the stored curve."""

            def _load(self) -> Any:
                return np.load(self.path, allow_pickle=True)

            def _default(self) -> Any:
                return np.full(1, np.nan)

            def mean(self) -> Any:
                return self.load()

            def stderr(self) -> Any:
                return self.load() * 0

            def runs(self) -> int:
                return 1

        def missing(runs: int) -> list[int]:
            # the seed's listMissingResults (documented in 3.x, shipped in no release): one exists() per index
            return [i for i in listIndices(exp, runs) if not os.path.exists(exp.interpolateSavePath(i))]

        def best() -> Any:
            # the seed's loadResults for .npy over 3.x's Result API and getBest
            results = (NpyResult(exp.interpolateSavePath(i) + "/" + spec["filename"], exp, i) for i in listIndices(exp))
            return upstreamBest(results, prefer="small")


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best of ``repeat`` runs, stopping early once the runs took 15 s together."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if sum(times) > 15:
            break
    return min(times), out


result: dict[str, Any] = {"impl": impl, "workload": workload}
if workload == "getperm":
    n = spec["calls"]

    def loop() -> Any:
        get = exp.getPermutation
        for i in range(n):
            p = get(i)
        return p

    result["seconds"], last = timed(loop)
    result["check"] = str(last)[:80]
elif workload.startswith("missing"):
    result["seconds"], out = timed(lambda: missing(spec["runs"]))
    result["check"] = len(out)
elif workload == "load":
    paths = spec["files"]
    if impl == "ours" and repeat > 1:  # the baseline, in the same process: a plain np.load loop over the same files
        def plain() -> Any:
            return [np.load(p) for p in paths]

        base, ours = [], []
        for _ in range(max(repeat, 5)):  # alternate, so both see the same cache and machine state
            base.append(once(plain)[0])
            seconds, out = once(best)
            ours.append(seconds)
        result["baseline_seconds"] = min(base)
        result["seconds"] = min(ours)
    else:
        result["seconds"], out = timed(best)
    params = out.params
    result["check"] = json.dumps(params.get("metaParameters", params), sort_keys=True)
elif workload == "noop":
    result["seconds"] = 0.0
print(json.dumps(result))
