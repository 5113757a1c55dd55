"""The local test cluster's environment for a benchmark run by hand (what `eval "$(scripts/slurm-cluster env)"`
sets), so that `python benchmarks/bench_*.py` works without it."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def useTestCluster() -> None:
    """Export ``scripts/slurm-cluster env`` (SLURM_CONF, ...) unless SLURM_CONF is set already."""
    if "SLURM_CONF" in os.environ:
        return
    env = subprocess.run([str(REPO / "scripts" / "slurm-cluster"), "env"], capture_output=True, text=True).stdout
    for line in env.splitlines():
        k, _, v = line.removeprefix("export ").partition("=")
        os.environ[k] = v
