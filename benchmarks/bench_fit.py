"""Resources that fit the runs, on the local Slurm: requested vs used core-time, and TIMEOUTs.

    flock /tmp/pyx-slurm-tests.lock .venv/bin/python benchmarks/bench_fit.py [--base 2] [--runs 64]

A sweep whose run times spread 1x-8x by a parameter (``sleep``: base x 1, 2, 4, 8 seconds), ``--runs`` runs
of each setting, run to the end twice with ``pyexputils submit`` + ``pyexputils watch``:

(a) today's fixed bundles: ``runs_per_task`` 4 (``--rpt``) and the time a user would pick for one run
    (``--time``, default one minute: the slowest run with room to spare, in Slurm's whole minutes);
(b) fitted bundles after that first pass: the results and the ledger are removed, the measured run times
    (``.pyexputils/durations``) kept, ``runs_per_task`` left ``auto``.

Requested core-time is tasks x CPUs x time limit of every array task that ran; used core-time is what the
runner measured (task start to end, x CPUs); TIMEOUTs are the runs the runner recorded as cut off (all from
``pyexputils status --efficiency --json``). Prints both and their ratios; exits 1 when (b) is under an
efficiency of 0.7 or has more TIMEOUTs than (a). SLURM_CONF is taken from ``scripts/slurm-cluster env``
when unset. Run it under the shared lock (the cluster is shared by the tests).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from slurmenv import useTestCluster  # benchmarks/slurmenv.py (this script's folder is on sys.path)
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.7


def pyx(proj: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pyexputils", *args]
    out = subprocess.run(cmd, cwd=proj, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if check and out.returncode not in (0,):
        raise SystemExit(f"{' '.join(args)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def setSlurm(proj: Path, slurm: dict[str, Any]) -> None:
    cfg = json.loads((proj / "config.json").read_text())
    cfg["slurm"] = slurm
    (proj / "config.json").write_text(json.dumps(cfg, indent=1))


def runPass(proj: Path, runs: int, skip: set[str], show: bool) -> dict[str, Any]:
    """submit + watch to the end; the arrays of this pass (not in ``skip``) from status --efficiency."""
    if show:
        dry = pyx(proj, "submit", "e.json", "--runs", str(runs), "--backend", "slurm", "--dry-run").stdout
        print("\n".join(line for line in dry.split("\n# ----")[0].splitlines()))
    t0 = time.time()
    pyx(proj, "submit", "e.json", "--runs", str(runs), "--backend", "slurm")
    w = pyx(proj, "watch", "e.json", "--backend", "slurm", "--poll", "2", "--quiet", "--timeout", "900", check=False)
    wall = time.time() - t0
    if w.returncode != 0:
        raise SystemExit(f"watch: exit {w.returncode}\n{w.stderr[-3000:]}")
    row = json.loads(pyx(proj, "status", "e.json", "--backend", "slurm", "--efficiency", "--json").stdout)[0]
    arrays = [a for a in row["efficiency"] if a["tag"] not in skip]
    asked = sum(a["core_hours_requested"] or 0 for a in arrays) * 3600
    used = sum(a["core_hours_used"] for a in arrays) * 3600
    return {"arrays": arrays, "tags": {a["tag"] for a in arrays}, "tasks": sum(a["tasks_ended"] for a in arrays),
            "asked_s": asked, "used_s": used, "efficiency": used / asked if asked else 0.0,
            "timeouts": sum(a["timeouts"] for a in arrays), "runs": sum(a["runs"] for a in arrays), "wall": wall,
            "done": row["done"], "total": row["total"]}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--base", type=float, default=2.0, help="seconds of the 1x run (default 2)")
    p.add_argument("--runs", type=int, default=64, help="runs of each of the 4 settings (default 64)")
    p.add_argument("--rpt", type=int, default=4, help="(a): runs_per_task (default 4)")
    p.add_argument("--time", default="0:01:00", help="(a): time of one run a user would pick (default 0:01:00)")
    a = p.parse_args()
    useTestCluster()
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()
    sleeps = [round(a.base * f, 3) for f in (1, 2, 4, 8)]
    print(f"cluster: SLURM_CONF={os.environ.get('SLURM_CONF')}, CPUs per node {cpus[:1]}; "
          f"sweep: sleep {sleeps} s x {a.runs} runs = {4 * a.runs} runs, {sum(sleeps) * a.runs:.0f} s of work")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pyx-benchfit-") as tmp:
        proj = Path(tmp)
        (proj / "config.json").write_text(json.dumps({
            "save_path": "results/{params}/{run}", "log_path": ".logs",
            "command": 'sleep {sleep} && mkdir -p "$PYX_SAVE_PATH"', "slurm": {},
        }))  # fmt: skip
        (proj / "e.json").write_text(json.dumps({"metaParameters": {"sleep": sleeps}}))
        setSlurm(proj, {"time": a.time, "runs_per_task": a.rpt})
        print(f"\n(a) fixed: runs_per_task {a.rpt}, time {a.time} per run")
        fixed = runPass(proj, a.runs, set(), show=False)
        for entry in (proj / "results").iterdir():
            if entry.name != ".pyexputils":
                shutil.rmtree(entry)
        state = proj / "results" / ".pyexputils"
        for entry in state.iterdir():  # a fresh sweep that keeps only the measurements
            if entry.name != "durations":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        setSlurm(proj, {"time": a.time})
        print("\n(b) fitted after the first pass (runs_per_task auto, the measurements of (a)); its dry run:")
        fitted = runPass(proj, a.runs, fixed["tags"], show=True)
    print()
    rows = [("(a) fixed", fixed), ("(b) fitted", fitted)]
    print(f"{'':12} {'arrays':>6} {'tasks':>6} {'runs':>5} {'asked core-s':>12} {'used core-s':>11} {'used/asked':>10} {'TIMEOUTs':>8} {'wall s':>7}")
    for name, r in rows:
        print(f"{name:12} {len(r['arrays']):>6} {r['tasks']:>6} {r['runs']:>5} {r['asked_s']:>12.0f} {r['used_s']:>11.0f} "
              f"{r['efficiency']:>10.2f} {r['timeouts']:>8} {r['wall']:>7.0f}")  # fmt: skip
    print(f"ratios (b)/(a): requested core-time {fitted['asked_s'] / fixed['asked_s']:.2f}, "
          f"efficiency {fitted['efficiency'] / fixed['efficiency']:.2f}x, used core-time {fitted['used_s'] / fixed['used_s']:.2f}, "
          f"wall time {fitted['wall'] / fixed['wall']:.2f}")  # fmt: skip
    ok = fitted["efficiency"] >= TARGET and fitted["timeouts"] <= fixed["timeouts"]
    ok = ok and fixed["done"] == fixed["total"] and fitted["done"] == fitted["total"]
    print(f"target: (b) efficiency >= {TARGET} with no more TIMEOUTs than (a): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
