"""What ``ls`` and ``errors`` cost on a large sweep, over the in-process fake backend.

    .venv/bin/python benchmarks/bench_inspect.py [--settings 10000] [--runs 10] [--fail-every 7]

10^5 indices by default, in tasks of 100; every ``--fail-every``-th task ends FAILED (each of its indices
gets a stderr file ending in one of three errors, with its own numbers and save path), the others COMPLETED.
A submit records the verdicts, then ``status``, ``ls``, ``ls --plain``, ``ls --json``, ``ls --state FINAL`` and
``errors`` are timed, each once, with the number of lines each printed.
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
from pyexputils.runner import session  # noqa: E402
from pyexputils.runner.causes import Cause  # noqa: E402
from pyexputils.runner.fake import FakeBackend  # noqa: E402

ERRORS = [
    "FloatingPointError: loss diverged to nan at step {n} (alpha={a}), checkpoint {save}/ckpt.pt",
    "FileNotFoundError: [Errno 2] No such file or directory: '{save}/warmstart-{n}.npy'",
    "RuntimeError: CUDA out of memory. Tried to allocate {n}.00 MiB (GPU 0; 0x{n:x} in use)",
]


def timed(*args: str) -> tuple[float, int]:
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    assert code in (0, 1), args
    return time.perf_counter() - t0, out.getvalue().count("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--fail-every", type=int, default=7)
    parser.add_argument("--profile", metavar="COMMAND", help="also print cProfile's top functions of this command (ls, errors, ...)")
    a = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as folder:
        os.chdir(folder)
        os.makedirs("experiments")
        Path("config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00", "runs_per_task": 100, "max_failed_retries": 0}}))
        side = max(1, a.settings // 100)
        Path("experiments/e.json").write_text(json.dumps({"metaParameters": {"a": list(range(side)), "b": list(range(100))}}))
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        n = side * 100 * a.runs
        assert cli.main(["submit", "experiments/e.json", "--runs", str(a.runs), "--backend", "fake"]) == 0
        failed = 0
        for job in list(fake.jobs.values()):
            assert job.spec is not None
            for t in job.tasks:
                if t.task % a.fail_every:
                    fake.end(job.id, t.task, Cause.COMPLETED)
                    continue
                fake.end(job.id, t.task, Cause.FAILED)
                for i in job.indices(t.task):
                    err = Path(".logs", job.tag, f"{i}.err")
                    err.parent.mkdir(parents=True, exist_ok=True)
                    save = f"results/e/a-{i // 100 % side}_b-{i % 100}/{i // (side * 100)}"
                    err.write_text("Traceback (most recent call last):\n  File \"train.py\", line 9\n"
                                   + ERRORS[i % 3].format(n=i * 13, a=i % side, save=save) + "\n")  # fmt: skip
                    failed += 1
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(["submit", "experiments/e.json", "--backend", "fake"])  # records every verdict
        print(f"{n} indices ({side * 100} settings x {a.runs} runs), {len(fake.jobs)} arrays, {failed} failed")
        for args in (["status"], ["ls"], ["ls", "--plain"], ["ls", "--json"], ["ls", "--state", "FINAL"], ["errors"], ["errors", "--json"]):
            seconds, lines = timed(args[0], "experiments/e.json", *args[1:], "--backend", "fake")
            print(f"{' '.join(args)}: {seconds:.3f} s, {lines} lines")
        if a.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(timed, a.profile, "experiments/e.json", "--backend", "fake")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
