"""What a look at a sweep costs: ``submit`` and ``status`` of N indices over the in-process fake backend,
against the baseline of finding the done indices alone (``doneMask``), measured in the same run.

    .venv/bin/python benchmarks/bench_session.py [--settings 10000] [--runs 10]

The project is made in a temporary folder (``/dev/shm`` when there is one: the ledger's fsyncs are not what
is measured). Phases: submit everything (one attempt per index); status while every task is queued; every
task ends COMPLETED; status before any verdict is recorded (every runner status file is read); a submit that
records the verdicts; status again. Prints each time, peak RSS, and status / doneMask.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyexputils import cli  # noqa: E402
from pyexputils.models import loadExperiment  # noqa: E402
from pyexputils.results import doneMask  # noqa: E402
from pyexputils.runner import session  # noqa: E402
from pyexputils.runner.fake import FakeBackend  # noqa: E402


def timed(*args: str) -> float:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(args))
    assert code == 0, args
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    a = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as folder:
        os.chdir(folder)
        os.makedirs("experiments")
        Path("config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00", "runs_per_task": 100}}))
        side = max(1, a.settings // 100)
        Path("experiments/e.json").write_text(json.dumps({"metaParameters": {"a": list(range(side)), "b": list(range(100))}}))
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        n = side * 100 * a.runs
        exp = loadExperiment("experiments/e.json")
        rows = [("submit (one attempt per index)", timed("submit", "experiments/e.json", "--runs", str(a.runs), "--backend", "fake"))]
        rows.append(("status, every task queued", timed("status", "experiments/e.json", "--backend", "fake")))
        fake.completeAll()
        t0 = time.perf_counter()
        doneMask(exp, a.runs)
        baseline = time.perf_counter() - t0
        rows.append(("status, every task ended, no verdict recorded yet", timed("status", "experiments/e.json", "--backend", "fake")))
        rows.append(("submit that records every verdict", timed("submit", "experiments/e.json", "--backend", "fake")))
        rows.append(("status, verdicts recorded", timed("status", "experiments/e.json", "--backend", "fake")))
        print(f"{n} indices ({side * 100} settings x {a.runs} runs), {len(fake.jobs)} arrays")
        print(f"baseline: doneMask (finding the done indices alone): {baseline:.3f} s")
        for label, seconds in rows:
            print(f"{label}: {seconds:.3f} s ({seconds / baseline:.1f}x the baseline)")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
