"""The watch fault matrix on the real local Slurm (issue 5): each scenario is a small sweep in a project of its
own where one fault happens for real, `pyexputils watch ... --poll 2 --json` runs to its end, and the test
checks that every index has its result or the expected final cause, that no index ran twice at the same
time (the runner's status files, and a per-index flock taken by the program itself), and the attempt
history in the ledger.

Phase A runs the scenarios that leave the rest of the cluster alone at the same time (TIMEOUT, FAILED,
OUT_OF_MEMORY, VANISHED, sbatch failing, watch killed at 12 moments); phases B-D, one after the other,
the ones that disturb the whole cluster (preemption, node down, slurmctld stopped). One module fixture
runs them all (about 5 minutes); each test waits for it and checks its scenario. The module prints the
table of runs, attempts and wall times at its end (and writes it to $PYX_FAULT_TABLE if set).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import faultlib as fl

pytestmark = pytest.mark.slurm
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (scontrol update, restarting slurmctld)")
CLUSTER = fl.REPO / "scripts" / "slurm-cluster"
SEED = int(os.environ.get("PYX_FAULT_SEED", str(int(time.time()) % 10000)))


# --- scenarios: each returns its Outcome -----------------------------------------------------------------------
def runToEnd(o: fl.Outcome, exp: str, environ: dict[str, str], during: Callable[[], None] | None = None) -> fl.Outcome:
    t0 = time.time()
    p = fl.startWatch(o.root, exp, environ)
    try:
        if during is not None:
            during()
        o.exit = p.wait(timeout=660)
    finally:
        fl.killAndWait(p)
        o.wall = time.time() - t0
    return o


def scTimeout(base: Path) -> fl.Outcome:
    o = fl.Outcome("timeout", "TIMEOUT (1 min limit, run needs 70 s)", base / "timeout")
    exp = fl.makeProject(o.root, "timeout", ["slow:70"], {"time": "0:01:00"})
    return runToEnd(o, exp, fl.env())


def scFailed(base: Path) -> fl.Outcome:
    o = fl.Outcome("failed", "FAILED (once / always)", base / "failed")
    exp = fl.makeProject(o.root, "failed", ["fail_once:1", "fail_always:1"], {})
    return runToEnd(o, exp, fl.env())


def scOom(base: Path) -> fl.Outcome:
    o = fl.Outcome("oom", "OUT_OF_MEMORY (runner's record: SIGKILL)", base / "oom")
    exp = fl.makeProject(o.root, "oom", ["oom:1"], {"mem": "200M"})
    return runToEnd(o, exp, fl.env())


def scVanished(base: Path) -> fl.Outcome:
    o = fl.Outcome("vanished", "VANISHED (scancel of a pending task)", base / "vanished")
    exp = fl.makeProject(o.root, "vanished", ["ok:10", "ok:11", "ok:12"], {"throttle": 1})

    def cancelPending() -> None:
        fl.waitFor(lambda: fl.firstJob(o.results) is not None, 60, "the first submission")
        job = fl.firstJob(o.results)
        fl.waitFor(lambda: f"{job}_2 PENDING" in fl.sqsummary(str(job)), 30, f"{job}_2 pending")
        out = subprocess.run(["scancel", f"{job}_2"], capture_output=True, text=True)
        o.notes["scancel"] = f"{job}_2 rc={out.returncode} {out.stderr.strip()}"

    return runToEnd(o, exp, fl.env(), cancelPending)


def scSbatchFails(base: Path) -> fl.Outcome:
    o = fl.Outcome("sbatch_fails", "sbatch fails 8 times (socket timed out)", base / "sbatch_fails")
    exp = fl.makeProject(o.root, "sbatchfails", ["ok:2", "fail_once:2"], {})
    wrapper = fl.makeWrapper(o.root / "bin")
    return runToEnd(o, exp, fl.env(wrapper, FAULT_FAIL_FIRST="8"))


def scKilled(base: Path) -> fl.Outcome:
    """watch SIGKILLed 12 times (6 armed to die right after sbatch returns, 6 at random moments), restarted each time."""
    o = fl.Outcome("killed", "watch SIGKILLed 12x, restarted", base / "killed")
    # failures spread over the first 20 s (resubmissions to kill after) and one long run (the sweep outlasts the kills)
    cases = ["fail_once:3", "fail_once:6", "fail_once:10", "fail_once:15", "fail_once:20", "ok:80", "ok:2", "ok:5"]
    exp = fl.makeProject(o.root, "killed", cases, {"time": "0:03:00"})
    wrapper = fl.makeWrapper(o.root / "bin")
    environ = fl.env(wrapper)
    rng = random.Random(SEED)
    kills: list[str] = []
    t0 = time.time()
    for k in range(12):
        if k % 2 == 0:  # right after a real sbatch returned (before the ledger records it)
            (wrapper / "armed").write_text("")
            p = fl.startWatch(o.root, exp, environ, tag=f"{k:02d}")
            try:
                p.wait(timeout=8)
                kills.append(f"after sbatch ({time.time() - t0:.1f} s)" if not (wrapper / "armed").exists() else "exited")
            except subprocess.TimeoutExpired:  # nothing submitted within 8 s: a timed kill instead
                fl.killAndWait(p)
                kills.append(f"timer 8 s ({time.time() - t0:.1f} s)")
            (wrapper / "armed").unlink(missing_ok=True)
        else:
            delay = rng.uniform(0.1, 5.0)
            p = fl.startWatch(o.root, exp, environ, tag=f"{k:02d}")
            time.sleep(delay)
            kills.append(f"timer {delay:.1f} s ({time.time() - t0:.1f} s)" if p.poll() is None else f"exited {p.returncode}")
            fl.killAndWait(p)
    o.notes["kills"] = kills
    final = fl.startWatch(o.root, exp, environ, tag="99")
    try:
        o.exit = final.wait(timeout=400)
    finally:
        fl.killAndWait(final)
    o.wall = time.time() - t0
    return o


def scCheckpoint(base: Path) -> fl.Outcome:
    """A run that saves its curve so far under the required name every 2 s and hits its time limit: not done
    while it runs (status asked meanwhile), TIMEOUT, resubmitted with more time, completed by attempt 2."""
    o = fl.Outcome("checkpoint", "checkpoints r.json, then TIMEOUT", base / "checkpoint")
    exp = fl.makeProject(o.root, "checkpoint", ["ckpt:70"], {"time": "0:01:00"})

    def askWhileRunning() -> None:
        fl.waitFor(lambda: bool(list(o.root.glob("results/*/*/*/r.json"))), 90, "the first checkpoint")
        time.sleep(3)
        o.notes["status_while_running"] = fl.statusJson(o.root, exp)

    return runToEnd(o, exp, fl.env(), askWhileRunning)


def scCrash(base: Path) -> fl.Outcome:
    """A run that writes its results and then exits 1 is not done: FAILED, resubmitted, completed."""
    o = fl.Outcome("crash", "writes r.json, then exits 1", base / "crash")
    exp = fl.makeProject(o.root, "crash", ["crash:1", "ok:1"], {})
    runToEnd(o, exp, fl.env())
    o.notes["status_root"] = fl.statusJson(o.root, exp)
    o.notes["status_sub"] = fl.statusJson(o.root, exp, cwd=o.root / "experiments")  # from a sub-folder
    o.notes["show_sub"] = fl.cli(o.root, "show", "crash.json", "0", cwd=o.root / "experiments").stdout
    return o


def scScancel(base: Path) -> fl.Outcome:
    """The user runs a plain `scancel` of the whole array (2 tasks running, 2 pending): final, not resubmitted."""
    o = fl.Outcome("scancel", "plain scancel of the whole array", base / "scancel")
    exp = fl.makeProject(o.root, "scancel", ["ok:60", "ok:61", "ok:62", "ok:63"], {"throttle": 2})

    def cancel() -> None:
        fl.waitFor(lambda: fl.firstJob(o.results) is not None, 60, "the first submission")
        fl.waitFor(_bothStarted(o, 2), 60, "two runs started")
        job = str(fl.firstJob(o.results))
        out = subprocess.run(["scancel", job], capture_output=True, text=True)
        o.notes["scancel"] = f"{job} rc={out.returncode} {out.stderr.strip()}"

    return runToEnd(o, exp, fl.env(), cancel)


def _bothStarted(o: fl.Outcome, n: int) -> Callable[[], bool]:
    return lambda: len(fl.startedIndices(o.results)) >= n


def scPreempted(base: Path) -> fl.Outcome:
    o = fl.Outcome("preempted", "PREEMPTED (urgent job takes all 16 CPUs)", base / "preempted")
    exp = fl.makeProject(o.root, "preempted", ["ok:25", "ok:26"], {})

    def preempt() -> None:
        fl.waitFor(_bothStarted(o, 2), 60, "both runs started")
        out = subprocess.run(["sbatch", "--parsable", "-p", "urgent", "-c", "16", "-J", "fault-urgent", "-o", "/dev/null",
                              "--wrap", "sleep 3"], capture_output=True, text=True)  # fmt: skip
        o.notes["urgent"] = out.stdout.strip() or out.stderr.strip()

    return runToEnd(o, exp, fl.env(), preempt)


def nodeName() -> str:
    return subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]


def scNodeFail(base: Path) -> fl.Outcome:
    o = fl.Outcome("node_fail", "NODE_FAIL (node down 3 s, then resume)", base / "node_fail")
    exp = fl.makeProject(o.root, "nodefail", ["ok:25", "ok:26"], {})

    def down() -> None:
        fl.waitFor(_bothStarted(o, 2), 60, "both runs started")
        node = nodeName()
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=pyx-fault-test"], check=True)
        time.sleep(3)
        # with ReturnToService=2 the node (its slurmd answering) may be back already: then resume is refused
        state = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True).stdout.split()
        if not state or not state[0].startswith("idle"):
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True)
        o.notes["node"] = f"{node} ({' '.join(state)} 3 s after down)"

    return runToEnd(o, exp, fl.env(), down)


def scCtldStopped(base: Path) -> fl.Outcome:
    o = fl.Outcome("ctld_stopped", "slurmctld stopped 20 s", base / "ctld")
    exp = fl.makeProject(o.root, "ctld", ["ok:30", "ok:31", "ok:6"], {})
    auto = {**os.environ, "PYX_SLURM_AUTO": "1"}

    def stop() -> None:
        fl.waitFor(_bothStarted(o, 3), 60, "the runs started")
        subprocess.run([str(CLUSTER), "stop-ctld"], check=True, env=auto, capture_output=True)
        t = time.time()
        try:
            time.sleep(20)
        finally:
            subprocess.run([str(CLUSTER), "start-ctld"], check=True, env=auto, capture_output=True)
        o.notes["stopped_s"] = round(time.time() - t, 1)

    return runToEnd(o, exp, fl.env(), stop)


PHASE_A = [scTimeout, scFailed, scOom, scVanished, scSbatchFails, scKilled, scCheckpoint, scCrash, scScancel]
PHASES_BCD = [scPreempted, scNodeFail, scCtldStopped]


NAMES = {scTimeout: "timeout", scFailed: "failed", scOom: "oom", scVanished: "vanished", scSbatchFails: "sbatch_fails",
         scKilled: "killed", scCheckpoint: "checkpoint", scCrash: "crash", scScancel: "scancel", scPreempted: "preempted", scNodeFail: "node_fail", scCtldStopped: "ctld_stopped"}  # fmt: skip


def guarded(fn: Callable[[Path], fl.Outcome], base: Path) -> fl.Outcome:
    try:
        return fn(base)
    except Exception:
        name = NAMES[fn]
        return fl.Outcome(name, name, base / name, error=traceback.format_exc())


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, slurm_cluster: Any) -> Iterator[dict[str, fl.Outcome]]:
    base = tmp_path_factory.mktemp("faults")
    t0 = time.time()
    out: dict[str, fl.Outcome] = {}
    with ThreadPoolExecutor(len(PHASE_A)) as pool:
        for o in pool.map(lambda fn: guarded(fn, base), PHASE_A):
            out[o.name] = o
    if os.geteuid() == 0:
        for fn in PHASES_BCD:
            o = guarded(fn, base)
            out[o.name] = o
    total = time.time() - t0
    yield out
    table = tableOf(out, total, slurm_cluster.accounting)
    rep = request.config.pluginmanager.get_plugin("terminalreporter")
    if rep is not None:
        rep.write_line("")
        for line in table.splitlines():
            rep.write_line(line)
    if os.environ.get("PYX_FAULT_TABLE"):
        with open(os.environ["PYX_FAULT_TABLE"], "a") as f:
            f.write(table + "\n")


def tableOf(out: dict[str, fl.Outcome], total: float, accounting: bool) -> str:
    rows = [f"watch fault matrix ({'with' if accounting else 'without'} sacct; seed {SEED}; {total:.0f} s in all)",
            "| fault | runs | attempts | wall | result |", "|---|---|---|---|---|"]  # fmt: skip
    for o in out.values():
        try:
            h = o.history()
            runs = len(json.loads((next(o.root.glob("experiments/*.json"))).read_text())["metaParameters"]["case"])
            verdicts = "; ".join(f"{i}: {' > '.join(v)}" for i, v in sorted(h.verdicts.items()))
            res = f"exit {o.exit}; {verdicts}" if not o.error else "driver error"
            if o.notes.get("kills"):
                k = o.notes["kills"]
                res += f" ({sum(x.startswith('after sbatch') for x in k)} kills right after sbatch, {sum(x.startswith('timer') for x in k)} timed)"
            rows.append(f"| {o.fault} | {runs} | {h.nAttempts} | {o.wall:.0f} s | {res} |")
        except Exception as e:  # noqa: BLE001 - the table must not hide the tests' own failures
            rows.append(f"| {o.fault} | ? | ? | {o.wall:.0f} s | {o.error and 'driver error' or e} |")
    return "\n".join(rows)


# --- the checks all scenarios share ---------------------------------------------------------------------------
def common(o: fl.Outcome, done: set[int], final: dict[int, str] | None = None) -> fl.History:
    assert o.error is None, o.error
    runs = fl.intervals(o.results)
    assert runs, "no runner status files"
    bad = fl.overlaps(runs)
    assert not bad, f"index ran twice at once: {bad}"
    assert not (o.root / "CONCURRENT").exists(), (o.root / "CONCURRENT").read_text()
    got = fl.resultsOf(o.root)
    assert set(got) == done, f"results for {sorted(got)}, expected {sorted(done)}\n{o.stderr()[-3000:]}"
    h = o.history()
    for idx, atts in h.attempts.items():
        assert len(h.verdicts.get(idx, [])) == len(atts), f"index {idx}: attempts {atts} but verdicts {h.verdicts.get(idx)}"
        assert [a for a, _ in atts] == list(range(1, len(atts) + 1))
    for idx in done:
        assert h.verdicts[idx][-1] == "COMPLETED"
    for idx, cause in (final or {}).items():
        assert h.verdicts[idx][-1] == cause
    ends = [e for e in o.events() if e["event"] == "end"]
    assert ends, "no end event"
    assert {f["index"]: f["cause"] for f in ends[-1]["final"]} == (final or {})
    assert o.exit == (1 if final else 0), o.stderr()[-3000:]
    return h


def tagOf(h: fl.History, idx: int, attempt: int) -> str:
    return dict(h.attempts[idx])[attempt]


# --- the tests ----------------------------------------------------------------------------------------------------
def test_timeout_escalates_time(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["timeout"]
    h = common(o, {0})
    assert h.verdicts[0] == ["TIMEOUT", "COMPLETED"]
    assert h.resources[tagOf(h, 0, 2)][0] == 2  # 0:01:00 -> 0:02:00
    assert h.submissions[tagOf(h, 0, 2)]["resources"].count('"time": "0:02:00"') == 1


def test_failed_once_retried_always_final(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["failed"]
    h = common(o, {0}, {1: "FAILED"})
    assert h.verdicts == {0: ["FAILED", "COMPLETED"], 1: ["FAILED", "FAILED"]}
    log = f".logs/{tagOf(h, 1, 2)}/1.err"
    assert f"index 1: FAILED" in o.stderr() or True  # --json: the report is the end event
    end = [e for e in o.events() if e["event"] == "end"][-1]
    assert end["final"][0]["log"] == log
    assert "failing on purpose (attempt 2)" in (o.root / log).read_text()


def test_out_of_memory_escalates_memory(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["oom"]
    h = common(o, {0})
    assert h.verdicts[0] == ["OUT_OF_MEMORY", "COMPLETED"]
    assert h.resources[tagOf(h, 0, 2)][1:] == (400, "mem")
    assert '"mem": "400M"' in h.submissions[tagOf(h, 0, 2)]["resources"]
    assert '"mem": "200M"' in h.submissions[tagOf(h, 0, 1)]["resources"]


def test_vanished_pending_task_resubmitted(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["vanished"]
    h = common(o, {0, 1, 2})
    assert "rc=0" in o.notes["scancel"], o.notes
    assert h.verdicts[2] == ["VANISHED", "COMPLETED"], h.verdicts
    assert h.verdicts[0] == h.verdicts[1] == ["COMPLETED"]


def test_sbatch_failing_is_retried(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["sbatch_fails"]
    h = common(o, {0, 1})
    assert h.verdicts == {0: ["COMPLETED"], 1: ["FAILED", "COMPLETED"]}
    calls = int((o.root / "bin" / "count").read_text())
    assert calls >= 8 + 2
    assert any(e["event"] == "unreachable" for e in o.events())
    jobs = [json.loads(line) for line in (o.root / "bin" / "sbatch.log").read_text().splitlines()]
    assert len(jobs) == len(h.submissions) == 2, (jobs, list(h.submissions))


def test_watch_killed_at_random_moments(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["killed"]
    kills = o.notes.get("kills", [])
    afterSbatch = [k for k in kills if k.startswith("after sbatch")]
    assert len([k for k in kills if not k.startswith("exited")]) >= 10, kills
    assert len(afterSbatch) >= 3, kills
    h = common(o, set(range(8)))
    # every job sbatch accepted is in the ledger (recorded, or adopted after the kill)
    jobs = [json.loads(line) for line in (o.root / "bin" / "sbatch.log").read_text().splitlines()]
    assert {j["tag"] for j in jobs} <= set(h.submissions), "a submitted job was never recorded"
    assert any(s["adopted"] for s in h.submissions.values()), "no adoption happened (were kills after sbatch?)"
    # no index submitted again while an earlier submission of it could still run it: the earlier run of
    # the index had ended (the runner's `end`) before sbatch accepted the next job with it
    runs = fl.intervals(o.results)
    sentAt = {j["tag"]: j["time"] for j in jobs}
    for idx, atts in h.attempts.items():
        for (_, t1), (_, t2) in zip(atts, atts[1:]):
            before = [r for r in runs if r.tag == t1 and r.index == idx]
            assert before and all(r.end is not None and r.end <= sentAt[t2] for r in before), (idx, t1, t2, before)
    assert sum(len(a) for a in h.attempts.values()) == 8 + 5  # 5 indices fail once


@ROOT_ONLY
def test_preempted_resubmitted(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["preempted"]
    h = common(o, {0, 1})
    assert h.verdicts == {0: ["PREEMPTED", "COMPLETED"], 1: ["PREEMPTED", "COMPLETED"]}, (h.verdicts, o.notes)


@ROOT_ONLY
def test_node_fail_resubmitted(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["node_fail"]
    h = common(o, {0, 1})
    assert h.verdicts == {0: ["NODE_FAIL", "COMPLETED"], 1: ["NODE_FAIL", "COMPLETED"]}, h.verdicts


@ROOT_ONLY
def test_slurmctld_stopped_is_not_job_gone(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["ctld_stopped"]
    h = common(o, {0, 1, 2})
    assert h.verdicts == {0: ["COMPLETED"], 1: ["COMPLETED"], 2: ["COMPLETED"]}, h.verdicts  # nothing resubmitted
    assert o.notes.get("stopped_s", 0) >= 20
    assert any(e["event"] == "unreachable" for e in o.events())


def test_checkpointed_run_cut_off_is_not_done(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["checkpoint"]
    assert o.error is None, o.error
    seen = o.notes["status_while_running"]
    assert seen["done"] == 0 and seen["running"] + seen["queued"] == 1, seen  # its r.json was on disk already
    h = common(o, {0})
    assert h.verdicts[0] == ["TIMEOUT", "COMPLETED"]
    result = fl.resultsOf(o.root)[0]
    assert result["attempt"] == 2 and result["partial"] is False  # the final result, not a checkpoint
    assert o.exit == 0


def test_crash_after_writing_results_is_resubmitted(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["crash"]
    assert o.error is None, o.error
    h = common(o, {0, 1})
    assert h.verdicts == {0: ["FAILED", "COMPLETED"], 1: ["COMPLETED"]}
    assert fl.resultsOf(o.root)[0]["attempt"] == 2 and o.exit == 0
    # status from the project root and from a sub-folder agree
    assert o.notes["status_root"]["done"] == 2 and {**o.notes["status_sub"], "experiment": ""} == {**o.notes["status_root"], "experiment": ""}
    assert "state: DONE" in o.notes["show_sub"] and "attempts: 2" in o.notes["show_sub"], o.notes["show_sub"]


def test_plain_scancel_of_the_array_is_final(matrix: dict[str, fl.Outcome]) -> None:
    o = matrix["scancel"]
    assert o.error is None, o.error
    assert o.exit == 1, (o.stderr, o.notes)
    h = o.history()
    assert all(len(a) == 1 for a in h.attempts.values()), (h.attempts, o.notes)  # nothing resubmitted
    assert h.verdicts == {i: ["CANCELLED"] for i in range(4)}, (h.verdicts, o.notes)
    ended = [e for e in o.events() if e.get("event") == "end"]
    assert ended and {f["cause"] for f in ended[-1]["final"]} == {"CANCELLED"}
