"""The CLI end to end on the local backend (fast, no Slurm): submit, resubmit nothing, missing, show, status."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROG = r'''
import json, os, sys
exp, idx, value = sys.argv[1], int(sys.argv[2]), sys.argv[3]
save = os.environ["PYX_SAVE_PATH"]
os.makedirs(save, exist_ok=True)
tmp = os.path.join(save, ".tmp-done")
with open(tmp, "w") as f:
    json.dump({"idx": idx, "value": value}, f)
os.replace(tmp, os.path.join(save, "done.json"))
'''
NASTY = "it's a \"test\" $(touch PWNED) `touch PWNED2` ; rm -rf x"


def project(root: Path, slurm: dict | None = None, values: list | None = None) -> None:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{name}/{params}/{run}", "require": ["done.json"],
        "command": f"{sys.executable} prog.py {{experiment}} {{index}} {{v}}",
        "slurm": {"time": "0:01:00", "runs_per_task": 4, "parallel": 2, **(slurm or {})},
        "local": {"workers": 4},
    }))  # fmt: skip
    (root / "experiments").mkdir()
    (root / "experiments" / "a.json").write_text(json.dumps({"metaParameters": {"v": values or [NASTY, "b c", "3"], "k": [1, 2]}}))


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=root, capture_output=True, text=True, env=env, timeout=300)


def test_local_submit_resubmit_and_nasty_values(tmp_path: Path) -> None:
    project(tmp_path)
    out = cli(tmp_path, "submit", "experiments/a.json", "--runs", "2", "--backend", "local")
    assert out.returncode == 0, out.stderr
    assert "12 runs planned in 3 runner processes" in out.stdout
    done = sorted(tmp_path.glob("results/a/*/*/done.json"))
    assert len(done) == 12
    values = {json.loads(p.read_text())["value"] for p in done}
    assert values == {NASTY, "b c", "3"}
    assert not list(tmp_path.rglob("PWNED*"))
    assert cli(tmp_path, "missing", "experiments/a.json", "--runs", "2").stdout.strip() == ""
    again = cli(tmp_path, "submit", "experiments/a.json", "--runs", "2", "--backend", "local")
    assert again.returncode == 0 and "0 runs planned in 0 runner processes" in again.stdout
    # delete two results: exactly those come back
    for p in done[:2]:
        shutil.rmtree(p.parent)
    missing = cli(tmp_path, "missing", "experiments/a.json", "--runs", "2").stdout.strip()
    assert missing and missing.count(",") + missing.count("-") >= 1
    dry = cli(tmp_path, "submit", "experiments/a.json", "--runs", "2", "--backend", "local", "--dry-run")
    assert "total: 2 runs planned in 1 runner processes on this machine, 4 at a time (local.workers)" in dry.stdout
    assert "#SBATCH" not in dry.stdout and "core-hours" not in dry.stdout and "[process 0, index " in dry.stdout
    st = json.loads(cli(tmp_path, "status", "experiments/a.json", "--runs", "2", "--backend", "local", "--json").stdout)
    assert st[0]["missing"] == 2 and st[0]["done"] == 10
    out = cli(tmp_path, "submit", "experiments/a.json", "--runs", "2", "--backend", "local")
    assert "2 runs planned in 1 runner processes" in out.stdout
    assert len(list(tmp_path.glob("results/a/*/*/done.json"))) == 12


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    project(tmp_path)
    out = cli(tmp_path, "submit", "experiments/a.json", "--runs", "3", "--backend", "local", "--dry-run", "--out", "scripts")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / ".logs").exists()
    assert len(list((tmp_path / "scripts").glob("*.sh"))) == 1
    assert "runner processes on this machine" in out.stdout and "core-hours" not in out.stdout
    script = next((tmp_path / "scripts").glob("*.sh")).read_text()
    assert "#SBATCH" not in script and script.count("prog.py") == 18  # a plain list of the commands it would run


def test_show(tmp_path: Path) -> None:
    project(tmp_path)
    out = cli(tmp_path, "show", "experiments/a.json", "7")
    assert out.returncode == 0, out.stderr
    assert "index: 7 (setting 1 of 6, run 1)" in out.stdout
    assert "save path: results/a/k-2_v-" in out.stdout
    assert "'it'\"'\"'s a \"test\" $(touch PWNED)" in out.stdout  # shell-quoted
    bad = cli(tmp_path, "show", "experiments/a.json", "12", "--runs", "2")
    assert bad.returncode == 2
    assert "index 12 is out of range: 6 settings x 2 runs gives indices 0-11" in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["submit", "nope.json", "--backend", "local"], "nope.json: no such experiment file"),
        (["submit", "experiments/a.json", "--runs", "0"], "expected a whole number >= 1"),
        (["submit", "experiments/a.json", "--runs", "2", "--backend", "local", "--out", "x"], "--out goes with --dry-run"),
        (["show", "experiments/a.json", "-1"], "index -1 is out of range"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    project(tmp_path)
    out = cli(tmp_path, *args)
    assert out.returncode == 2 and message in out.stderr
    assert not (tmp_path / "results").exists()


def test_bad_config_exit_2_one_line(tmp_path: Path) -> None:
    project(tmp_path, slurm={"array": "0-3"})
    out = cli(tmp_path, "submit", "experiments/a.json", "--backend", "local")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "slurm.array is set by pyexputils" in out.stderr
    project_b = tmp_path / "b"
    project_b.mkdir()
    project(project_b, slurm={"nodez": 2})
    out = cli(project_b, "submit", "experiments/a.json", "--backend", "local")
    assert out.returncode == 2 and "slurm.nodez is neither an sbatch option" in out.stderr
    assert not (project_b / "results").exists()


def test_status_counts_failures_by_cause(tmp_path: Path) -> None:
    project(tmp_path, values=["ok", "boom"])
    (tmp_path / "prog.py").write_text("import sys\nif sys.argv[3] == 'boom': sys.exit(3)\n" + PROG)
    out = cli(tmp_path, "submit", "experiments/a.json", "--backend", "local")
    assert out.returncode == 1, out.stderr  # runs failed on the local backend
    st = json.loads(cli(tmp_path, "status", "experiments/a.json", "--backend", "local", "--json").stdout)[0]
    # failed once: the policy retries it (max_failed_retries 1); status says so without writing anything
    assert (st["done"], st["retry"], st["retry_causes"], st["final"]) == (2, 2, {"FAILED": 2}, 0)
    table = cli(tmp_path, "status", "experiments/a.json", "--backend", "local").stdout
    assert table.splitlines()[0].split()[:5] == ["experiment", "runs", "total", "done", "queued"]
    assert "experiments/a.json: to retry by cause: FAILED 2" in table


def test_an_unreadable_results_folder_is_one_line_not_all_missing(tmp_path: Path) -> None:
    """Permissions do not stop root (the tests' user), so the folder is made unreadable by a stand-in listdir."""
    project(tmp_path)
    assert cli(tmp_path, "submit", "experiments/a.json", "--backend", "local").returncode == 0
    code = ("import os, sys\nfrom pyexputils import cli\nreal = os.listdir\n"
            "def listdir(p='.'):\n    if str(p).rstrip('/').endswith('results/a'):\n        raise PermissionError(13, 'Permission denied', p)\n    return real(p)\n"
            "os.listdir = listdir\nsys.exit(cli.main(sys.argv[1:]))\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    for args in (["status", "experiments/a.json"], ["missing", "experiments/a.json"], ["submit", "experiments/a.json", "--backend", "local"]):
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.count("\n") == 1 and "results/a: cannot read this results folder (Permission denied)" in out.stderr
        assert "Traceback" not in out.stderr


def test_commands_work_from_a_sub_folder_and_remember_runs(tmp_path: Path) -> None:
    project(tmp_path)
    assert cli(tmp_path, "submit", "experiments/a.json", "--runs", "2", "--backend", "local").returncode == 0
    sub = tmp_path / "analysis" / "notebooks"
    sub.mkdir(parents=True)
    here = json.loads(cli(tmp_path, "status", "experiments/a.json", "--json").stdout)[0]
    there = json.loads(cli(sub, "status", "../../experiments/a.json", "--json").stdout)[0]
    assert here["runs"] == there["runs"] == 2  # remembered from the submit
    assert (here["total"], here["done"]) == (there["total"], there["done"]) == (12, 12)
    out = cli(sub, "status", "../../experiments/a.json", "--runs", "3")
    assert "--runs 3 (submitted with 2 runs before)" in out.stdout and "18" in out.stdout
    assert "2 runs (remembered from its last submit)" in cli(tmp_path, "status", "experiments/a.json").stdout
    assert "0 runs planned" in cli(tmp_path, "submit", "experiments/a.json", "--runs", "1", "--backend", "local").stdout
    assert json.loads(cli(tmp_path, "status", "experiments/a.json", "--json").stdout)[0]["runs"] == 1  # remembered with nothing to send
    code = "from pyexputils.models import getConfig, loadExperiment\nfrom pyexputils.results import listMissingResults\n" \
           "print(getConfig().path, len(listMissingResults(loadExperiment('../../experiments/a.json'), 2)))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    got = subprocess.run([sys.executable, "-c", code], cwd=sub, capture_output=True, text=True, env=env).stdout.split()
    assert got[0] == str(tmp_path / "config.json") and got[1] == "0"  # the analysis API finds the project and its results too


def test_too_long_params_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    project(tmp_path)
    (tmp_path / "experiments" / "long.json").write_text(json.dumps({"metaParameters": {
        f"a_rather_long_reinforcement_learning_parameter_name_{k}": [0.001, 0.0001] for k in range(6)}}))
    for args in (["submit", "experiments/long.json", "--backend", "local"], ["submit", "experiments/long.json", "--backend", "local", "--dry-run"]):
        out = cli(tmp_path, *args)
        assert out.returncode == 2 and "over the file system's limit of 255" in out.stderr and "{params}" in out.stderr, out.stderr
    assert not (tmp_path / "results").exists()
    (tmp_path / "experiments" / "slash.json").write_text(json.dumps({"metaParameters": {"env": ["a/b", "c"]}}))
    out = cli(tmp_path, "submit", "experiments/slash.json", "--backend", "local")
    assert out.returncode == 2 and "env = 'a/b': a '/' in a swept value would split" in out.stderr
