"""The real command line (``pyexputils.cli.main``, in-process) over the fake backend (pyexputils.runner.fake):
every cause of the fault matrix, status / show / watch agreeing on it, the done rule, lost state files,
unknown jobs, remembered runs, sub-folders, retry, a full queue and bad slurm values, in milliseconds."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyexputils import cli
from pyexputils.display import WatchDisplay
from pyexputils.models import config as configModule
from pyexputils.models import loadConfig
from pyexputils.runner import session
from pyexputils.runner.backend import QueueFull
from pyexputils.runner.causes import Cause
from pyexputils.runner.fake import FakeBackend, FakeTask
from pyexputils.runner.judge import State
from pyexputils.runner.ledger import Ledger
from pyexputils.runner.session import Session
from pyexputils.runner.watch import Watcher

A, B = "experiments/a.json", "experiments/b.json"
CONFIG: dict[str, Any] = {
    "save_path": "results/{name}/{params}/{run}", "log_path": ".logs", "require": ["r.json"],
    "command": "python main.py --exp {experiment} --idx {index}",
    "slurm": {"time": "0:10:00", "mem": "1G", "runs_per_task": 1, "max_failed_retries": 1},
}  # fmt: skip
WITH_BACKEND = {"submit", "watch", "status", "missing", "show", "cancel", "retry"}


SHM = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # sqlite's fsyncs cost ~30 ms each on a disk


def fastDir() -> "tempfile.TemporaryDirectory[str]":
    """A temporary folder in memory where there is one (the ledger syncs every write)."""
    return tempfile.TemporaryDirectory(dir=SHM, prefix="pyx-fake-")


def makeProject(root: Path, slurm: dict[str, Any] | None = None, a: list[float] | None = None) -> None:
    """config.json, experiments/a.json (3 settings, or ``a``) and experiments/b.json (2 settings)."""
    cfg = {**CONFIG, "slurm": {**CONFIG["slurm"], **(slurm or {})}}
    (root / "config.json").write_text(json.dumps(cfg))
    (root / "experiments").mkdir(exist_ok=True)
    (root / A).write_text(json.dumps({"name": "a", "metaParameters": {"alpha": a or [0.1, 0.2, 0.3]}}))
    (root / B).write_text(json.dumps({"name": "b", "metaParameters": {"beta": [1, 2]}}))


@dataclass
class Out:
    code: int
    out: str
    err: str

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        evs = [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]
        return [e for e in evs if kind is None or e["event"] == kind]


def expand(text: str) -> list[int]:
    """A ``submitted`` event's indices (``0-2,5``) one by one."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1)
    return out


class Project:
    """A project in a temporary folder, the fake backend registered as ``fake``, and the command line."""

    def __init__(self, root: Path, fake: FakeBackend, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch) -> None:
        self.root = root
        self.fake = fake
        self.capsys = capsys
        mp.setitem(session.BACKENDS, "fake", lambda config: fake)
        mp.chdir(root)
        mp.setattr(Watcher, "_sleep", lambda self, seconds, start: None)  # rounds follow each other at once
        # the display's default streams are bound at import: give it the ones captured now
        mp.setattr(cli, "WatchDisplay", lambda quiet, json: WatchDisplay(quiet=quiet, json=json, out=sys.stdout, err=sys.stderr))

    def path(self, exp: str = A) -> str:
        return str((self.root / exp).resolve())

    def cli(self, *args: str) -> Out:
        configModule._cached.clear()  # a test may change config.json between commands
        argv = [*args, "--backend", "fake"] if args[0] in WITH_BACKEND else list(args)
        self.capsys.readouterr()
        code = cli.main(argv)
        got = self.capsys.readouterr()
        return Out(code, got.out, got.err)

    def ok(self, *args: str) -> Out:
        got = self.cli(*args)
        assert got.code == 0, (args, got.out, got.err)
        return got

    def status(self, exp: str = A, *extra: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = json.loads(self.ok("status", exp, "--json", *extra).out)
        return rows[0]

    def show(self, index: int, exp: str = A) -> dict[str, str]:
        lines = self.ok("show", exp, str(index)).out.splitlines()
        return dict(line.split(": ", 1) for line in lines if ": " in line)

    def shown(self, index: int, exp: str = A) -> tuple[str, str | None]:
        """(state, cause) as ``show`` prints them."""
        state = self.show(index, exp)["state"].split(":")[0].split(" [")[0]
        name, _, cause = state.partition(" (")
        return name, cause.rstrip(")") or None

    def watchOnce(self, *exps: str) -> Out:
        """One watch round (``--timeout 0``), JSON events."""
        got = self.cli("watch", *(exps or (A,)), "--json", "--timeout", "0")
        assert got.code in (0, 1, 3), got.err
        return got

    def verdicts(self, exp: str = A) -> dict[int, list[str]]:
        led = Ledger.read(str(self.root / "results"))
        assert led is not None
        with led:
            return {i: [str(v[a].cause) for a in sorted(v)] for i, v in led.verdicts(self.path(exp)).items()}

    def task(self, index: int, exp: str = A) -> FakeTask:
        return self.fake.holding(index, self.path(exp))


@pytest.fixture
def proj(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    with fastDir() as tmp:
        root = Path(tmp)
        makeProject(root)
        yield Project(root, FakeBackend(), capsys, monkeypatch)


def pilot(rule: Callable[[int, int], str], rounds: int = 40) -> Callable[[FakeBackend], None]:
    """An autopilot for ``watch``: every pending task ends as ``rule(index, attempt)`` says (its first index)."""

    def step(fake: FakeBackend) -> None:
        assert fake.queries < rounds, "watch did not settle"
        for t in fake.live():
            spec = t.job.spec
            if spec is not None:
                fake.end(t.job.id, t.task, rule(spec.manifest.tasks[t.task][0], spec.manifest.attempt))

    return step


# --- every cause: status, show and watch agree --------------------------------------------------------------
def _sigterm(preemptible: bool, seen: str | None, scheduler: str = "CANCELLED") -> Callable[[Project], None]:
    """The runner of index 0 got a SIGTERM (its probe saw ``seen``); the scheduler forgot the task, no sacct."""

    def act(p: Project) -> None:
        p.fake.canPreempt = preemptible
        t = p.task(0)
        p.fake.end(t.job.id, t.task, Cause(scheduler), seen=seen)
        p.fake.forget(t.job.id)

    return act


def _end(cause: str, forget: bool = False, **kw: Any) -> Callable[[Project], None]:
    def act(p: Project) -> None:
        t = p.task(0)
        p.fake.end(t.job.id, t.task, cause, **kw)
        if forget:
            p.fake.forget(t.job.id)

    return act


def _vanish(p: Project) -> None:
    t = p.task(0)
    p.fake.vanish(t.job.id, t.task)


def _scancelArray(p: Project) -> None:
    """The user's own ``scancel`` of the whole array, every task running."""
    for t in range(3):
        p.fake.start(p.task(0).job.id, t)
    p.fake.cancel([p.task(0).job.id])


def _scancelPartlyPending(p: Project) -> None:
    """The user's own ``scancel`` of the whole array, index 0 running, the others pending (they vanish)."""
    p.fake.start(p.task(0).job.id, p.task(0).task)
    p.fake.cancel([p.task(0).job.id])
    p.fake.forget(p.task(0).job.id)


def _pyxCancel(p: Project) -> None:
    """``pyexputils cancel`` with index 0 running and the others pending."""
    p.fake.start(p.task(0).job.id, p.task(0).task)
    got = p.ok("cancel", A)
    assert "cancelled 1 jobs (3 indices queued or running)" in got.out


def _pyxCancelPending(p: Project) -> None:
    """``pyexputils cancel`` of an array nothing of which started: only the ledger knows (no record anywhere else)."""
    p.fake.canPreempt = True
    got = p.ok("cancel", A)
    assert "cancelled 1 jobs (3 indices queued or running)" in got.out


# name: (what happens, cause of index 0, its state, resubmitted)
SCENARIOS: dict[str, tuple[Callable[[Project], None], Cause, State, bool]] = {
    "timeout": (_end("TIMEOUT"), Cause.TIMEOUT, State.RETRY, True),
    "timeout-forgotten": (_end("TIMEOUT", forget=True), Cause.TIMEOUT, State.RETRY, True),
    "oom": (_end("OUT_OF_MEMORY"), Cause.OUT_OF_MEMORY, State.RETRY, True),
    "failed": (_end("FAILED", exit=3), Cause.FAILED, State.RETRY, True),
    "preempted": (_end("PREEMPTED"), Cause.PREEMPTED, State.RETRY, True),
    "node-fail": (_end("NODE_FAIL"), Cause.NODE_FAIL, State.RETRY, True),
    "node-fail-forgotten": (_end("NODE_FAIL", forget=True), Cause.NODE_FAIL, State.RETRY, True),
    "vanished": (_vanish, Cause.VANISHED, State.RETRY, True),
    "scancel-array": (_scancelArray, Cause.CANCELLED, State.FINAL, False),
    "scancel-array-partly-pending": (_scancelPartlyPending, Cause.CANCELLED, State.FINAL, False),
    "pyexputils-cancel": (_pyxCancel, Cause.CANCELLED, State.FINAL, False),
    "pyexputils-cancel-pending": (_pyxCancelPending, Cause.CANCELLED, State.FINAL, False),
    "sigterm-preemptible": (_sigterm(True, None), Cause.PREEMPTED, State.RETRY, True),
    "sigterm-not-preemptible": (_sigterm(False, None), Cause.CANCELLED, State.FINAL, False),
    "sigterm-saw-cancelled": (_sigterm(True, "CANCELLED", "PREEMPTED"), Cause.CANCELLED, State.FINAL, False),
    "sigterm-saw-preempted": (_sigterm(False, "PREEMPTED"), Cause.PREEMPTED, State.RETRY, True),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_cause_status_show_and_watch_agree(proj: Project, name: str) -> None:
    act, cause, state, resubmitted = SCENARIOS[name]
    proj.ok("submit", A)
    act(proj)
    row = proj.status()
    key = "retry_causes" if state is State.RETRY else "final_causes"
    assert row[key].get(str(cause)) == 1 + (2 if name.startswith(("scancel-array", "pyexputils-cancel")) else 0), row
    assert proj.shown(0) == (str(state), str(cause))
    jobs = len(proj.fake.jobs)
    w = proj.watchOnce()
    ended = {e["index"]: e["cause"] for e in w.events("ended")}
    assert ended[0] == str(cause)
    assert proj.verdicts()[0] == [str(cause)]
    sent = [i for e in w.events("submitted") for i in expand(e["indices"])]
    assert (0 in sent) == resubmitted
    assert len(proj.fake.jobs) == jobs + (1 if resubmitted else 0)
    if name.startswith(("scancel-array", "pyexputils-cancel")):  # nothing live, nothing sent: the watch ends, with its finals
        assert w.code == 1
    # after the round: the recorded verdict is what show says, or the index is queued again
    assert proj.shown(0) == (("QUEUED", None) if resubmitted else (str(state), str(cause)))


def test_timeout_escalates_time_oom_escalates_memory_preemption_keeps_both(proj: Project) -> None:
    proj.ok("submit", A)
    for index, cause in ((0, "TIMEOUT"), (1, "OUT_OF_MEMORY"), (2, "PREEMPTED")):
        t = proj.task(index)
        proj.fake.end(t.job.id, t.task, cause)
    first = proj.fake.job(1).spec
    assert first is not None and (first.options["time"], first.options["mem"]) == ("0:10:00", "1024M")
    w = proj.watchOnce()
    asked = {int(e["indices"]): (e.get("time_limit"), e.get("mem")) for e in w.events("submitted")}
    assert asked == {0: ("0:20:00", "1024M"), 1: ("0:10:00", "2048M"), 2: ("0:10:00", "1024M")}
    for index, want in ((0, ("0:20:00", "1024M")), (1, ("0:10:00", "2048M")), (2, ("0:10:00", "1024M"))):
        spec = proj.task(index).job.spec
        assert spec is not None and (spec.options["time"], spec.options["mem"]) == want
        assert spec.manifest.attempt == 2


def test_failed_once_is_retried_failed_always_is_final_with_its_log(proj: Project) -> None:
    # index 0 fails every time, index 1 fails once, index 2 completes
    proj.fake.autopilot = pilot(lambda i, attempt: "FAILED" if i == 0 or (i == 1 and attempt == 1) else "COMPLETED")
    got = proj.cli("watch", A)
    assert got.code == 1, got.err
    assert proj.verdicts() == {0: ["FAILED", "FAILED"], 1: ["FAILED", "COMPLETED"], 2: ["COMPLETED"]}
    assert "2/3 runs done; 1 ended with a final cause:" in got.err
    line = next(ln for ln in got.err.splitlines() if "index 0: FAILED" in ln)
    assert "max_failed_retries = 1" in line
    tag = proj.task(0).job.tag
    assert line.endswith(f"log .logs/{tag}/0.err")
    assert proj.shown(0) == ("FINAL", "FAILED")
    assert proj.status()["final_causes"] == {"FAILED": 1}


# --- the done rule -----------------------------------------------------------------------------------------
def test_checkpointed_then_timed_out_is_not_done_and_is_resubmitted_without_skipping(proj: Project) -> None:
    proj.ok("submit", A)
    t = proj.task(0)
    proj.fake.start(t.job.id, t.task)
    proj.fake.writeResult(t.job, 0)  # the run saves its curve so far under the required name
    row = proj.status()
    assert (row["running"], row["done"], row["queued"]) == (1, 0, 2)
    proj.fake.end(t.job.id, t.task, "TIMEOUT", results=True)
    row = proj.status()
    assert (row["done"], row["retry"], row["partial"], row["retry_causes"]) == (0, 1, 1, {"TIMEOUT": 1})
    assert "[results on disk are partial]" in proj.show(0)["state"]
    assert proj.ok("missing", A).out.strip() == "0-2"
    w = proj.watchOnce()
    assert [e["indices"] for e in w.events("submitted")] == ["0"]
    spec = proj.fake.last().spec
    assert spec is not None and spec.manifest.skip_done is False and spec.manifest.attempt == 2


def test_crash_after_writing_its_folder_is_not_done(proj: Project) -> None:
    proj.ok("submit", A)
    t = proj.task(1)
    proj.fake.end(t.job.id, t.task, "FAILED", exit=1, results=True)
    assert (proj.root / "results/a/alpha-0.2/0/r.json").is_file()
    row = proj.status()
    assert (row["done"], row["retry_causes"], row["partial"]) == (0, {"FAILED": 1}, 1)
    assert proj.shown(1) == ("RETRY", "FAILED")
    assert proj.show(1)["attempts"] == "1, last exit code 1"
    w = proj.watchOnce()
    assert [e["indices"] for e in w.events("submitted")] == ["1"]


def test_a_deleted_result_is_resubmitted_by_watch(proj: Project) -> None:
    proj.ok("submit", A)
    proj.fake.complete(1)
    assert proj.status()["done"] == 3
    shutil.rmtree(proj.root / "results/a/alpha-0.1/0")
    row = proj.status()
    assert (row["done"], row["missing"]) == (2, 1)
    w = proj.watchOnce()
    assert [e["indices"] for e in w.events("submitted")] == ["0"]
    assert not w.events("ended")
    assert "Traceback" not in w.err


def test_a_bundle_cut_off_by_its_time_limit_escalates_only_the_index_that_ran(proj: Project) -> None:
    d = json.loads((proj.root / "config.json").read_text())
    d["slurm"]["runs_per_task"] = 2
    (proj.root / "config.json").write_text(json.dumps(d))
    proj.ok("submit", A)
    assert proj.fake.spec(1).manifest.tasks == [[0, 1], [2]]
    proj.fake.end(1, 0, "TIMEOUT")  # index 0 ran out of time, index 1 never started
    proj.fake.end(1, 1, "COMPLETED")
    assert proj.shown(0) == proj.shown(1) == ("RETRY", "TIMEOUT")
    w = proj.watchOnce()
    asked = {e["indices"]: e.get("time_limit") for e in w.events("submitted")}
    assert asked == {"0": "0:20:00", "1": "0:10:00"}


# --- lost state, unknown jobs ------------------------------------------------------------------------------
def test_lost_manifests_and_status_files_while_live(proj: Project) -> None:
    proj.ok("submit", A)
    t = proj.task(0)
    proj.fake.start(t.job.id, t.task)
    state = proj.root / "results" / ".pyexputils"
    shutil.rmtree(state / "manifests")
    shutil.rmtree(state / "status")
    row = proj.status()
    assert (row["running"], row["queued"], row["missing"], row["unknown"]) == (1, 2, 0, 0)
    again = proj.ok("submit", A)
    assert "total: 0 planned" in again.out
    assert len(proj.fake.jobs) == 1
    got = proj.ok("cancel", A)
    assert "cancelled 1 jobs (3 indices queued or running): 1" in got.out
    assert proj.fake.cancelled == ["1"]


def test_a_submitter_killed_between_sbatch_and_the_ledger_is_adopted(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed(*args: Any, **kw: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as mp:
        mp.setattr(Ledger, "record", killed)
        assert proj.cli("submit", A).code == 130
    assert len(proj.fake.jobs) == 1
    assert proj.status()["queued"] == 3  # read from its manifest
    got = proj.ok("submit", A)
    assert "adopted from the queue (missing in the ledger): " + proj.fake.job(1).tag in got.out
    assert "total: 0 planned" in got.out and len(proj.fake.jobs) == 1
    proj.fake.complete(1)
    assert proj.status()["done"] == 3


def test_an_unknown_live_job_holds_its_experiment_back_only(proj: Project) -> None:
    proj.fake.add("a-20260101120000ab12-0", 2, state="RUNNING")  # a pyx job of experiment a that nothing here knows
    row = proj.status()
    assert (row["unknown"], row["missing"]) == (3, 0)
    assert "neither the ledger nor a manifest" in proj.ok("status", A).out
    got = proj.ok("submit", A, B)
    assert "experiments/a.json: nothing submitted: job 1 (pyx-a-20260101120000ab12-0) is live" in got.out
    assert "scancel 1" in got.out
    submitted = [j.spec.manifest.experiment for j in proj.fake.jobs.values() if j.spec is not None]
    assert submitted == [proj.path(B)]
    assert proj.status(B)["queued"] == 2
    assert proj.shown(0)[0] == "UNKNOWN"
    said = proj.ok("cancel", A).out
    assert "experiments/a.json: not cancelled: job 1 (pyx-a-20260101120000ab12-0) is live" in said
    assert proj.fake.job(1).tasks[0].state == "RUNNING"  # a job that is not ours for sure is left alone


def test_an_unknown_job_of_another_project_with_the_same_experiment_name_is_not_ours(proj: Project, tmp_path: Path) -> None:
    """squeue --me lists every job of the user: a sarsa.json of another project must not hold this one back."""
    proj.fake.add("a-20260101120000ab12-0", 2, state="RUNNING", workdir=str(tmp_path / "elsewhere"))
    assert (proj.status()["unknown"], proj.status()["missing"]) == (0, 3)
    proj.fake.add("a-20260101120000ab12-1", 2, state="RUNNING", workdir=str(proj.root))
    assert proj.status()["unknown"] == 3  # submitted from this project: in doubt


# --- remembered runs, sub-folders ----------------------------------------------------------------------------
def test_runs_are_remembered_and_another_runs_is_said(proj: Project) -> None:
    proj.ok("submit", A, "--runs", "2")
    row = proj.status()
    assert (row["runs"], row["total"], row["queued"]) == (2, 6, 6)
    assert "2 runs (remembered from its last submit)" in proj.ok("status", A).out
    other = proj.ok("status", A, "--runs", "3")
    assert "--runs 3 (submitted with 2 runs before)" in other.out
    assert proj.status(A, "--runs", "3")["total"] == 9
    proj.fake.complete(1)
    assert proj.ok("missing", A).out.strip() == ""
    assert proj.ok("missing", A, "--runs", "3").out.strip() == "6-8"


def test_from_a_sub_folder_the_same_answers(proj: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    proj.ok("submit", A)
    proj.fake.end(1, 0, "COMPLETED")
    proj.fake.end(1, 1, "TIMEOUT", results=True)
    here = (proj.status(), proj.ok("missing", A).out, [proj.shown(i) for i in range(3)])
    (proj.root / "analysis" / "deep").mkdir(parents=True)
    monkeypatch.chdir(proj.root / "analysis" / "deep")
    exp = "../../" + A
    row = proj.status(exp)
    assert row.pop("experiment") == exp and here[0].pop("experiment") == A
    assert (row, proj.ok("missing", exp).out, [proj.shown(i, exp) for i in range(3)]) == here
    assert here[1].strip() == "1-2"


# --- retry, a full queue -------------------------------------------------------------------------------------
def test_retry_failed_gives_a_fresh_budget_and_resubmits(proj: Project) -> None:
    proj.fake.autopilot = pilot(lambda i, attempt: "FAILED" if i == 0 else "COMPLETED")
    assert proj.cli("watch", A).code == 1
    assert proj.shown(0) == ("FINAL", "FAILED")
    proj.fake.autopilot = None
    jobs = len(proj.fake.jobs)
    got = proj.ok("retry", A, "--cause", "FAILED")
    assert "experiments/a.json: retrying 1 indices: 0" in got.out
    assert len(proj.fake.jobs) == jobs + 1 and proj.fake.spec(jobs + 1).manifest.tasks == [[0]]
    assert proj.shown(0)[0] == "QUEUED"
    proj.fake.end(proj.task(0).job.id, proj.task(0).task, "FAILED")
    assert proj.shown(0) == ("RETRY", "FAILED")  # the fresh budget: one more failure allowed
    assert "nothing to retry" in proj.ok("retry", A, "--cause", "TIMEOUT").out


def test_queue_full_submit_records_what_went_through_and_watch_sends_the_rest(proj: Project) -> None:
    proj.fake.refusals.extend([None, QueueFull("sbatch: error: AssocMaxSubmitJobLimit")])
    got = proj.ok("submit", A, B)
    assert "queue full: sbatch: error: AssocMaxSubmitJobLimit: 2 runs not submitted" in got.out
    assert proj.status(A)["queued"] == 3 and proj.status(B)["missing"] == 2
    assert len(os.listdir(proj.root / "results/.pyexputils/manifests")) == 1  # the refused job's manifest is gone
    proj.fake.refusals.append(QueueFull("sbatch: error: AssocMaxSubmitJobLimit"))  # still full at the first round
    proj.fake.autopilot = pilot(lambda i, attempt: "COMPLETED")
    got = proj.cli("watch", A, B)
    assert got.code == 0, got.err
    assert "2 runs wait for room (trying again next round)" in got.err
    assert "all 5 runs done" in got.err
    assert proj.status(B)["done"] == 2


# --- bad slurm values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["config.json", A])
def test_a_bad_slurm_value_is_one_line_exit_2_everywhere(proj: Project, where: str) -> None:
    path = proj.root / where
    d = json.loads(path.read_text())
    d.setdefault("slurm", {})["mem_per_cpu"] = "banana"
    path.write_text(json.dumps(d))
    lines = set()
    for args in (("submit", A), ("submit", A, "--dry-run"), ("watch", A)):
        got = proj.cli(*args)
        assert got.code == 2, (args, got.out)
        assert len(got.err.strip().splitlines()) == 1
        lines.add(got.err.strip())
    assert len(lines) == 1
    line = lines.pop()
    assert where in line and "mem_per_cpu" in line
    assert not proj.fake.jobs
    assert not (proj.root / "results").exists() or not any((proj.root / "results").rglob("*"))


# --- bugs found (the lead fixes them) ----------------------------------------------------------------------
def test_scancel_of_an_array_is_final_also_while_its_running_task_completes(proj: Project) -> None:
    proj.ok("submit", A)
    proj.fake.lingering = True
    proj.fake.start(1, 0)
    proj.fake.cancel(["1"])  # the user's own scancel: task 0 is being stopped, tasks 1 and 2 vanish
    assert [t.state for t in proj.fake.job(1).tasks] == ["COMPLETING", "CANCELLED", "CANCELLED"]
    w = proj.watchOnce()  # a round within KillWait
    sent = [i for e in w.events("submitted") for i in expand(e["indices"])]
    proj.fake.end(1, 0, "CANCELLED")
    assert sent == [] and proj.verdicts() in ({}, {1: ["CANCELLED"], 2: ["CANCELLED"]})
    assert [proj.shown(i) for i in range(3)] == [("FINAL", "CANCELLED")] * 3


def test_config_backend_names_a_registered_backend(proj: Project) -> None:
    d = json.loads((proj.root / "config.json").read_text())
    (proj.root / "config.json").write_text(json.dumps({**d, "backend": "fake"}))
    configModule._cached.clear()
    assert cli.main(["submit", A]) == 0
    assert len(proj.fake.jobs) == 1


# --- properties: every index's cause is one answer -----------------------------------------------------------
SIGTERM = (Cause.CANCELLED, Cause.PREEMPTED)


@dataclass(frozen=True)
class Fate:
    cause: Cause
    forget: bool
    seen: str | None  # the runner's probe (SIGTERM only)


fates = st.builds(Fate, st.sampled_from(list(Cause)), st.booleans(), st.sampled_from([None, "CANCELLED", "PREEMPTED"]))


def expected(f: Fate, started: bool, sacct: bool, preemptible: bool, arrayCancelled: bool) -> Cause:
    """The cause the fault matrix says one index has (``started``: it began before its task ended;
    ``arrayCancelled``: another task of its array was seen cancelled)."""
    known = sacct or not f.forget
    if f.cause is Cause.VANISHED or (f.cause is Cause.NODE_FAIL and not known and not started):
        return Cause.CANCELLED if arrayCancelled else Cause.VANISHED  # no record of it anywhere
    if f.cause in SIGTERM and not known:
        if f.seen is not None:
            return Cause(f.seen)
        return Cause.PREEMPTED if preemptible else Cause.CANCELLED
    return f.cause


def seenCancelled(fs: list[Fate], sacct: bool) -> bool:
    """Some task of the array was seen cancelled: by the scheduler (while it remembers), or by its runner."""
    return any((f.cause is Cause.CANCELLED and (sacct or not f.forget)) or (f.cause in SIGTERM and f.seen == "CANCELLED") for f in fs)


def act(fake: FakeBackend, t: FakeTask, f: Fate) -> None:
    """One task meets its fate."""
    if f.cause is Cause.VANISHED:
        fake.vanish(t.job.id, t.task)
    else:
        fake.end(t.job.id, t.task, f.cause, seen=f.seen if f.cause in SIGTERM else None)


def forget(fake: FakeBackend, ended: list[tuple[FakeTask, Fate]]) -> None:
    for t, f in ended:
        if f.forget:
            fake.forget(t.job.id, t.task)


@settings(max_examples=60, deadline=None)
@given(st.lists(fates, min_size=2, max_size=2), st.booleans(), st.booleans())
def test_property_session_status_watch_and_ledger_agree(fs: list[Fate], sacct: bool, preemptible: bool) -> None:
    """Session API, bundles of two indices: the standing's cause = the verdict recorded = the fault matrix."""
    with fastDir() as tmp:
        root = Path(tmp)
        makeProject(root, {"runs_per_task": 2}, a=[0.1, 0.2, 0.3, 0.4])
        fake = FakeBackend(sacct=sacct, preemptible=preemptible)
        s = Session(loadConfig(str(root)), fake)
        [sweep] = s.load([str(root / A)])
        with s.openLedger() as ledger:
            r = s.round(ledger, [sweep])
            assert r.sent is not None and len(r.sent.submitted) == 1
        ended = list(zip(fake.job(1).tasks, fs))
        for t, f in ended:
            act(fake, t, f)
        forget(fake, ended)
        whole = (Cause.COMPLETED, Cause.FAILED, Cause.OUT_OF_MEMORY)  # every index of the task ran
        want = {i: expected(fs[i // 2], i % 2 == 0 or fs[i // 2].cause in whole, sacct, preemptible, seenCancelled(fs, sacct))
                for i in range(4)}  # fmt: skip
        reader = Ledger.read(s.state)
        assert reader is not None
        with reader:
            look = Session(loadConfig(str(root)), fake).round(reader, [sweep], send=False)
        seen = {i: look.standings[0].status(i).cause for i in range(4)}
        with s.openLedger() as ledger:
            r = s.round(ledger, [sweep], send=False)
            recorded = {i: v[1].cause for i, v in ledger.verdicts(sweep.path).items()}
        newly = {i: v.cause for i, _, v in r.standings[0].verdicts}
        assert seen == want, fs
        assert recorded == want and newly == want


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), st.booleans(), st.booleans())
def test_property_cli_status_show_watch_and_ledger_agree(capsys: pytest.CaptureFixture[str], data: st.DataObject, sacct: bool, preemptible: bool) -> None:  # fmt: skip
    """The command line, over up to three rounds of fates (every live task meets one; ``watch`` resubmits
    by policy in between): ``show`` of every index, ``status --json`` by cause, the ``ended`` events of the
    following ``watch`` round and the ledger's verdicts all say the fault matrix's cause."""
    with fastDir() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        makeProject(root)
        p = Project(root, FakeBackend(sacct=sacct, preemptible=preemptible), capsys, mp)
        p.ok("submit", A)
        latest: dict[int, Cause] = {}
        history: dict[int, list[str]] = {}
        for _ in range(3):
            live = sorted(p.fake.live(), key=lambda t: (int(t.job.id), t.task))
            if not live:
                break
            fs = data.draw(st.lists(fates, min_size=len(live), max_size=len(live)))
            ended = list(zip(live, fs))
            for t, f in ended:
                act(p.fake, t, f)
            forget(p.fake, ended)
            want: dict[int, Cause] = {}
            for t, f in ended:
                sameJob = [g for u, g in ended if u.job is t.job]
                for i in t.job.indices(t.task):
                    want[i] = expected(f, True, sacct, preemptible, seenCancelled(sameJob, sacct))
            latest.update(want)
            shown = {i: p.shown(i)[1] for i in want}
            assert {i: Cause(c) if c else Cause.COMPLETED for i, c in shown.items()} == want
            row = p.status()
            byCause = Counter(row["retry_causes"]) + Counter(row["final_causes"]) + Counter({"COMPLETED": row["done"]})
            assert +byCause == Counter(str(c) for c in latest.values())
            w = p.watchOnce()
            assert {e["index"]: e["cause"] for e in w.events("ended")} == {i: str(c) for i, c in want.items() if c is not Cause.COMPLETED}
            for i, c in want.items():
                history.setdefault(i, []).append(str(c))
            assert p.verdicts() == history
