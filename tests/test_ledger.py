"""runner.ledger: one writer, submissions and attempts, adoption from a manifest."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyexputils.runner.ledger import Ledger, LedgerBusy, Submission, manifestPath
from pyexputils.runner.manifest import Manifest


def sub(tag: str, job: str, exp: str = "/e.json", attempt: int = 1) -> Submission:
    return Submission(tag, job, "slurm", exp, 2, {"time": "0:10:00"}, attempt, 1.0, f"/m/{tag}.json")


def test_record_latest_and_attempts(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path)) as led:
        led.record(sub("a", "10"), [[0, 1], [2]])
        assert led.nextAttempts("/e.json", [0, 2, 5]) == {0: 2, 2: 2, 5: 1}
        led.record(sub("b", "11", attempt=2), [[2]])
        latest = led.latest("/e.json")
        assert {i: (a.tag, a.task, a.attempt, a.job_id) for i, a in latest.items()} == {
            0: ("a", 0, 1, "10"), 1: ("a", 0, 1, "10"), 2: ("b", 0, 2, "11")}  # fmt: skip
        assert led.indicesOf("a") == [0, 1, 2] and led.indicesOf("a", 1) == [2]
        led.markCancelled(["11"])
        assert [s.cancelled for s in led.submissions("/e.json")] == [False, True]
        assert led.submissions()[0].resources == {"time": "0:10:00"}
    with Ledger.open(str(tmp_path), lock=False) as led:
        assert led.tags() == {"a", "b"}


def test_one_writer(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path)):
        with pytest.raises(LedgerBusy, match="ledger.lock"):
            Ledger.open(str(tmp_path), wait=0.3)
        # another process cannot take it either
        code = f"from pyexputils.runner.ledger import Ledger\ntry:\n Ledger.open({str(tmp_path)!r}, wait=0.2)\nexcept Exception as e: print(type(e).__name__)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "LedgerBusy"
    Ledger.open(str(tmp_path), wait=0).close()  # released


def test_lock_released_when_holder_killed(tmp_path: Path) -> None:
    code = f"from pyexputils.runner.ledger import Ledger\nimport os,signal\nl=Ledger.open({str(tmp_path)!r})\nos.kill(os.getpid(), signal.SIGKILL)"
    subprocess.run([sys.executable, "-c", code])
    Ledger.open(str(tmp_path), wait=0).close()


def test_adopt_from_manifest(tmp_path: Path) -> None:
    m = Manifest(tag="x-1", experiment="/e.json", project="/p", command="true", tasks=[[3, 4], [5]], attempt=2)
    path = manifestPath(str(tmp_path), "x-1")
    m.write(path)
    with Ledger.open(str(tmp_path)) as led:
        s = led.adopt(m, path, "77", "slurm")
        assert s.adopted and led.byTag("x-1") == s
        assert led.indicesOf("x-1") == [3, 4, 5] and led.latest("/e.json")[5].job_id == "77"
