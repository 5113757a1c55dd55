"""End to end on the local Slurm: N trivial runs from one command to every result on disk, pyexputils against a
hand-written ``sbatch --array`` that loops over its runs (the baseline, measured in the same run).

    .venv/bin/python benchmarks/bench_e2e.py [--runs 1000 10000]      # the local cluster up (scripts/slurm-cluster up)

Each run creates its save folder (``mkdir -p``), nothing else. Variants, one after the other on an idle cluster:

- ``hand``: ``sbatch --array=0-(N/10-1)`` of a bash loop over 10 runs each (what a user writes by hand); the time
  until the N folders exist (polled every 0.1 s);
- ``watch``: ``pyexputils submit EXP --runs N --watch`` with the defaults (bundling ``auto``, ``--poll`` 10);
  the time until the command returns (every result on disk and every verdict recorded), and until the last
  result was on disk;
- ``watch-rpt10``: the same with ``--runs-per-task 10``.

Prints one line per variant with its ratio to ``hand``, and where the time went: until the first task started
(for pyexputils: the command's start-up, reading the cluster's limits, planning, ``sbatch``; then Slurm's
scheduling), until the last task started, until the last result was on disk, until the command returned.
The package is byte-compiled first (``compileall``, as a non-editable ``pip install`` does): this machine sets
``PYTHONDONTWRITEBYTECODE``, which would otherwise make every Python process compile pyexputils again.
"""
from __future__ import annotations

import argparse
import compileall
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slurmenv import useTestCluster  # benchmarks/slurmenv.py (this script's folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
PER_TASK = 10


def project(root: Path, settings: int) -> str:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "backend": "slurm",
        "command": "mkdir -p \"$PYX_SAVE_PATH\"", "slurm": {"time": "0:05:00"},
    }))  # fmt: skip
    (root / "experiments").mkdir()
    (root / "experiments" / "e2e.json").write_text(json.dumps({"name": "e2e", "metaParameters": {"i": list(range(settings))}}))
    return "experiments/e2e.json"


def count(folder: Path) -> int:
    try:
        return sum(1 for _ in folder.iterdir())
    except FileNotFoundError:
        return 0


def hand(base: Path, n: int) -> tuple[float, float, float, float]:
    root = base / "hand"
    root.mkdir(parents=True)
    out = root / "results"
    script = f"""#!/bin/bash
#SBATCH --array=0-{n // PER_TASK - 1}
#SBATCH --time=0:05:00
#SBATCH --output=/dev/null
echo $EPOCHREALTIME > {root}/start-$SLURM_ARRAY_TASK_ID
for k in $(seq 0 {PER_TASK - 1}); do
    mkdir -p {out}/$((SLURM_ARRAY_TASK_ID * {PER_TASK} + k))
done
"""
    t0, w0 = time.monotonic(), time.time()
    subprocess.run(["sbatch", "--parsable"], input=script, text=True, check=True, capture_output=True)
    while count(out) < n:
        time.sleep(0.1)
    took = time.monotonic() - t0
    starts = [float(Path(f).read_text()) - w0 for f in glob.glob(f"{root}/start-*")]
    return took, took, min(starts), max(starts)


def watch(base: Path, n: int, name: str, *extra: str) -> tuple[float, float, float, float]:
    """Seconds until the command returned, until the last result was on disk, until the first and the last
    task started (the runners' ``task_start`` events)."""
    root = base / name
    exp = project(root, n)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0, w0 = time.monotonic(), time.time()
    p = subprocess.Popen([sys.executable, "-m", "pyexputils", "submit", exp, "--runs", "1", "--watch", "--quiet", *extra],
                         cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    results = None
    while p.poll() is None:
        if results is None and count(root / "results" / "e2e") >= n:
            results = time.monotonic() - t0
        time.sleep(0.1)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{name}: exit {p.returncode}: {(p.stderr.read() if p.stderr else '')[-2000:]}")
    got = count(root / "results" / "e2e")
    if got != n:
        raise SystemExit(f"{name}: {got} of {n} results")
    starts = []
    for f in glob.glob(f"{root}/results/.pyexputils/status/*/*.jsonl"):
        with open(f) as fh:
            starts.append(json.loads(fh.readline())["time"] - w0)
    return took, results if results is not None else took, min(starts), max(starts)


def idle() -> None:
    while subprocess.run(["squeue", "-h", "--me"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[1000])
    args = ap.parse_args()
    useTestCluster()
    compileall.compile_dir(str(REPO / "pyexputils"), quiet=1)
    for n in args.runs:
        base = Path(tempfile.mkdtemp(prefix="pyx-e2e-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        try:
            idle()
            rows = [("hand", *hand(base, n))]
            baseline = rows[0][1]
            for name, extra in (("watch", ()), ("watch-rpt10", ("--runs-per-task", str(PER_TASK)))):
                idle()
                rows.append((name, *watch(base, n, name, *extra)))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        print(f"{n} trivial runs on the local Slurm ({os.cpu_count()} cores here):")
        for name, took, results, first, last in rows:
            print(f"  {name:<12} {took:7.1f} s   {took / baseline:5.2f}x hand   (first task started after {first:.1f} s, "
                  f"the last after {last:.1f} s; every result on disk after {results:.1f} s)")


if __name__ == "__main__":
    main()
