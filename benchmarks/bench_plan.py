"""Benchmarks of the submit path.

    python benchmarks/bench_plan.py plan            # plan + render for 10^6 missing indices (no Slurm needed)
    python benchmarks/bench_plan.py e2e [--n 1000]  # N trivial runs end to end on the local Slurm, against a
                                                    # plain `sbatch --array` of N one-run tasks, same session

``e2e`` needs Slurm (``scripts/slurm-cluster up``; SLURM_CONF is taken from ``scripts/slurm-cluster env``
when unset). The pyexputils side is one ``pyexputils submit`` of an experiment with N settings whose command
creates its save folder (done = the folder exists), with ``slurm.runs_per_task`` (default 64) bundling; the
clock stops when every result is on disk and the jobs have left squeue. The plain side is
``sbatch --array=0-(N-1)`` of a script that makes the same folder, one task per run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slurmenv import useTestCluster  # benchmarks/slurmenv.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyexputils.runner.backend import Limits  # noqa: E402
from pyexputils.runner.options import parseSlurm  # noqa: E402
from pyexputils.runner.plan import Request, plan  # noqa: E402
from pyexputils.runner.render import outputPath, renderScript, sbatchOptions  # noqa: E402

TEMPLATE = (REPO / "pyexputils" / "templates" / "sbatch.sh").read_text()


def benchPlan(n: int, slurm: dict[str, object], limits: Limits) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    p = plan([Request("/p/exp.json", range(n), parseSlurm([(slurm, 'config.json')]).plan)], limits)
    scripts = []
    for k, a in enumerate(p.arrays):
        tag = f"exp-bench-{k}"
        opts = sbatchOptions(a, tag, outputPath("/p/.logs", tag, "/p"))
        scripts.append(renderScript(TEMPLATE, a, opts, tag, f"/p/m/{tag}.json", "/p", sys.executable, "/p/exp.json"))
    return time.perf_counter() - t0, len(p.arrays), p.tasks


def cmdPlan(_: argparse.Namespace) -> None:
    limits = Limits(max_array_size=10001, max_job_count=100000, max_submit_jobs=None)
    for label, slurm, lim in [
        ("auto bundling (max_tasks 1000)", {"time": "0:10:00"}, limits),
        ("runs_per_task=1, MaxArraySize 10001, no queue cap", {"time": "0:10:00", "runs_per_task": 1}, Limits(max_array_size=10001)),
        ("runs_per_task=1, MaxArraySize 11, no queue cap", {"time": "0:10:00", "runs_per_task": 1}, Limits(max_array_size=11)),
    ]:
        best = min(benchPlan(1_000_000, slurm, lim) for _ in range(3))
        print(f"plan+render 10^6 indices, {label}: {best[0]:.3f} s ({best[1]} arrays, {best[2]} tasks)")


def squeueLive(names: set[str]) -> int:
    out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%j"], capture_output=True, text=True)
    return sum(1 for line in out.stdout.split() if line in names or any(line.startswith(n) for n in names))


def waitUntil(cond: "object", timeout: float = 900) -> None:
    stop = time.time() + timeout
    while time.time() < stop:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.25)
    raise SystemExit("timed out")


def cmdE2E(a: argparse.Namespace) -> None:
    useTestCluster()
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    print(f"cluster: SLURM_CONF={os.environ.get('SLURM_CONF')}, CPUs per node {cpus[:1]}")
    n = a.n
    with tempfile.TemporaryDirectory(prefix="pyx-bench-") as tmp:
        root = Path(tmp)
        # --- plain sbatch --array of N one-run tasks
        (root / "plain").mkdir()
        script = root / "plain.sh"
        script.write_text(f"#!/bin/bash\n#SBATCH --job-name=plain-bench\n#SBATCH --output=/dev/null\n#SBATCH --time=0:05:00\n"
                          f"mkdir -p {root}/plain/$SLURM_ARRAY_TASK_ID\n")  # fmt: skip
        t0 = time.time()
        subprocess.run(["sbatch", "--parsable", f"--array=0-{n - 1}", str(script)], check=True, capture_output=True)
        waitUntil(lambda: len(list((root / "plain").iterdir())) == n and squeueLive({"plain-bench"}) == 0)
        plain = time.time() - t0
        print(f"plain sbatch --array of {n} one-run tasks: {plain:.1f} s")
        # --- pyexputils submit of N runs
        proj = root / "proj"
        (proj / "experiments").mkdir(parents=True)
        (proj / "config.json").write_text(json.dumps({
            "save_path": "results/{params}", "command": 'mkdir -p "$PYX_SAVE_PATH"',
            "slurm": {"time": "0:05:00", "runs_per_task": a.runs_per_task, "parallel": a.parallel},
        }))  # fmt: skip
        (proj / "experiments" / "e.json").write_text(json.dumps({"metaParameters": {"i": list(range(n))}}))
        t0 = time.time()
        cmd = [sys.executable, "-m", "pyexputils", "submit", "experiments/e.json", "--backend", "slurm"]
        out = subprocess.run(cmd, cwd=proj, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        submitted = time.time() - t0
        results = proj / "results"
        waitUntil(lambda: sum(1 for p in results.iterdir() if not p.name.startswith(".")) == n and squeueLive({"pyx-e-"}) == 0)
        ours = time.time() - t0
        print(f"pyexputils submit of {n} runs (runs_per_task {a.runs_per_task}, parallel {a.parallel}): "
              f"{ours:.1f} s end to end (submit command {submitted:.2f} s)")  # fmt: skip
        print(f"ratio: {ours / plain:.2f} of the plain array's time")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan")
    e = sub.add_parser("e2e")
    e.add_argument("--n", type=int, default=1000)
    e.add_argument("--runs-per-task", type=int, default=64)
    e.add_argument("--parallel", type=int, default=1)
    a = p.parse_args()
    {"plan": cmdPlan, "e2e": cmdE2E}[a.cmd](a)


if __name__ == "__main__":
    main()
