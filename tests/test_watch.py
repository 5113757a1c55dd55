"""`pyexputils watch` on the local backend (fast, no Slurm): resubmission by policy, exit codes, the report with
log paths, --json events, --timeout, resuming a watch, the lock against a second watch, the display."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.display import WatchDisplay
from pyexputils.models import loadConfig
from pyexputils.runner.backend import Backend, BackendError, JobSpec, Limits, LiveTask
from pyexputils.runner.ledger import Ledger
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.policy import Resources
from pyexputils.runner.session import Planned, Session
from pyexputils.runner.watch import Tally

REPO = Path(__file__).resolve().parent.parent
PROG = r'''
import json, os, sys, time
idx, mode, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
attempt = int(os.environ["PYX_ATTEMPT"])
print(f"attempt {attempt} resubmitted {os.environ['PYX_RESUBMITTED']}")
time.sleep(secs)
if mode == "fail_always" or (mode == "fail_once" and attempt == 1):
    print(f"failing on purpose (attempt {attempt})", file=sys.stderr)
    sys.exit(3)
save = os.environ["PYX_SAVE_PATH"]
os.makedirs(save, exist_ok=True)
with open(os.path.join(save, "r.json"), "w") as f:
    json.dump({"idx": idx, "attempt": attempt}, f)
'''


def project(root: Path, modes: list[str], secs: float = 0.0, local: dict[str, Any] | None = None, slurm: dict[str, Any] | None = None) -> str:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["r.json"], "backend": "local",
        "command": f"{sys.executable} prog.py {{index}} {{mode}} {secs}",
        "slurm": {"time": "0:01:00", "runs_per_task": 1, **(slurm or {})}, "local": {"workers": 4, **(local or {})},
    }))  # fmt: skip
    (root / "experiments").mkdir(exist_ok=True)
    (root / "experiments" / "a.json").write_text(json.dumps({"name": "a", "metaParameters": {"mode": modes}}))
    return "experiments/a.json"


def cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=root, capture_output=True, text=True, env=env, timeout=timeout)


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def verdicts(root: Path) -> dict[int, list[str]]:
    led = Ledger.read(str(root / "results"))
    assert led is not None
    with led:
        exp = str((root / "experiments" / "a.json").resolve())
        return {i: [vs[a].cause.value for a in sorted(vs)] for i, vs in led.verdicts(exp).items()}


def test_fail_once_retried_fail_always_final_with_its_log(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok", "fail_once", "fail_always"])
    out = cli(tmp_path, "watch", exp, "--poll", "0.2")
    assert out.returncode == 1, out.stderr
    assert verdicts(tmp_path) == {0: ["COMPLETED"], 1: ["FAILED", "COMPLETED"], 2: ["FAILED", "FAILED"]}
    # the report: plain lines (stderr is not a terminal), the final index with the log of its last attempt
    assert "watch: 2/3 runs done; 1 ended with a final cause:" in out.stderr
    line = next(ln for ln in out.stderr.splitlines() if "index 2: FAILED" in ln)
    log = line.rsplit("log ", 1)[1]
    assert "failing on purpose (attempt 2)" in (tmp_path / log).read_text()
    assert f"watch:   pyexputils errors {exp} groups them by their error" in out.stderr
    assert "\r" not in out.stderr
    assert out.stdout == ""


def test_json_events_and_exit_0(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok", "fail_once"])
    out = cli(tmp_path, "watch", exp, "--poll", "0.2", "--json")
    assert out.returncode == 0, out.stderr
    evs = events(out.stdout)
    assert "watch:" not in out.stderr  # --json: events only (the local pool prints its own progress)
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "submitted" and kinds[-1] == "end"
    subs = [e for e in evs if e["event"] == "submitted"]
    assert [(s["indices"], s["attempt"]) for s in subs] == [("0-1", 1), ("1", 2)]  # ranges, as submit --json says them
    assert all(s["time_limit"] == "0:01:00" and isinstance(s["time"], float) for s in subs)
    ended = [e for e in evs if e["event"] == "ended"]
    assert [(e["index"], e["attempt"], e["cause"], e["exit"]) for e in ended] == [(1, 1, "FAILED", 3)]
    # the progress of a round counts the round's own submissions as queued
    first = next(e for e in evs if e["event"] == "progress")
    assert first["active"] == 2 and first["submitted"] == 2
    assert evs[-1]["final"] == [] and evs[-1]["done"] == 2


def test_nothing_to_do_exits_0_and_submits_nothing(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok"])
    assert cli(tmp_path, "submit", exp).returncode == 0
    out = cli(tmp_path, "watch", exp, "--json")
    assert out.returncode == 0
    assert [e["event"] for e in events(out.stdout)] == ["progress", "end"]
    assert verdicts(tmp_path) == {0: ["COMPLETED"]}  # the submit's attempt, resolved by the watch


def test_second_watch_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok"])
    with Ledger.open(str(tmp_path / "results")):
        out = cli(tmp_path, "watch", exp)
    assert out.returncode == 2
    assert "another pyexputils process" in out.stderr and "is another watch running on results?" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results" / "a").exists()


def test_timeout_exits_3_and_a_second_watch_resumes(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok", "fail_once"], secs=3.0, local={"detach": True})
    first = cli(tmp_path, "watch", exp, "--poll", "0.3", "--timeout", "1", "--json")
    assert first.returncode == 3, first.stderr
    assert events(first.stdout)[-1]["event"] == "timeout"
    # the runs go on in the detached pool; a new watch finds them in the ledger and the queue
    second = cli(tmp_path, "watch", exp, "--poll", "0.3", "--json")
    assert second.returncode == 0, second.stderr
    subs = [e for e in events(second.stdout) if e["event"] == "submitted"]
    assert [(s["indices"], s["attempt"]) for s in subs] == [("1", 2)]  # only the failed one, once
    assert verdicts(tmp_path) == {0: ["COMPLETED"], 1: ["FAILED", "COMPLETED"]}


def test_each_attempt_is_classified_once(tmp_path: Path) -> None:
    """Attempts made by `submit` and then watched: each (index, attempt) gets one verdict, one `ended` event,
    whatever attempt number the latest has. (A local `submit` records how its runs ended once they have run,
    and exits 1 when they failed.)"""
    exp = project(tmp_path, ["fail_always"], slurm={"max_failed_retries": 2})
    assert cli(tmp_path, "submit", exp).returncode == 1  # attempt 1 FAILED, recorded
    assert cli(tmp_path, "submit", exp).returncode == 1  # sends attempt 2: FAILED, recorded
    out = cli(tmp_path, "watch", exp, "--poll", "0.2", "--json")
    assert out.returncode == 1
    ended = Counter((e["index"], e["attempt"]) for e in events(out.stdout) if e["event"] == "ended")
    assert ended and max(ended.values()) == 1, ended
    assert sorted(a for _, a in ended) == [3]  # 3 failures in all: final (max_failed_retries = 2)
    assert verdicts(tmp_path) == {0: ["FAILED", "FAILED", "FAILED"]}


# --- pieces -------------------------------------------------------------------------------------------------
class FlakyBackend(Backend):
    name = "flaky"

    def limits(self, partition: str | None = None) -> Limits:
        return Limits()

    def submit(self, job: JobSpec, test_only: bool = False) -> str:
        raise BackendError("sbatch: still failing")

    def query(self) -> list[LiveTask]:
        return []

    def cancel(self, job_ids: Sequence[str]) -> None:
        pass


def test_resources_recorded_before_sbatch(tmp_path: Path) -> None:
    """A watch killed between sbatch and the ledger leaves a job that is adopted later: the escalated
    resources it asked for must already be in the ledger (by tag), or the escalation would start over."""
    exp = project(tmp_path, ["ok"])
    session = Session(loadConfig(str(tmp_path)), FlakyBackend())
    m = Manifest(tag="t-1", experiment=str(tmp_path / exp), project=str(tmp_path), command="true", tasks=[[0]],
                 log_dir=str(tmp_path / "logs"), status_dir=str(tmp_path / "status"))  # fmt: skip
    job = JobSpec(tag="t-1", manifest_path=str(tmp_path / "m.json"), manifest=m, array_size=1, script="#!/bin/bash\n",
                  options={"time": "0:02:00"}, time_limit_minutes=2)  # fmt: skip
    sweep = session.load([str(tmp_path / exp)])[0]
    with session.openLedger() as led:
        with pytest.raises(BackendError):
            session.send(led, Planned(None, [(job, Resources(2, 400, "mem"), sweep)], Limits()))  # type: ignore[arg-type]
        assert led.runResources()["t-1"] == Resources(2, 400, "mem")
        assert led.tags() == set()  # not submitted: not recorded


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_display_progress_bar_on_a_terminal_plain_lines_otherwise() -> None:
    t = Tally(total=10, done=4, active=3, resubmitted=2)
    tty, plain, out = Tty(), io.StringIO(), io.StringIO()
    WatchDisplay(out=out, err=tty).progress(t)
    assert tty.getvalue().startswith("\r\033[K[############") and "4/10 done, 5 queued/running" in tty.getvalue()
    d = WatchDisplay(out=out, err=plain)
    d.progress(t)
    d.progress(t)  # unchanged: not repeated
    assert plain.getvalue() == "watch: [############------------------] 4/10 done, 5 queued/running, 0 final\n"
    q = WatchDisplay(quiet=True, out=out, err=Tty())
    q.progress(t)
    assert q.err.getvalue() == ""
    d = WatchDisplay(out=out, err=tty)
    d.progress(t)
    d.log("submitted 2 runs")  # a log line clears the bar, prints, redraws the bar
    assert tty.getvalue().endswith("\r\033[Kwatch: submitted 2 runs\n" + d._last)
    assert out.getvalue() == ""


def test_submit_watch_is_watch(tmp_path: Path) -> None:
    exp = project(tmp_path, ["ok", "fail_once"])
    out = cli(tmp_path, "submit", exp, "--watch", "--poll", "0.2", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "watch: all 2 runs done" in out.stderr and "done, " not in out.stderr  # --quiet: no progress lines
    assert verdicts(tmp_path) == {0: ["COMPLETED"], 1: ["FAILED", "COMPLETED"]}


def test_next_pause_backs_off_while_quiet_and_never_exceeds_poll() -> None:
    from pyexputils.runner.watch import nextPause

    # a tenth of the watch's age, from 0.25 s (a short sweep is followed closely) up to --poll
    assert [nextPause(10, 0.01, age) for age in (0, 1, 2.5, 5, 50, 100, 10**5)] == [0.25, 0.25, 0.25, 0.5, 5, 10, 10]
    assert nextPause(10, 3.5, 10) == 3.5  # a slow round: at most half the time goes to rounds
    assert nextPause(0.2, 0.01, 10) == 0.2 and nextPause(0.2, 5.0, 10) == 0.2  # never more than --poll


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 600), st.floats(0, 60), st.floats(0, 10**6), st.floats(0, 10**6))
def test_next_pause_is_bounded_and_grows_with_age(poll: float, took: float, age: float, later: float) -> None:
    from pyexputils.runner.watch import MIN_PAUSE_S, nextPause

    p = nextPause(poll, took, age)
    assert p <= poll and (p >= min(poll, MIN_PAUSE_S) and p >= min(poll, took))  # bounded both ways
    assert nextPause(poll, took, age + later) >= p
    if age <= 10 * poll:  # the wait after the last result: at most a tenth of the sweep's time (or a round)
        assert p <= max(MIN_PAUSE_S, 0.1 * age, took)
