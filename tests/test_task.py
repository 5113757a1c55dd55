"""The in-job runner (python -m pyexputils.runner.task) with real subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pyexputils.runner import outcomes as outcomesModule
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.outcomes import Outcomes
from pyexputils.runner.status import outcomes, readEvents, readSummary

# The user's program: what it does depends on the swept parameter `mode`.
PROG = r'''
import json, os, signal, sys, time
mode, save = sys.argv[1], os.environ["PYX_SAVE_PATH"]
def done():
    os.makedirs(save, exist_ok=True)
    with open(os.path.join(save, "done.txt"), "w") as f:
        f.write(os.environ["PYX_INDEX"])
if mode == "ok":
    done()
elif mode == "fail":
    print("bad things", file=sys.stderr); sys.exit(3)
elif mode == "nowrite":
    pass
elif mode == "env":
    os.makedirs(save, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("PYX_")}
    env["argv"] = sys.argv[1:]
    json.dump(env, open(os.path.join(save, "env.json"), "w")); done()
elif mode == "sleep":
    print("sleeping", flush=True); time.sleep(60)
elif mode == "trap":  # checkpoints on SIGTERM, then exits 0 without its result
    def onTerm(*_):
        os.makedirs(save, exist_ok=True)
        open(os.path.join(save, "checkpoint"), "w").close(); sys.exit(0)
    signal.signal(signal.SIGTERM, onTerm); time.sleep(60)
elif mode == "stubborn":  # ignores SIGTERM: must be killed
    signal.signal(signal.SIGTERM, signal.SIG_IGN); print("stubborn", flush=True); time.sleep(60)
elif mode == "oom":
    os.kill(os.getpid(), signal.SIGKILL)
elif mode.startswith("nap"):
    time.sleep(float(mode[3:])); done()
'''


class Project:
    """A throwaway project: config.json, one experiment sweeping `mode`, the program above."""

    def __init__(self, root: Path, modes: list[str], require: list[str] | None = None) -> None:
        self.root = root
        (root / "prog.py").write_text(PROG)
        config = {"save_path": "results/{params}/{run}", "command": "python prog.py {mode}",
                  "require": ["done.txt"] if require is None else require}  # fmt: skip
        (root / "config.json").write_text(json.dumps(config))
        (root / "experiments").mkdir()
        self.experiment = str(root / "experiments" / "exp.json")
        Path(self.experiment).write_text(json.dumps({"metaParameters": {"mode": modes}}))
        self.modes = modes

    def manifest(self, tasks: list[list[int]], **kw: Any) -> Manifest:
        kw.setdefault("require", json.loads((self.root / "config.json").read_text())["require"])
        m = Manifest(tag="t1", experiment=self.experiment, project=str(self.root), command="python prog.py {mode}",
                     tasks=tasks, log_dir=str(self.root / ".logs"), status_dir=str(self.root / "status"), **kw)  # fmt: skip
        m.write(str(self.root / "manifest.json"))
        return m

    def start(self, task: int = 0, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "pyexputils.runner.task", str(self.root / "manifest.json"), "--task", str(task)]
        return subprocess.Popen(args, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE)

    def run(self, task: int = 0, env: dict[str, str] | None = None, timeout: float = 30) -> int:
        p = self.start(task, env)
        p.wait(timeout)
        return p.returncode

    def events(self, task: int = 0) -> list[dict[str, Any]]:
        return list(readEvents(str(self.root / "status" / "t1" / f"{task}.jsonl")))

    def ends(self, task: int = 0) -> dict[int, dict[str, Any]]:
        return {e["index"]: e for e in self.events(task) if e["event"] in ("end", "skip")}

    def waitFor(self, kind: str, count: int = 1, task: int = 0, timeout: float = 20) -> None:
        stop = time.time() + timeout
        while time.time() < stop:
            if sum(e["event"] == kind for e in self.events(task)) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"no {count} {kind} events: {self.events(task)}")


def idx(p: Project, mode: str) -> int:
    return p.modes.index(mode)


def test_success_failure_and_missing_require(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "fail", "nowrite"])
    p.manifest([[0, 1, 2]])
    assert p.run() == 1
    ends = p.ends()
    assert ends[0]["cause"] == "COMPLETED" and ends[0]["exit"] == 0 and ends[0]["signal"] is None
    assert ends[1]["cause"] == "FAILED" and ends[1]["exit"] == 3
    assert ends[2]["cause"] == "FAILED" and ends[2]["exit"] == 0 and ends[2]["missing"] == ["done.txt"]
    # per-index logs
    out, err = (tmp_path / ".logs" / "t1" / "1.out"), (tmp_path / ".logs" / "t1" / "1.err")
    assert out.exists() and err.read_text() == "bad things\n"
    assert all((tmp_path / ".logs" / "t1" / f"{i}.out").exists() for i in range(3))


def test_all_completed_exits_zero_and_every_line_parses(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "env"])
    p.manifest([[0, 1, 2, 3]])
    assert p.run() == 0
    lines = (tmp_path / "status" / "t1" / "0.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events][0] == "task_start" and events[-1]["event"] == "task_end"
    assert events[-1]["exit"] == 0 and events[-1]["cut_off"] is False
    for e in events:
        assert {"time", "host", "job", "attempt", "task"} <= set(e)
        assert e["host"] == os.uname().nodename or e["host"]
    starts = [e for e in events if e["event"] == "start"]
    assert [e["index"] for e in starts] == [0, 1, 2, 3] and all(e["pid"] > 0 for e in starts)
    assert {i: o.state for i, o in outcomes([str(tmp_path / "status" / "t1" / "0.jsonl")]).items()} == {
        i: "COMPLETED" for i in range(4)
    }


def test_env_seen_by_runs(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "env"])
    p.manifest([[3]], attempt=2, time_limit_s=50, job_time_limit_s=3600)
    t0 = time.time()
    assert p.run() == 0
    env = json.loads((tmp_path / "results" / "mode-env" / "1" / "env.json").read_text())
    assert env["PYX_INDEX"] == "3" and env["PYX_RUN"] == "1"
    assert env["PYX_ATTEMPT"] == "2" and env["PYX_RESUBMITTED"] == "1"
    assert env["PYX_SAVE_PATH"] == str(tmp_path / "results" / "mode-env" / "1")
    assert env["PYX_TIME_LIMIT"] in ("49", "50") and env["PYX_TASK"] == "0" and env["PYX_TAG"] == "t1"
    assert env["PYX_EXPERIMENT"] == p.experiment and env["argv"] == ["env"]
    assert abs(int(env["PYX_DEADLINE"]) - (t0 + 3600)) <= 2


def test_time_limit_is_what_is_left_of_the_job(tmp_path: Path) -> None:
    p = Project(tmp_path, ["env"])
    p.manifest([[0]], job_time_limit_s=40)
    assert p.run() == 0
    env = json.loads((tmp_path / "results" / "mode-env" / "0" / "env.json").read_text())
    assert 38 <= int(env["PYX_TIME_LIMIT"]) <= 40 and env["PYX_RESUBMITTED"] == "0" and env["PYX_ATTEMPT"] == "1"


def test_done_indices_are_skipped(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "fail"])
    done = tmp_path / "results" / "mode-fail" / "0"
    done.mkdir(parents=True)
    (done / "done.txt").write_text("earlier")
    p.manifest([[0, 1]])
    assert p.run() == 0
    ends = p.ends()
    assert ends[1]["event"] == "skip" and ends[1]["cause"] == "COMPLETED"
    assert not [e for e in p.events() if e["event"] == "start" and e["index"] == 1]


def test_parallel_runs_at_once(tmp_path: Path) -> None:
    p = Project(tmp_path, ["nap0.6"])
    p.manifest([[0, 1, 2, 3]], parallel=4)
    assert p.run() == 0
    starts = {e["index"]: e["time"] for e in p.events() if e["event"] == "start"}
    ends = {e["index"]: e["time"] for e in p.events() if e["event"] == "end"}
    assert max(starts.values()) < min(ends.values())  # all four overlapped


def test_parallel_limit_is_respected(tmp_path: Path) -> None:
    p = Project(tmp_path, ["nap0.2"])
    p.manifest([[0, 1, 2, 3]], parallel=2)
    assert p.run() == 0
    live, most = 0, 0
    for e in p.events():
        live += {"start": 1, "end": -1}.get(e["event"], 0)
        most = max(most, live)
    assert most == 2


def test_usr1_mid_bundle_cuts_off_the_running_index_and_skips_the_rest(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "sleep", "nap0.01"])
    # indices 0 (ok), 1 (sleep), 2 (nap), 3 (ok, run 1)
    p.manifest([[0, 1, 2, 3]])
    proc = p.start()
    p.waitFor("start", 2)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(20) == 1
    ends = p.ends()
    assert ends[0]["cause"] == "COMPLETED"
    assert ends[1]["event"] == "end" and ends[1]["cause"] == "TIMEOUT" and ends[1]["signal"] == signal.SIGTERM
    assert ends[2]["event"] == "skip" and ends[2]["cause"] == "TIMEOUT"
    assert ends[3]["event"] == "skip" and ends[3]["cause"] == "TIMEOUT"
    stop = [e for e in p.events() if e["event"] == "stop"]
    assert stop[0]["name"] == "SIGUSR1" and stop[0]["running"] == [1] and stop[0]["skipped"] == [2, 3]
    assert p.events()[-1]["cut_off"] is True and "outcomes" not in p.events()[-1]  # no account of a cut-off run
    outs = outcomes([str(tmp_path / "status" / "t1" / "0.jsonl")])
    assert outs[1].state == "TIMEOUT" and outs[1].started and not outs[2].started


def test_run_that_checkpoints_on_sigterm(tmp_path: Path) -> None:
    p = Project(tmp_path, ["trap"])
    p.manifest([[0]])
    proc = p.start()
    p.waitFor("start")
    time.sleep(0.3)  # let the program install its handler
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(20) == 1
    end = p.ends()[0]
    assert end["cause"] == "TIMEOUT" and end["exit"] == 0  # exited 0, but without its result
    assert (tmp_path / "results" / "mode-trap" / "0" / "checkpoint").exists()


@pytest.mark.parametrize("near, cause", [(False, "CANCELLED"), (True, "TIMEOUT")])
def test_sigterm_is_cancel_unless_the_deadline_is_near(tmp_path: Path, near: bool, cause: str) -> None:
    p = Project(tmp_path, ["sleep", "ok"])
    p.manifest([[0, 1]], job_time_limit_s=5 if near else 3600)
    proc = p.start()
    p.waitFor("start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 1
    ends = p.ends()
    assert ends[0]["cause"] == cause and ends[1] == {**ends[1], "event": "skip", "cause": cause}


def test_sigterm_after_usr1_stays_timeout(tmp_path: Path) -> None:
    p = Project(tmp_path, ["stubborn"])
    p.manifest([[0]], grace_s=30)
    proc = p.start()
    p.waitFor("start")
    time.sleep(0.3)
    proc.send_signal(signal.SIGUSR1)
    p.waitFor("stop")
    proc.send_signal(signal.SIGTERM)
    p.waitFor("stop", 2)
    proc.send_signal(signal.SIGINT)
    p.waitFor("stop", 3)
    proc.send_signal(signal.SIGINT)  # a second SIGINT kills at once
    assert proc.wait(20) == 1
    end = p.ends()[0]
    assert end["cause"] == "TIMEOUT" and end["signal"] == signal.SIGKILL and end["killed"] is True


def test_per_index_time_limit_kills_and_records_timeout(tmp_path: Path) -> None:
    p = Project(tmp_path, ["stubborn", "ok"])
    p.manifest([[0, 1]], time_limit_s=1, grace_s=0.5)
    t0 = time.time()
    assert p.run() == 1
    assert time.time() - t0 < 20  # the stubborn run sleeps 60 s: it was killed
    ends = p.ends()
    assert ends[0]["cause"] == "TIMEOUT" and ends[0]["signal"] == signal.SIGKILL and ends[0]["killed"]
    assert ends[1]["cause"] == "COMPLETED"  # the next index still ran


def test_unannounced_sigkill_is_out_of_memory(tmp_path: Path) -> None:
    p = Project(tmp_path, ["oom", "ok"])
    p.manifest([[0, 1]])
    assert p.run() == 1
    ends = p.ends()
    assert ends[0]["cause"] == "OUT_OF_MEMORY" and ends[0]["signal"] == signal.SIGKILL
    assert ends[1]["cause"] == "COMPLETED"


def test_task_id_from_slurm_env(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok"])
    p.manifest([[0], [1]])
    args = [sys.executable, "-m", "pyexputils.runner.task", str(tmp_path / "manifest.json")]
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_JOB_ID": "77", "SLURMD_NODENAME": "node7"}
    assert subprocess.run(args, env=env).returncode == 0
    end = p.ends(1)[1]
    assert end["cause"] == "COMPLETED" and end["job"] == "77" and end["host"] == "node7" and end["task"] == 1


def test_bad_usage_exits_two(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "pyexputils.runner.task", str(tmp_path / "nope.json"), "--task", "0"]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 2 and "nope.json" in r.stderr
    p = Project(tmp_path, ["ok"])
    p.manifest([[0]])
    env = {k: v for k, v in os.environ.items() if k != "SLURM_ARRAY_TASK_ID"}
    r = subprocess.run(args[:3] + [str(tmp_path / "manifest.json")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "--task" in r.stderr
    r = subprocess.run(args[:3] + [str(tmp_path / "manifest.json"), "--task", "5"], capture_output=True, text=True)
    assert r.returncode == 2 and "out of range" in r.stderr


def test_unknown_placeholder_fails_each_index_with_the_message(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok"])
    m = p.manifest([[0]])
    m.command = "python prog.py {nope}"
    m.write(str(tmp_path / "manifest.json"))
    assert p.run() == 1
    end = p.ends()[0]
    assert end["cause"] == "FAILED" and "{nope}" in end["error"] and "config.json" in end["error"]


def test_without_require_the_folder_is_enough(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "nowrite"], require=[])
    p.manifest([[0, 1]])
    assert p.run() == 1
    ends = p.ends()
    assert ends[0]["cause"] == "COMPLETED"
    assert ends[1]["cause"] == "FAILED" and ends[1]["missing"] == [str(tmp_path / "results" / "mode-nowrite" / "0")]


def test_nasty_values_reach_the_run_intact(tmp_path: Path) -> None:
    p = Project(tmp_path, ["env"])
    nasty = "it's \"$(touch PWNED)\" `touch PWNED`; touch PWNED ${HOME} *"
    exp = json.loads(Path(p.experiment).read_text())
    Path(p.experiment).write_text(json.dumps({**exp, "note": nasty}))
    m = p.manifest([[0]])
    m.command = "python prog.py {mode} --note {note} --params {params}"
    m.write(str(tmp_path / "manifest.json"))
    assert p.run() == 0
    env = json.loads((tmp_path / "results" / "mode-env" / "0" / "env.json").read_text())
    assert env["argv"] == ["env", "--note", nasty, "--params", "mode-env"]
    assert not list(tmp_path.rglob("PWNED"))


def test_skip_done_false_runs_again(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok"])
    p.manifest([[0]])
    assert p.run() == 0
    p.manifest([[0]], skip_done=False)
    assert p.run() == 0
    assert [e["event"] for e in p.events() if e.get("index") == 0] == ["start", "end", "start", "end"]
    p.manifest([[0]])
    assert p.run() == 0
    assert p.events()[-2]["event"] == "skip" and p.events()[-2]["cause"] == "COMPLETED"


def test_shell_exit_137_counts_as_sigkill(tmp_path: Path) -> None:
    p = Project(tmp_path, ["oom"])
    m = p.manifest([[0]])
    m.command = "python prog.py {mode} && true"  # bash does not exec the program: it reports 128 + 9
    m.write(str(tmp_path / "manifest.json"))
    assert p.run() == 1
    end = p.ends()[0]
    assert end["exit"] == 137 and end["signal"] is None and end["cause"] == "OUT_OF_MEMORY"


def test_readEvents_skips_a_damaged_line_and_a_torn_last_one(tmp_path: Path) -> None:
    p = tmp_path / "0.jsonl"
    assert list(readEvents(str(p))) == []  # no file yet
    p.write_text('{"event":"start","index":1}\n{"event":"end","index":1,"cause":"COMPLETED"}\n')
    assert [e["event"] for e in readEvents(str(p))] == ["start", "end"]
    p.write_text('{"event":"start","index":1}\n{"event":"end",GARBAGE\n{"event":"start","index":2}\n{"event":"end","ind')
    assert [(e["event"], e["index"]) for e in readEvents(str(p))] == [("start", 1), ("start", 2)]


def test_peak_memory_of_each_run_is_recorded(tmp_path: Path) -> None:
    p = Project(tmp_path, ["ok", "nap0.1"])
    p.manifest([[0, 1]])
    assert p.run() == 0
    ends = p.ends()
    assert all(0 < ends[i]["maxrss_mb"] < 4096 for i in (0, 1))  # a small Python program
    assert ends[1]["seconds"] >= 0.1


def test_a_plain_command_starts_without_a_shell_and_a_missing_one_fails_as_in_bash(tmp_path: Path) -> None:
    p = Project(tmp_path, ["env", "ok"])
    m = p.manifest([[0, 1]], skip_done=False)
    m.command = "python prog.py {mode} --check \"$PYX_INDEX\""  # words and a "$VAR": no shell needed
    m.write(str(tmp_path / "manifest.json"))
    assert p.run() == 0
    seen = json.loads((tmp_path / "results" / "mode-env" / "0" / "env.json").read_text())
    assert seen["argv"] == ["env", "--check", "0"]
    m.command = "no-such-program-here {mode}"
    m.write(str(tmp_path / "manifest.json"))
    assert p.run() == 1
    end = p.ends()[0]
    assert end["exit"] == 127 and end["cause"] == "FAILED"
    err = (tmp_path / ".logs" / "t1" / "0.err").read_text()
    assert "no-such-program-here: command not found" in err  # bash's words, from the fallback


def test_the_direct_start_is_what_bash_would_exec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHLVL", raising=False)
    p = Project(tmp_path, ["env"])
    m = p.manifest([[0]], skip_done=False)
    for command, shell in (("python -c {probe}", False), ("python -c {probe} && true", True)):
        exp = json.loads(Path(p.experiment).read_text())
        probe = "import os; open('shlvl', 'w').write(os.environ.get('SHLVL', '-'))"
        Path(p.experiment).write_text(json.dumps({**exp, "probe": probe}))
        m.command = command
        m.write(str(tmp_path / "manifest.json"))
        p.run()  # FAILED (the probe writes no result): what it saw is the point
        assert ((tmp_path / "shlvl").read_text() != "-") is shell  # a shell sets SHLVL; a direct start does not


def test_task_end_carries_the_runs_account_which_reads_as_its_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Project(tmp_path, ["ok", "fail", "nowrite", "oom", "nap0.01"])
    p.manifest([[0, 1, 2, 3, 4, 5]], parallel=2)  # index 5: mode "ok", run 1
    path = str(tmp_path / "status" / "t1" / "0.jsonl")

    def every() -> Outcomes:  # the file read line by line, as before the account
        with monkeypatch.context() as mp:
            mp.setattr(outcomesModule, "readSummary", lambda path: None)
            return Outcomes.read([path])

    for run in (1, 2):  # the second: the same task again (a requeue appends to its file; done indices are skipped)
        size = os.path.getsize(path) if run == 2 else 0
        assert p.run() == 1
        end = p.events()[-1]
        assert end["event"] == "task_end" and end["cut_off"] is False and end["offset"] == size
        assert readSummary(path) is not None
        groups = {(g["cause"], g["exit"], g["signal"], g["started"]): g["indices"] for g in end["outcomes"]}
        assert groups == ({("COMPLETED", 0, None, True): "0,4-5", ("FAILED", 3, None, True): "1", ("FAILED", 0, None, True): "2",
                           ("OUT_OF_MEMORY", None, 9, True): "3"} if run == 1 else
                          {("COMPLETED", None, None, False): "0,4-5", ("FAILED", 3, None, True): "1", ("FAILED", 0, None, True): "2",
                           ("OUT_OF_MEMORY", None, 9, True): "3"})  # fmt: skip
        got, want = Outcomes.read([path]), every()
        assert [(a, b, got.kinds[k]) for a, b, k in zip(got.lo, got.hi, got.kind)] == [(a, b, want.kinds[k]) for a, b, k in zip(want.lo, want.hi, want.kind)]
        assert dict(got.items()) == dict(want.items()) and len(got) == 6
