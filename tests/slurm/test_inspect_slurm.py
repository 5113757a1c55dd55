"""``ls``, ``errors``, ``logs`` (and ``show --json``) on the real Slurm: a sweep where one bug fails 10 of 20
runs, each with a different number and save path in its message; the 10 are one group of ``errors``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parent.parent.parent

PROG = r'''
import os, sys
idx, v = int(sys.argv[1]), sys.argv[2]
print("step", idx, v, flush=True)
if v == "boom":
    raise RuntimeError(f"loss is nan at step {idx * 37} (lr {idx / 1000}) writing {os.environ['PYX_SAVE_PATH']}/r.json")
save = os.environ["PYX_SAVE_PATH"]
os.makedirs(save, exist_ok=True)
open(os.path.join(save, "r.json"), "w").write("{}")
'''
BOOM = "5-9,15-19"


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=root, capture_output=True, text=True, env=env, timeout=300)


def test_inspect_a_sweep_with_one_bug_on_slurm(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(PROG)
    (tmp_path / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["r.json"], "log_path": ".logs", "backend": "slurm",
        "command": f"{sys.executable} prog.py {{index}} {{v}}",
        "slurm": {"time": "0:02:00", "runs_per_task": 2, "max_failed_retries": 0},
    }))  # fmt: skip
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "a.json").write_text(json.dumps({"metaParameters": {"v": ["ok", "boom"], "k": [1, 2, 3, 4, 5]}}))
    exp = "experiments/a.json"
    out = cli(tmp_path, "submit", exp, "--runs", "2")
    assert out.returncode == 0, out.stderr
    assert "#SBATCH" not in out.stdout and "core-hours requested" in out.stdout  # Slurm's terms on Slurm
    watch = cli(tmp_path, "watch", exp, "--poll", "1", "--timeout", "240", "--quiet")
    assert watch.returncode == 1, watch.stderr  # 10 final failures

    errors = cli(tmp_path, "errors", exp)
    assert errors.returncode == 0, errors.stderr
    print(f"$ pyexputils errors {exp}\n{errors.stdout}")
    lines = errors.stdout.splitlines()
    assert lines[0] == f"{exp}: 10 indices ended without results: 1 distinct error"
    assert lines[1] == "[1] 10 × FAILED (final):"
    assert lines[2].startswith("      RuntimeError: loss is nan at step 185 (lr 0.005) writing ")
    assert lines[3] == f"    indices: {BOOM}"
    assert lines[4] == '    all with: v="boom"'
    (group,) = json.loads(cli(tmp_path, "errors", exp, "--json").stdout)
    assert group["key"] == "RuntimeError: loss is nan at step N (lr N) writing <path>/r.json"
    assert (tmp_path / group["log"]).read_text().rstrip().endswith(group["error"])

    ls = cli(tmp_path, "ls", exp)
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.splitlines()[0] == f"{exp}: 20 indices (2 runs): 10 DONE, 10 FINAL"
    rows = [ln.split() for ln in ls.stdout.splitlines()[2:]]
    assert [r[:6] for r in rows] == [["0-4", "5", "DONE", "COMPLETED", "1", "0"], ["5-9", "5", "FINAL", "FAILED", "1", "1"],
                                     ["10-14", "5", "DONE", "COMPLETED", "1", "0"], ["15-19", "5", "FINAL", "FAILED", "1", "1"]]  # fmt: skip
    hosts = {h for g in json.loads(cli(tmp_path, "ls", exp, "--json").stdout) for h in g["hosts"]}
    assert hosts and all(hosts)

    logs = json.loads(cli(tmp_path, "logs", exp, "7", "--json").stdout)
    assert logs["verdict"] == {"cause": "FAILED", "started": True, "exit": 1}
    assert logs["stdout"]["text"] == "step 7 boom\n" and "RuntimeError: loss is nan at step 259" in logs["stderr"]["text"]
    job = logs["job"]
    assert job.isdigit() and logs["task_log"]["exists"] and logs["task_log"]["path"].endswith(f"/{job}_{logs['task']}.out")
    text = cli(tmp_path, "logs", exp, "7", "--tail", "1")
    assert f"attempt 1 of 1 (job {job}, task {logs['task']}" in text.stdout and "Traceback" not in text.stdout
    show = json.loads(cli(tmp_path, "show", exp, "7", "--json").stdout)
    assert (show["state"], show["cause"], show["submission"]["job"], show["submission"]["backend"]) == ("FINAL", "FAILED", job, "slurm")
