"""`pyexputils submit` against the real local Slurm: a 3-experiment sweep of 600 runs, resubmission of nothing
and of exactly the deleted results, nasty values, sbatch --test-only, rejection, adoption after a crash."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyexputils.runner.ledger import Ledger
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.manifest import Manifest

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parent.parent.parent

PROG = r'''
import json, os, sys
idx, value = int(sys.argv[1]), sys.argv[2]
save = os.environ["PYX_SAVE_PATH"]
os.makedirs(save, exist_ok=True)
tmp = os.path.join(save, ".tmp-r")
with open(tmp, "w") as f:
    json.dump({"idx": idx, "value": value, "job": os.environ.get("SLURM_JOB_ID")}, f)
os.replace(tmp, os.path.join(save, "r.json"))
'''
NASTY = "it's \"q\" $(touch PWNED) `touch PWNED2`; echo hi > PWNED3"


def project(root: Path, slurm: dict, exps: dict[str, dict]) -> None:
    (root / "prog.py").write_text(PROG)
    (root / "config.json").write_text(json.dumps({
        "save_path": "results/{file}/{params}/{run}", "require": ["r.json"],
        "command": f"{sys.executable} prog.py {{index}} {{v}}", "slurm": slurm,
    }))  # fmt: skip
    (root / "experiments").mkdir(exist_ok=True)
    for name, params in exps.items():
        (root / "experiments" / f"{name}.json").write_text(json.dumps({"metaParameters": params}))


def cli(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "pyexputils", *args], cwd=root, capture_output=True, text=True, env=env, timeout=timeout)
    return out


def jobIds(root: Path) -> list[str]:
    with Ledger.read(str(root / "results")) as led:  # type: ignore[union-attr]
        return [s.job_id for s in led.submissions()]


def waitDone(ids: list[str], timeout: float = 300) -> None:
    stop = time.time() + timeout
    while time.time() < stop:
        out = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(ids), "-o", "%T"], capture_output=True, text=True)
        live = [s for s in out.stdout.split() if s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]
        if out.returncode != 0 or not live:
            return
        time.sleep(1)
    subprocess.run(["scancel", *ids])
    raise AssertionError(f"jobs {ids} still live after {timeout} s")


def results(root: Path) -> list[Path]:
    return sorted(root.glob("results/*/*/*/r.json"))


def test_sweep_of_600_runs_then_nothing_then_exactly_the_deleted(tmp_path: Path) -> None:
    values = [f"v{i}" for i in range(5)] + [NASTY]
    project(tmp_path, {"time": "0:05:00", "runs_per_task": 10, "parallel": 2, "max_array_size": 11},
            {"a": {"v": values, "k": [1, 2, 3, 4]}, "b": {"v": values, "k": [1, 2, 3, 4]}, "c": {"v": values, "k": [5, 6, 7, 8]}})  # fmt: skip
    exps = [f"experiments/{n}.json" for n in "abc"]
    dry = cli(tmp_path, "submit", *exps, "--runs", "9", "--backend", "slurm", "--dry-run", "--test-only")
    assert dry.returncode == 0, dry.stderr
    assert "648 planned in 6 arrays of 66 tasks" in dry.stdout  # 3 x 216 runs, 22 tasks each -> 2 arrays of 11
    assert "sbatch --test-only accepted 6 scripts" in dry.stdout
    assert not (tmp_path / "results").exists()
    t0 = time.time()
    out = cli(tmp_path, "submit", *exps, "--runs", "9", "--backend", "slurm")
    assert out.returncode == 0, out.stderr
    ids = jobIds(tmp_path)
    assert len(ids) == 6
    waitDone(ids)
    done = results(tmp_path)
    assert len(done) == 648, f"{len(done)} results after {time.time() - t0:.0f} s"
    assert {json.loads(p.read_text())["value"] for p in done} == set(values)
    assert not list(tmp_path.rglob("PWNED*"))
    # a second submit right after submits nothing
    again = cli(tmp_path, "submit", *exps, "--runs", "9", "--backend", "slurm")
    assert again.returncode == 0 and "0 planned in 0 arrays" in again.stdout
    assert len(jobIds(tmp_path)) == 6
    # delete some results: exactly those are sent
    gone = done[::97]
    for p in gone:
        shutil.rmtree(p.parent)
    third = cli(tmp_path, "submit", *exps, "--runs", "9", "--backend", "slurm")
    assert third.returncode == 0, third.stderr
    assert f"{len(gone)} planned" in third.stdout
    with Ledger.read(str(tmp_path / "results")) as led:  # type: ignore[union-attr]
        new = [s for s in led.submissions()][6:]
        sent = {(s.experiment, i) for s in new for t in led.tasksOf(s.tag)[1].values() for i in t}  # type: ignore[index]
        assert all(s.attempt == 2 for s in new)
    assert len(sent) == len(gone)
    waitDone([s.job_id for s in new])
    assert len(results(tmp_path)) == 648
    st = json.loads(cli(tmp_path, "status", *exps, "--runs", "9", "--backend", "slurm", "--json").stdout)
    assert [r["done"] for r in st] == [216, 216, 216]


def test_rejected_script_records_nothing(tmp_path: Path) -> None:
    project(tmp_path, {"time": "0:05:00", "mem": "900G"}, {"a": {"v": ["x", "y"]}})
    out = cli(tmp_path, "submit", "experiments/a.json", "--backend", "slurm")
    assert out.returncode == 2
    assert "pyexputils: error: sbatch rejected" in out.stderr and "sbatch: error:" in out.stderr, out.stderr
    assert jobIds(tmp_path) == []
    assert not list((tmp_path / "results" / ".pyexputils" / "manifests").glob("*.json"))


def test_adopts_a_job_the_ledger_lost(tmp_path: Path) -> None:
    """The submitter died between sbatch and the ledger: its job is found by tag and not planned again."""
    project(tmp_path, {"time": "0:05:00", "runs_per_task": 1}, {"a": {"v": ["x", "y", "z", "w"]}})
    root = str(tmp_path / "results")
    tag = "a-lost-0"
    m = Manifest(tag=tag, experiment=str(tmp_path / "experiments" / "a.json"), project=str(tmp_path),
                 command=f"{sys.executable} prog.py {{index}} {{v}}", tasks=[[1], [2]], require=["r.json"],
                 log_dir=str(tmp_path / ".logs"), status_dir=os.path.join(root, ".pyexputils", "status"))  # fmt: skip
    m.write(StateDir(root).manifest(tag))
    held = subprocess.run(["sbatch", "--parsable", "--hold", "--array=0-1", f"--job-name=pyx-{tag}", "--output=/dev/null",
                           "--wrap", f"{sys.executable} -m pyexputils.runner.task {StateDir(root).manifest(tag)}"],
                          capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()  # fmt: skip
    try:
        out = cli(tmp_path, "submit", "experiments/a.json", "--backend", "slurm", "--runs-per-task", "1")
        assert out.returncode == 0, out.stderr
        assert f"adopted from the queue (missing in the ledger): {tag}" in out.stdout
        assert "2 planned" in out.stdout  # indices 0 and 3 only
        with Ledger.read(root) as led:  # type: ignore[union-attr]
            s = led.byTag(tag)
            assert s is not None and s.adopted and s.job_id == held
            planned = {i for sub in led.submissions() if sub.tag != tag for t in led.tasksOf(sub.tag)[1].values() for i in t}  # type: ignore[index]
        assert planned == {0, 3}
        st = json.loads(cli(tmp_path, "status", "experiments/a.json", "--backend", "slurm", "--json").stdout)
        assert st[0]["queued"] >= 2  # the held tasks (and maybe the new ones)
        # cancel: the held job (and anything live) of this experiment
        c = cli(tmp_path, "cancel", "experiments/a.json", "--backend", "slurm")
        assert c.returncode == 0 and held in c.stdout
    finally:
        subprocess.run(["scancel", held])


def test_unknown_partition_is_bad_input(tmp_path: Path) -> None:
    project(tmp_path, {"time": "0:05:00", "partition": "no_such_partition"}, {"a": {"v": ["x", "y"]}})
    out = cli(tmp_path, "submit", "experiments/a.json", "--backend", "slurm")
    assert out.returncode == 2 and "slurm.partition 'no_such_partition'" in out.stderr
    assert not (tmp_path / "results").exists()


def _started(root: Path, n: int) -> bool:
    return sum(1 for p in root.glob("results/.pyexputils/status/*/*.jsonl") if '"event":"start"' in p.read_text()) >= n


def test_the_runner_tells_a_scancel_from_a_preemption_after_squeue_forgot(tmp_path: Path) -> None:
    """Two one-task sweeps running; one is scancel'ed by the user, the other preempted by an urgent job. Once
    squeue has forgotten both (MinJobAge) and without sacct, only the runner's record (Slurm's own line in the
    task's stderr) can tell them apart: status says CANCELLED (final) for one, PREEMPTED (retry) for the other."""
    (tmp_path / "prog.py").write_text("import time\ntime.sleep(120)\n")
    (tmp_path / "config.json").write_text(json.dumps({
        "save_path": "results/{file}/{params}/{run}", "require": ["r.json"], "backend": "slurm",
        "command": f"{sys.executable} prog.py", "slurm": {"time": "0:05:00"},
    }))  # fmt: skip
    (tmp_path / "experiments").mkdir()
    for name in ("cancelme", "preemptme"):
        (tmp_path / "experiments" / f"{name}.json").write_text(json.dumps({"metaParameters": {"v": [1]}}))
    assert cli(tmp_path, "submit", "experiments/cancelme.json", "experiments/preemptme.json").returncode == 0
    deadline = time.time() + 60
    while not _started(tmp_path, 2) and time.time() < deadline:
        time.sleep(0.5)
    assert _started(tmp_path, 2)
    jobs = {s.experiment.rsplit("/", 1)[1]: s.job_id for s in Ledger.read(str(tmp_path / "results")).submissions()}  # type: ignore[union-attr]
    subprocess.run(["scancel", jobs["cancelme.json"]], check=True)
    time.sleep(1)
    urgent = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "16", "-J", "evidence-urgent", "-o", "/dev/null",
                             "--wrap", "sleep 2"], capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    try:
        deadline = time.time() + 90
        while time.time() < deadline and subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(jobs.values())],
                                                        capture_output=True, text=True).stdout.strip():  # fmt: skip
            time.sleep(1)  # until squeue has forgotten both (MinJobAge)
        events = [json.loads(line) for p in sorted(tmp_path.glob("results/.pyexputils/status/*/*.jsonl"))
                  for line in p.read_text().splitlines()]  # fmt: skip
        seen = sorted(e["state"] for e in events if e["event"] == "scheduler")
        assert seen == ["CANCELLED", "PREEMPTED"], events
        # without sacct the runner's record is all there is; with it, sacct says the same
        rows = {r["experiment"]: r for r in json.loads(cli(tmp_path, "status", "experiments/cancelme.json", "experiments/preemptme.json", "--json").stdout)}
        assert rows["experiments/cancelme.json"]["final_causes"] == {"CANCELLED": 1}, rows
        assert rows["experiments/preemptme.json"]["retry_causes"] == {"PREEMPTED": 1}, rows
        show = cli(tmp_path, "show", "experiments/cancelme.json", "0").stdout
        assert "state: FINAL (CANCELLED)" in show, show
    finally:
        subprocess.run(["scancel", urgent, *jobs.values()])
