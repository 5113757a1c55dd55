"""The runner and Slurm's early time-limit warning: Slurm checks limits every 30 s and sends ``--signal=B:USR1@N``
when the limit falls before its next check, so on a 1-minute job USR1 may arrive a second after the start. Seen
for real in the watch fault matrix (every run of a 1-minute sweep cut off at ~1 s). With a known deadline the
runner waits until ``grace_s + WARN_MARGIN_S`` before it; without one it stops at once (as before)."""
from __future__ import annotations

import signal
import time
from pathlib import Path

from test_task import Project  # the runner's own test helpers (tests/ is on sys.path)


def test_early_usr1_lets_a_short_run_finish(tmp_path: Path) -> None:
    p = Project(tmp_path, ["nap2"])
    p.manifest([[0]], job_time_limit_s=60, grace_s=1.0)
    proc = p.start()
    p.waitFor("start")
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(20) == 0
    assert p.ends()[0]["cause"] == "COMPLETED"
    warn = [e for e in p.events() if e["event"] == "warning"]
    assert len(warn) == 1 and warn[0]["stop_at"] == round(warn[0]["deadline"] - 3.0, 3)
    assert not [e for e in p.events() if e["event"] == "stop"]


def test_early_usr1_stops_before_the_deadline(tmp_path: Path) -> None:
    p = Project(tmp_path, ["sleep"])
    p.manifest([[0]], job_time_limit_s=6, grace_s=1.0)  # stop 3 s before the deadline
    t0 = time.time()
    proc = p.start()
    p.waitFor("start")
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(20) == 1
    end = p.ends()[0]
    assert end["cause"] == "TIMEOUT" and end["signal"] == signal.SIGTERM
    stop = [e for e in p.events() if e["event"] == "stop"]
    assert stop and stop[0]["name"] == "SIGUSR1" and stop[0]["time"] - t0 < 6.0
    assert stop[0]["time"] >= [e for e in p.events() if e["event"] == "warning"][0]["stop_at"]
