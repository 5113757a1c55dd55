"""The watcher service's pure parts (the `watch` block, the watcher script, the successor rule, the summary)
and the daemon end to end on the local backend (no Slurm; the watcher jobs are in tests/slurm/test_service_slurm.py)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyexputils.errors import ConfigError
from pyexputils.models.config import Config
from pyexputils.runner.causes import Cause
from pyexputils.runner.service import (
    Chain, LogDisplay, Mode, chainName, claimOnce, crashLoop, processAlive, parseWatchBlock, successorAction, summarize, watcherScript,
)  # fmt: skip
from pyexputils.runner.slurm import parseDuration
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.watch import Final, Tally

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).parent.parent


# --- the `watch` block --------------------------------------------------------------------------------
def test_defaults_are_small() -> None:
    o = parseWatchBlock({}, "config.json")
    assert o.sbatch == {"time": "4:00:00", "mem": "1G", "cpus_per_task": 1}
    assert o.limit_s == 4 * 3600 and o.notify is None and o.notify_on == {"end"} and o.poll == 30.0
    assert o.handover(7200) == 600 and o.handover(120) == 20 and o.handover(1000) == 100


def test_sbatch_keys_and_own_keys() -> None:
    o = parseWatchBlock({"partition": "short", "account": "lab", "qos": "fast", "time": "0:30:00", "mem_per_cpu": "500M",
                         "mail_user": "me@lab.org", "mail_type": "FAIL", "notify": "cat > done.json",
                         "notify_on": ["end", "final"], "handover": 0, "poll": 5}, "c.json")  # fmt: skip
    assert o.sbatch["partition"] == "short" and o.sbatch["mem_per_cpu"] == "500M" and "mem" not in o.sbatch
    assert o.limit_s == 1800 and o.handover(1800) == 0.0 and o.poll == 5.0
    assert o.notify_on == {"end", "final"}


@pytest.mark.parametrize("block,message", [
    ({"banana": 1}, "c.json: watch.banana: not an sbatch option"),
    ({"job_name": "x"}, "c.json: watch.job_name: not an sbatch option nor one of handover, notify, notify_on, poll (the service sets it)"),
    ({"dependency": "afterok:1"}, "watch.dependency"),
    ({"time": "soon"}, "c.json: watch.time = 'soon'"),
    ({"mem": "lots"}, "c.json: watch.mem = 'lots'"),
    ({"partition": "a b"}, "c.json: watch.partition = 'a b'"),
    ({"notify": ""}, "c.json: watch.notify = ''"),
    ({"notify": ["mail"]}, "watch.notify"),
    ({"notify_on": ["start"]}, "c.json: watch.notify_on = ['start']: must be a list of end, final"),
    ({"handover": -1}, "c.json: watch.handover = -1"),
    ({"poll": 0}, "c.json: watch.poll = 0"),
    ({"poll": True}, "watch.poll"),
])  # fmt: skip
def test_bad_watch_block_names_file_and_key(block: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parseWatchBlock(block, "c.json")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_config_takes_a_watch_block() -> None:
    assert Config.fromDict({"watch": {"time": "1:00:00"}}).watch == {"time": "1:00:00"}
    with pytest.raises(ConfigError, match="watch must be a mapping"):
        Config.fromDict({"watch": "yes"}, "config.json")


# --- the watcher job -----------------------------------------------------------------------------------
def _chain(tmp: str = "/project") -> Chain:
    return Chain(id="20261128120000abcd", mode=Mode.SLURM, name=chainName(tmp + "/results"), root=tmp,
                 experiments=[tmp + "/experiments/a.json"], runs=3, python="/venv/bin/python", started=0.0)  # fmt: skip


def test_watcher_script_golden() -> None:
    o = parseWatchBlock({"partition": "short", "time": "2:00:00", "mail_user": "me@lab.org", "mail_type": "FAIL"}, "c")
    script = watcherScript(_chain(), o, StateDir("/project/results"))
    golden = GOLDEN / "watcher.sh"
    if os.environ.get("PYX_UPDATE_GOLDEN"):
        golden.write_text(script)
    assert script == golden.read_text()
    assert "#SBATCH --dependency          singleton" in script and "#SBATCH --no-requeue" in script


def test_chain_name_is_per_results_root() -> None:
    assert chainName("/a/results") == chainName("/a/results/")
    assert chainName("/a/results") != chainName("/b/results")
    assert chainName("/a/results").startswith("pyxwatch-")  # never "pyx-": not taken for a sweep's job


jobs = st.lists(st.tuples(st.integers(1, 50).map(str), st.sampled_from(["PENDING", "RUNNING", "COMPLETING"])),
                unique_by=lambda js: js[0], max_size=6)  # fmt: skip


@given(jobs, st.one_of(st.none(), st.integers(1, 50).map(str)))
def test_exactly_one_successor_stays_pending(found: list[tuple[str, str]], me: str | None) -> None:
    submit, cancel = successorAction(found, me)
    pending = [j for j, s in found if s == "PENDING" and j != me]
    after = [j for j in pending if j not in cancel] + (["new"] if submit else [])
    assert len(after) == 1
    assert set(cancel) <= set(pending)
    if pending:
        assert after == [pending[0]]  # the oldest one stays


@pytest.mark.parametrize("text,seconds", [
    ("0:59", 59), ("1:00", 60), ("1:02:03", 3723), ("2-01:00:00", 176400), (" 12:00 \n", 720),
    ("UNLIMITED", None), ("INVALID", None), ("", None),
])  # fmt: skip
def test_parse_duration(text: str, seconds: int | None) -> None:
    assert parseDuration(text) == seconds


def test_crash_loop_counts_starts_since_the_last_finished_round() -> None:
    now = 10_000.0
    starts = [("c", now - 100 * k) for k in range(6)] + [("other", now - 5)]
    assert crashLoop(starts, None, "c", now) == 6
    assert crashLoop(starts, ("c", now - 250), "c", now) == 3  # three started after the last good round
    assert crashLoop(starts, ("other", now - 1), "c", now) == 6  # another chain's round proves nothing here
    assert crashLoop([("c", now - 4000), ("c", now - 3000)], None, "c", now) == 0  # long ago: not a loop
    assert crashLoop([], None, "c", now) == 0


# --- the end ---------------------------------------------------------------------------------------------
def test_summary_counts_finals_by_cause() -> None:
    t = Tally(total=10, done=7, finals=[Final("/e.json", 3, Cause.FAILED, "r", "log"), Final("/e.json", 4, Cause.FAILED, "r", None),
                                        Final("/e.json", 9, Cause.CANCELLED, "r", None)])  # fmt: skip
    s = summarize(t, _chain(), "17")
    assert (s["event"], s["total"], s["done"], s["final"], s["watcher"]) == ("end", 10, 7, 3, "17")
    assert s["final_causes"] == {"FAILED": 2, "CANCELLED": 1}
    assert [f["index"] for f in s["finals"]] == [3, 4, 9]
    json.dumps(s)


def test_claim_once(tmp_path: Path) -> None:
    path = str(tmp_path / "service" / "notified-x")
    assert claimOnce(path) is True
    assert claimOnce(path) is False


def test_log_lines_are_time_stamped_and_progress_is_said_once() -> None:
    out = io.StringIO()
    d = LogDisplay(out)
    d.progress(Tally(total=4, done=1))
    d.progress(Tally(total=4, done=1))
    d.event("ended", experiment="e", index=2, attempt=1, cause="FAILED")
    d.event("progress")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[") and lines[0].endswith("1/4 done, 0 queued/running, 0 final")
    stamp = float(lines[0].split("]")[0].split()[-1])
    assert abs(stamp - time.time()) < 60
    assert "index 2 attempt 1: FAILED" in lines[1]


# --- the command line and the daemon (local backend) --------------------------------------------------
PROG = r'''
import os, sys, time
v, secs = sys.argv[1], float(sys.argv[2])
time.sleep(secs)
if v == "2":
    sys.exit("broken on purpose")
os.makedirs(os.environ["PYX_SAVE_PATH"], exist_ok=True)
open(os.path.join(os.environ["PYX_SAVE_PATH"], "done"), "w").close()
'''


def project(root: Path, secs: float = 0.2, watch: dict | None = None) -> str:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["done"], "backend": "local",
        "command": f"{sys.executable} prog.py {{v}} {secs}", "local": {"workers": 2},
        "slurm": {"max_failed_retries": 0},
        "watch": {"poll": 0.5, "notify": "cat >> notified.jsonl", **(watch or {})},
    }))  # fmt: skip
    (root / "experiments").mkdir()
    (root / "experiments" / "a.json").write_text(json.dumps({"metaParameters": {"v": [1, 2, 3]}}))
    return "experiments/a.json"


def cli(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=cwd or root, capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def waitFor(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    stop = time.time() + timeout
    while time.time() < stop:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("args,message", [
    (["submit", "experiments/a.json", "--detach"], "--detach and --daemon go with --watch"),
    (["submit", "experiments/a.json", "--watch", "--detach", "--daemon"], "one of them"),
    (["watch", "experiments/a.json", "--detach"], "this sweep's backend is local: use --daemon"),
    (["watch", "experiments/a.json", "--daemon", "--timeout", "60"], "--timeout is for a watch on this terminal"),
    (["submit", "experiments/a.json", "--watch", "--daemon", "--poll", "0"], "--poll 0.0: expected a positive number"),
])  # fmt: skip
def test_detach_errors_submit_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    project(tmp_path)
    out = cli(tmp_path, *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.splitlines()) == 1
    assert not (tmp_path / "results" / ".pyexputils" / "service" / "chain.json").exists()
    assert not list(tmp_path.glob("results/a/*"))


def test_a_bad_watch_block_is_refused_before_anything_is_submitted(tmp_path: Path) -> None:
    exp = project(tmp_path, watch={"mem": "lots"})
    out = cli(tmp_path, "submit", exp, "--watch", "--daemon")
    assert out.returncode == 2 and "config.json: watch.mem = 'lots'" in out.stderr
    assert not (tmp_path / "results" / ".pyexputils" / "ledger.sqlite").exists()


def test_status_without_a_service(tmp_path: Path) -> None:
    project(tmp_path)
    out = cli(tmp_path, "service", "status")
    assert out.returncode == 0 and "no watcher service has run" in out.stdout
    assert json.loads(cli(tmp_path, "service", "status", "--json").stdout) == {"chain": None}
    stop = cli(tmp_path, "service", "stop")
    assert stop.returncode == 0 and "no watcher service" in stop.stdout


def test_daemon_runs_the_sweep_detached_and_notifies_once(tmp_path: Path) -> None:
    exp = project(tmp_path)
    t0 = time.time()
    out = cli(tmp_path, "submit", exp, "--runs", "2", "--watch", "--daemon", "--poll", "0.3")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "results/.pyexputils/service/chain.json").read_text())["poll"] == 0.3
    assert "watch daemon pid" in out.stdout and time.time() - t0 < 30
    pid = int(out.stdout.split("pid ")[1].split()[0])
    state = tmp_path / "results" / ".pyexputils" / "service"
    waitFor(lambda: (state / "summary.json").exists(), 90, "the daemon to settle the sweep")
    waitFor(lambda: not processAlive(pid), 30, "the daemon to exit")
    notes = [json.loads(line) for line in (tmp_path / "notified.jsonl").read_text().splitlines()]
    assert len(notes) == 1
    assert (notes[0]["event"], notes[0]["total"], notes[0]["done"], notes[0]["final"]) == ("end", 6, 4, 2)
    assert notes[0]["final_causes"] == {"FAILED": 2}
    status = json.loads(cli(tmp_path, "service", "status", "--json", cwd=tmp_path / "experiments").stdout)
    assert status["mode"] == "daemon" and status["running"] == [] and status["ended"]["done"] == 4
    assert status["experiments"][0]["done"] == 4 and status["experiments"][0]["final"] == 2
    text = cli(tmp_path, "service", "status").stdout
    assert "nothing runs: the sweep ended" in text and "4/6 done, 2 final (FAILED 2)" in text
    logs = cli(tmp_path, "service", "logs", "--tail", "0").stdout
    assert f"daemon pid {pid} starts" in logs and "the sweep is settled: 4/6 done, 2 final" in logs
    assert "notify (end): exit 0" in logs


def test_daemon_stop_leaves_the_runs_and_a_fresh_start_finishes(tmp_path: Path) -> None:
    exp = project(tmp_path, secs=6)
    out = cli(tmp_path, "watch", exp, "--daemon")
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.split("pid ")[1].split()[0])
    again = cli(tmp_path, "watch", exp, "--daemon")
    assert again.returncode == 2 and "a watcher service runs already (daemon: " in again.stderr
    first = json.loads(cli(tmp_path, "service", "status", "--json").stdout)
    assert first["running"] == [str(pid)]
    waitFor(lambda: "submitted 3 runs" in (tmp_path / "results/.pyexputils/service/daemon.log").read_text(), 30, "the submit")
    stop = cli(tmp_path, "service", "stop")
    assert stop.returncode == 0 and f"cancelled daemon pid {pid}" in stop.stdout
    assert not processAlive(pid)
    status = json.loads(cli(tmp_path, "service", "status", "--json").stdout)
    assert status["running"] == [] and status["stopped"] is True
    row = status["experiments"][0]
    assert "CANCELLED" not in row["final_causes"]  # the runs went on without the daemon
    assert row["running"] + row["queued"] + row["done"] + row["final"] == 3
    assert not (tmp_path / "notified.jsonl").exists()
    fresh = cli(tmp_path, "watch", exp, "--daemon")
    assert fresh.returncode == 0, fresh.stderr
    second = json.loads(cli(tmp_path, "service", "status", "--json").stdout)
    assert second["chain"] != first["chain"] and not second["stopped"]
    notified = tmp_path / "notified.jsonl"  # the notify command creates it, then writes its line: wait for the line
    waitFor(lambda: notified.exists() and notified.read_text().endswith("\n"), 60, "the fresh daemon to settle the sweep")
    notes = [json.loads(line) for line in (tmp_path / "notified.jsonl").read_text().splitlines()]
    assert [(n["chain"], n["done"], n["final"]) for n in notes] == [(second["chain"], 2, 1)]
