"""``ls``, ``logs`` and ``errors`` (and ``--json``) on a local sweep with known failures.

The sweep: v (slowest) x k, 2 runs = 24 indices; v=ok and v=ok2 complete, v=boom raises the same ValueError
(with a different number and path each time), v=exit prints a line and exits 3. ``watch`` retries each
failure once (max_failed_retries 1), so the 12 failures end FINAL after 2 attempts.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROG = r'''
import os, sys
idx, v = int(sys.argv[2]), sys.argv[3]
print("running", idx, v)
if v == "boom":
    raise ValueError(f"alpha {idx * 0.1} is too large for {os.environ['PYX_SAVE_PATH']}")
if v == "exit":
    print(f"giving up at step {idx}", file=sys.stderr)
    sys.exit(3)
save = os.environ["PYX_SAVE_PATH"]
os.makedirs(save, exist_ok=True)
open(os.path.join(save, "done.json"), "w").write("{}")
'''
BOOM = [3, 4, 5, 15, 16, 17]
EXIT = [9, 10, 11, 21, 22, 23]


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=root, capture_output=True, text=True, env=env, timeout=300)


def makeProject(root: Path) -> None:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["done.json"], "backend": "local",
        "command": f"{sys.executable} prog.py {{experiment}} {{index}} {{v}}",
        "slurm": {"time": "0:01:00", "runs_per_task": 3}, "local": {"workers": 2},
    }))  # fmt: skip
    (root / "experiments").mkdir()
    (root / "experiments" / "a.json").write_text(json.dumps({"metaParameters": {"v": ["ok", "boom", "ok2", "exit"], "k": [1, 2, 3]}}))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inspect")
    makeProject(root)
    first = cli(root, "submit", "experiments/a.json", "--runs", "2")
    assert first.returncode == 1, first.stdout + first.stderr  # runs failed on the local backend
    out = cli(root, "watch", "experiments/a.json", "--poll", "0.2", "--quiet")
    assert out.returncode == 1, out.stdout + out.stderr  # final failures
    return root


def test_ls_groups_alike_indices_into_ranges(sweep: Path) -> None:
    out = cli(sweep, "ls", "experiments/a.json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "experiments/a.json: 24 indices (2 runs): 12 DONE, 12 FINAL"
    assert lines[1].split() == ["indices", "count", "state", "cause", "attempts", "exit", "elapsed", "host", "log"]
    rows = [ln.split() for ln in lines[2:]]
    assert [r[:6] for r in rows] == [
        ["0-2", "3", "DONE", "COMPLETED", "1", "0"], ["3-5", "3", "FINAL", "FAILED", "2", "1"],
        ["6-8", "3", "DONE", "COMPLETED", "1", "0"], ["9-11", "3", "FINAL", "FAILED", "2", "3"],
        ["12-14", "3", "DONE", "COMPLETED", "1", "0"], ["15-17", "3", "FINAL", "FAILED", "2", "1"],
        ["18-20", "3", "DONE", "COMPLETED", "1", "0"], ["21-23", "3", "FINAL", "FAILED", "2", "3"],
    ]  # fmt: skip
    assert all(r[7] == os.uname().nodename for r in rows)
    assert rows[1][8].endswith("/3.err") and (sweep / rows[1][8]).is_file()


def test_ls_filters_plain_and_json(sweep: Path) -> None:
    out = cli(sweep, "ls", "experiments/a.json", "--state", "final", "--plain")
    lines = out.stdout.splitlines()
    assert len(lines) == 4 and all(ln.split("\t")[:2] == ["experiments/a.json", r] for ln, r in zip(lines, ["3-5", "9-11", "15-17", "21-23"]))
    assert all(len(ln.split("\t")) == 10 for ln in lines)
    none = cli(sweep, "ls", "experiments/a.json", "--cause", "TIMEOUT")
    assert none.returncode == 0 and "0 shown" in none.stdout
    rows = json.loads(cli(sweep, "ls", "experiments/a.json", "--json").stdout)
    assert sum(r["count"] for r in rows) == 24
    final = [r for r in rows if r["state"] == "FINAL"]
    assert [(r["first"], r["last"], r["cause"], r["attempts"], r["exit"]) for r in final] == [
        (3, 5, "FAILED", 2, 1), (9, 11, "FAILED", 2, 3), (15, 17, "FAILED", 2, 1), (21, 23, "FAILED", 2, 3)]  # fmt: skip
    assert all(r["elapsed_s"] is not None and r["hosts"] == [os.uname().nodename] for r in rows)
    bad = cli(sweep, "ls", "experiments/a.json", "--state", "sleepy")
    assert bad.returncode == 2 and "unknown state 'sleepy'" in bad.stderr


def test_errors_one_group_per_bug(sweep: Path) -> None:
    out = cli(sweep, "errors", "experiments/a.json")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("experiments/a.json: 12 indices ended without results: 2 distinct errors\n")
    assert "[1] 6 × FAILED (final):\n      ValueError: alpha 0.30000000000000004 is too large for " in text
    assert "    indices: 3-5,15-17\n    all with: v=\"boom\"\n" in text and "    indices: 9-11,21-23\n    all with: v=\"exit\"\n" in text
    assert "      giving up at step 9\n" in text
    groups = json.loads(cli(sweep, "errors", "experiments/a.json", "--json").stdout)
    assert [(g["count"], g["indices"], g["example"], g["final"]) for g in groups] == [(6, "3-5,15-17", 3, 6), (6, "9-11,21-23", 9, 6)]
    assert groups[0]["key"] == "ValueError: alpha N is too large for <path>"
    assert groups[0]["shared"] == {"v": "boom"} and groups[1]["shared"] == {"v": "exit"}
    assert (sweep / groups[0]["log"]).read_text().endswith(groups[0]["error"] + "\n")
    two = json.loads(cli(sweep, "errors", "experiments/a.json", "--json", "--lines", "2").stdout)
    assert len(two) == 2 and "⏎" in two[0]["key"]


def test_logs_of_each_attempt(sweep: Path) -> None:
    out = cli(sweep, "logs", "experiments/a.json", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("experiments/a.json index 3: attempt 2 of 2 (job local-") and lines[0].endswith(": FAILED (exit 1)")
    assert "running 3 boom" in out.stdout and "Traceback (most recent call last):" in out.stdout
    assert lines[-1].startswith("task log (the runner and the scheduler): ") and "task-" in lines[-1]
    tail = cli(sweep, "logs", "experiments/a.json", "3", "--attempt", "1", "--tail", "1")
    assert "attempt 1 of 2" in tail.stdout and "Traceback" not in tail.stdout and "ValueError: alpha" in tail.stdout
    data = json.loads(cli(sweep, "logs", "experiments/a.json", "9", "--json").stdout)
    assert (data["attempt"], data["attempts"], data["verdict"]) == (2, [1, 2], {"cause": "FAILED", "started": True, "exit": 3})
    assert data["stderr"]["text"] == "giving up at step 9\n" and data["stdout"]["exists"]
    assert data["stdout"]["path"] != json.loads(cli(sweep, "logs", "experiments/a.json", "9", "--attempt", "1", "--json").stdout)["stdout"]["path"]
    for args, message in ((["7", "--attempt", "3"], "index 7 has attempts 1, not 3"), (["99"], "index 99 is out of range")):
        bad = cli(sweep, "logs", "experiments/a.json", *args)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1


def test_logs_of_an_index_never_submitted(tmp_path: Path) -> None:
    makeProject(tmp_path)
    out = cli(tmp_path, "logs", "experiments/a.json", "0")
    assert out.returncode == 2 and "nothing was ever submitted here" in out.stderr


def test_json_on_every_command_that_reports(sweep: Path) -> None:
    exp = "experiments/a.json"
    missing = json.loads(cli(sweep, "missing", exp, "--json").stdout)
    assert missing == [{"experiment": exp, "runs": 2, "total": 24, "count": 12, "indices": "3-5,9-11,15-17,21-23"}]
    show = json.loads(cli(sweep, "show", exp, "9", "--json").stdout)
    assert (show["state"], show["cause"], show["attempts"], show["exit"], show["parameters"]) == ("FINAL", "FAILED", 2, 3, {"v": "exit", "k": 1})
    assert show["logs"][1].endswith("/9.err") and show["submission"]["backend"] == "local" and "version" in show["submission"]["provenance"]
    assert json.loads(cli(sweep, "cancel", exp, "--json").stdout) == {"cancelled": [], "indices": 0, "not_cancelled": {}}
    status = json.loads(cli(sweep, "status", exp, "--json").stdout)
    assert (status[0]["done"], status[0]["final"], status[0]["final_causes"]) == (12, 12, {"FAILED": 12})
    dry = json.loads(cli(sweep, "submit", exp, "--dry-run", "--json").stdout)
    assert (dry["backend"], dry["dry_run"], dry["planned"], dry["jobs"]) == ("local", True, 0, [])
    assert "core_hours" not in dry
    nothing = cli(sweep, "retry", exp, "--cause", "TIMEOUT", "--json")
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == {"retried": []}


def test_retry_runs_the_final_failures_again_and_says_they_failed_again(tmp_path: Path) -> None:
    makeProject(tmp_path)
    (tmp_path / "config.json").write_text((tmp_path / "config.json").read_text().replace('"runs_per_task": 3', '"runs_per_task": 3, "max_failed_retries": 0'))
    assert cli(tmp_path, "submit", "experiments/a.json").returncode == 1
    out = cli(tmp_path, "retry", "experiments/a.json", "--json")
    assert out.returncode == 1, out.stderr  # they fail again
    data = json.loads(out.stdout)
    assert data["retried"] == [{"experiment": "experiments/a.json", "count": 6, "indices": "3-5,9-11"}]
    assert data["ran"] == [{"experiment": "experiments/a.json", "ran": 6, "failed": 6, "indices": "3-5,9-11", "causes": {"FAILED": 6}, "final": 6}]
    text = cli(tmp_path, "retry", "experiments/a.json")
    assert text.returncode == 1 and "`pyexputils retry experiments/a.json` runs them again" in text.stdout
    assert [g["count"] for g in json.loads(cli(tmp_path, "errors", "experiments/a.json", "--json").stdout)] == [3, 3]
    assert "attempt 3 of 3" in cli(tmp_path, "logs", "experiments/a.json", "3").stdout


def test_submit_on_the_local_backend_speaks_local_terms_and_fails_when_runs_fail(tmp_path: Path) -> None:
    makeProject(tmp_path)
    out = cli(tmp_path, "submit", "experiments/a.json")
    assert out.returncode == 1
    assert "#SBATCH" not in out.stdout and "core-hours" not in out.stdout and "limits:" not in out.stdout
    assert "total: 12 runs planned in 4 runner processes on this machine, 2 at a time (local.workers)" in out.stdout
    assert out.stdout.splitlines()[-1] == ("experiments/a.json: 6 of 12 runs failed (FAILED 6): 3-5,9-11; `pyexputils errors "
                                           "experiments/a.json` says why, `pyexputils watch experiments/a.json` runs them again")  # fmt: skip
    (tmp_path / "experiments" / "b.json").write_text(json.dumps({"metaParameters": {"v": ["ok"], "k": [1, 2]}}))
    good = cli(tmp_path, "submit", "experiments/b.json", "--json")
    assert good.returncode == 0, good.stderr
    data = json.loads(good.stdout)
    assert data["ran"] == [{"experiment": "experiments/b.json", "ran": 2, "failed": 0, "indices": "", "causes": {}, "final": 0}]
    assert data["jobs"][0]["job"].startswith("local-") and data["jobs"][0]["indices"] == "0-1"


COMMANDS = [["ls", "experiments/a.json"], ["ls", "experiments/a.json", "--plain"], ["errors", "experiments/a.json"],
            ["logs", "experiments/a.json", "3"], ["status", "experiments/a.json"], ["missing", "experiments/a.json"],
            ["show", "experiments/a.json", "3"], ["cancel", "experiments/a.json"], ["submit", "experiments/a.json", "--dry-run"],
            ["watch", "experiments/a.json", "--json"], ["ls", "experiments/a.json", "--json"],
            ["retry", "experiments/a.json", "--cause", "TIMEOUT"], ["service", "status"], ["status", "experiments/a.json", "--efficiency"]]  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:1] + a[2:]))
def test_a_closed_pipe_is_no_traceback(sweep: Path, args: list[str]) -> None:
    """``pyexputils ... | head``: the reader is gone before the first write."""
    r, w = os.pipe()
    os.close(r)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    try:
        p = subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=sweep, stdout=w, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    finally:
        os.close(w)
    assert p.returncode in (0, 1) and "Traceback" not in p.stderr and "Exception" not in p.stderr, p.stderr


def test_ls_prints_the_provenance_of_each_range(tmp_path: Path) -> None:
    makeProject(tmp_path)
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "prog.py", "config.json"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert cli(tmp_path, "submit", "experiments/a.json").returncode == 1
    out = cli(tmp_path, "ls", "experiments/a.json", "--provenance")
    lines = out.stdout.splitlines()
    assert lines[1].split()[8:11] == ["job", "commit", "version"]
    first = lines[2].split()
    assert first[8].startswith("local-") and first[9] == head[:12] and first[10] != "?"
    rows = json.loads(cli(tmp_path, "ls", "experiments/a.json", "--provenance", "--json").stdout)
    sub = rows[0]["submissions"][0]
    assert (sub["git_commit"], sub["git_dirty"], sub["backend"]) == (head, False, "local") and sub["argv"][-2:] == ["submit", "experiments/a.json"]
    assert "submissions" not in json.loads(cli(tmp_path, "ls", "experiments/a.json", "--json").stdout)[0]
