"""Big sweeps: memory per index stays bounded (tracemalloc peak at two sizes, no timing); a sweep too large to
follow is refused at once in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from pyexputils.runner import session
from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.fake import FakeBackend
from pyexputils.runner.judge import State
from pyexputils.runner.ledger import Ledger, Submission


def project(root: Path, settings: int) -> None:
    (root / "config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00"}}))
    (root / "experiments").mkdir(exist_ok=True)
    (root / "experiments" / "e.json").write_text(json.dumps({"metaParameters": {"a": list(range(settings // 100)), "b": list(range(100))}}))


def peakPerIndex(root: Path, settings: int, runs: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """tracemalloc's peak per index of one look at a sweep (the scheduler, then every index judged) whose every
    index was submitted (tasks of 7) and whose verdicts are recorded: 100 failed once (retried), the rest
    completed; nothing on disk."""
    sub = root / f"p{settings}"
    sub.mkdir()
    project(sub, settings)
    monkeypatch.chdir(sub)
    s = session.Session(backend=FakeBackend())
    n = settings * runs
    path = os.path.realpath("experiments/e.json")
    with s.openLedger() as led:
        led.record(Submission("e-20240101120000abcd-0", "1", "fake", path, -(-n // 7), {}, 1, 1.0, "/m.json"),
                   [list(range(k, min(k + 7, n))) for k in range(0, n, 7)], {})  # fmt: skip
        ok, bad = Verdict(Cause.COMPLETED, True, 0), Verdict(Cause.FAILED, True, 1)
        led.addVerdicts(path, [(i, 1, bad if i % 3 == 0 and i < 300 else ok) for i in range(n)])
    ledger = s.readLedger()
    assert ledger is not None
    with ledger:
        sweeps = s.load(["experiments/e.json"], runs, ledger=ledger)
        tracemalloc.start()
        snap = s.snapshot(ledger, sweeps)  # what status and missing do (the planner's measured run times apart)
        st = s.standing(sweeps[0], snap, ledger)
        c = st.counts()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert c[State.RETRY] == 100 and c[State.MISSING] == n - 100  # completed, results gone: missing again
    return peak / n


def test_memory_per_index_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = peakPerIndex(tmp_path, 10_000, 2, monkeypatch)
    large = peakPerIndex(tmp_path, 100_000, 2, monkeypatch)
    assert large <= 24, f"{large:.1f} bytes per index"  # arrays of a few bytes per index, no object per index
    assert large <= small * 1.5, (small, large)  # the fixed part fades: no cost per index that grows


def test_a_sweep_too_large_to_follow_is_refused_at_once(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"command": "true"}))
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "e.json").write_text(json.dumps({"metaParameters": {k: list(range(10)) for k in "abcdefghi"}}))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    for args in (["status"], ["missing"], ["submit", "--dry-run", "--backend", "local"]):
        out = subprocess.run([sys.executable, "-m", "pyexputils", *args, "experiments/e.json"], cwd=tmp_path,
                             capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and "1,000,000,000 indices" in out.stderr and "split it" in out.stderr


def test_a_watch_round_lists_the_results_folder_once_then_looks_only_at_what_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    project(tmp_path, 200)
    monkeypatch.chdir(tmp_path)
    from pyexputils.models import config as configModule

    configModule._cached.clear()
    walks: list[int] = []
    real = session.doneMask
    monkeypatch.setattr(session, "doneMask", lambda exp, runs: walks.append(runs) or real(exp, runs))
    fake = FakeBackend()
    s = session.Session(backend=fake)
    s.diskRescan = 3600.0
    sweeps = s.load(["experiments/e.json"], 2, command=True)
    with s.openLedger() as led:
        first = s.round(led, sweeps)
        assert first.sent is not None and first.standings[0].counts()[State.MISSING] == 400
        quiet = s.round(led, sweeps)  # nothing ended: the disk is not looked at again
        assert quiet.standings[0].counts()[State.QUEUED] == 400 and walks == [2]
        fake.completeAll()
        done = s.round(led, sweeps)
        assert done.standings[0].counts()[State.DONE] == 400 and len(done.standings[0].verdicts) == 400
        assert walks == [2]  # the ended indices were looked at one by one
        s.diskRescan = 0.0
        s.round(led, sweeps)
        assert walks == [2, 2]
