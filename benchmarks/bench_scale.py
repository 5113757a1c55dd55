"""Big sweeps: what a look at a sweep costs from 10^4 to 10^7 indices, each figure next to its baseline
measured in the same run (finding the done indices alone, ``doneMask``; and judging every index one by one
with ``judgeIndex``, the reference path ``judgeEach`` = the per-index loop of the code before issue 11).

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1e4,1e5,1e6] [--big 1e7] [--one-run 1e6]

Each size runs in its own process (``ru_maxrss`` is that process's peak), over the in-process fake backend,
with the project in ``/dev/shm`` (the ledger's fsyncs are not what is measured). Per size: submit every
index (auto bundling); status while every task is queued; a quiet watch round (nothing changed); every
task ends COMPLETED (results and runner status files written, up to 10^5 indices: beyond, the fake
completion itself takes minutes); status before the verdicts are recorded; the submit that records them;
status after; a quiet watch round after. ``--big``: a fresh sweep of that many indices (no ledger, no
results): status, missing, ``submit --dry-run --out DIR`` and a real ``submit`` (fake backend, ledger and
manifests written), each in its own process with its peak RSS and tracemalloc's peak (a second run, per index).
``--big-queued``: a sweep of that many indices submitted (auto bundling) and every task queued: status and a
quiet watch round (ledger and fake backend), each in its own process with its peak RSS (the submit that
sets it up runs in a process of its own, not measured).
``--big-ended``: a sweep of that many indices submitted (auto bundling) whose every task ended, its runner's
status file written (every run COMPLETED, exit 0; no results on disk) and no verdict recorded (no watch ran):
``status`` in its own process, with its peak RSS and tracemalloc's peak (a second run, per index); the files
as the runner writes them (``task_end`` with the run's account, ``runner.status.summary``) and, in the same
run, as runners before it wrote them (no account: every line read) (``--big-ended-files``).
``--ended-round``: a sweep of that many indices whose every task ended (as ``--big-ended``, files with the
run's account), and the first watch round after (writable ledger, nothing sent: every verdict recorded and
every run's time and memory folded into the measurements, ``Durations``), timed (and its ``Session.measure``
alone), then again from the same state under tracemalloc.
``--measured``: planning an experiment of that many settings (one run each), every one measured (three
classes of run time): ``Durations.load`` + ``measured()`` + ``planfit.fit`` + ``plan``, in its own process, with
its peak RSS and tracemalloc's peak (a second run, per setting).
``--one-run``: submit of that many one-run tasks (``--runs-per-task 1``), with the ledger's size.
``--fitted``: a fitted plan of several run-time classes (1,000 settings measured at 2, 6 and 18 s, so each
class's array holds every third setting): its submit, a look (the scheduler, every index judged, as
``status`` makes it) while every task is queued, and a watch round after one task ended, each timed and
then measured again with tracemalloc in a fresh folder; with the ledger's size and rows. Up to
``PYX_BENCH_REFERENCE_UP_TO``, the same again with the encoding before ledger schema 4 and manifest v3 (a
ledger row per run of consecutive indices, the manifest's indices as numbers) in the same run.
Memory: tracemalloc's peak of each phase (a second, untimed run of it), per index.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pyexputils import cli  # noqa: E402
from pyexputils.models import config as configModule  # noqa: E402
from pyexputils.models import loadExperiment  # noqa: E402
from pyexputils.results import doneMask  # noqa: E402
from pyexputils.runner import judge, session  # noqa: E402
from pyexputils.runner.fake import FakeBackend  # noqa: E402
from pyexputils.runner.status import summary  # noqa: E402

COMPLETE_UP_TO = 100_000
REFERENCE_UP_TO = int(float(os.environ.get("PYX_BENCH_REFERENCE_UP_TO", "1e6")))  # judgeIndex per index: 75 s a phase at 10^6


def project(folder: str, n: int, runs: int = 10, slurm: dict[str, Any] | None = None) -> None:
    os.chdir(folder)
    os.makedirs("experiments", exist_ok=True)
    Path("config.json").write_text(json.dumps({"command": "true", "slurm": {"time": "0:10:00", **(slurm or {})}}))
    settings = max(1, n // runs)
    side = max(1, settings // 100)
    Path("experiments/e.json").write_text(json.dumps({"metaParameters": {"a": list(range(side)), "b": list(range(min(100, settings)))}}))
    configModule._cached.clear()


def command(*args: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(args))
    assert code == 0, args


def measure(fn: Callable[[], Any], memory: bool = True) -> tuple[float, float | None]:
    """(seconds, tracemalloc peak in bytes of a second run, or None)."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    if not memory:
        return seconds, None
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def reference(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with every index judged one by one (judgeEach: judgeIndex per index)."""

    def run() -> Any:
        real = session.judgeAll
        session.judgeAll = judge.judgeEach  # type: ignore[assignment]
        try:
            return fn()
        finally:
            session.judgeAll = real

    return run


def child(n: int, out: str) -> None:
    rows: list[dict[str, Any]] = []
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as folder:
        project(folder, n)
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        exp = loadExperiment("experiments/e.json")
        total = exp.numPermutations() * 10
        withRef = total <= REFERENCE_UP_TO

        def row(label: str, fn: Callable[[], Any], baseline: float, ref: bool = withRef, memory: bool = True) -> None:
            seconds, peak = measure(fn, memory)
            r: dict[str, Any] = {"phase": label, "seconds": seconds, "baseline": baseline, "peak": peak}
            if ref:
                r["reference"] = measure(reference(fn), memory=False)[0]
            rows.append(r)

        def status() -> None:
            command("status", "experiments/e.json", "--backend", "fake")

        def missing() -> None:
            command("missing", "experiments/e.json", "--backend", "fake")

        watcher = session.Session(backend=fake)
        watcher.diskRescan = 3600.0
        sweeps = watcher.load(["experiments/e.json"], 10, command=True)

        def quietRound() -> None:
            with watcher.openLedger() as led:
                watcher.round(led, sweeps)

        dm = measure(lambda: doneMask(exp, 10), memory=False)[0]
        t0 = time.perf_counter()
        command("submit", "experiments/e.json", "--runs", "10", "--backend", "fake")
        rows.append({"phase": "submit (auto bundling)", "seconds": time.perf_counter() - t0, "baseline": dm, "peak": None})
        arrays = len(fake.jobs)
        row("status, every task queued", status, dm)
        quietRound()  # the watch's first round lists the results folder
        row("quiet watch round, every task queued", quietRound, dm, ref=False)
        if total <= COMPLETE_UP_TO:
            fake.completeAll()
            dm = measure(lambda: doneMask(exp, 10), memory=False)[0]
            row("status, every task ended, no verdict recorded (runner files read)", status, dm)
            t0 = time.perf_counter()
            command("submit", "experiments/e.json", "--backend", "fake")
            rows.append({"phase": "submit that records every verdict", "seconds": time.perf_counter() - t0, "baseline": dm, "peak": None})
            row("status, verdicts recorded", status, dm)
            row("missing, verdicts recorded", missing, dm)
            watcher.diskRescan = 0.0
            quietRound()
            watcher.diskRescan = 3600.0
            row("quiet watch round, all done", quietRound, dm, ref=False)
        else:  # every attempt recorded COMPLETED, as a watch would, without writing the results (all MISSING)
            from pyexputils.runner.causes import Cause, Verdict
            from pyexputils.runner.ledger import Ledger

            state = next(Path(".").rglob("ledger.sqlite")).parent
            with Ledger.open(str(state.parent)) as led:
                led.addVerdicts(os.path.realpath("experiments/e.json"), [(i, 1, Verdict(Cause.COMPLETED, True, 0)) for i in range(total)])
            fake.jobs.clear()
            row("status, verdicts recorded (no results on disk: all to submit again)", status, dm)
            row("missing, verdicts recorded (no results on disk)", missing, dm)
        ledgerSize = sum(f.stat().st_size for f in Path(".").rglob("ledger.sqlite"))
    result = {"n": total, "arrays": arrays, "rows": rows, "ledger_bytes": ledgerSize,
              "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    Path(out).write_text(json.dumps(result))


def oneRun(n: int, out: str) -> None:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as folder:
        project(folder, n, runs=1, slurm={"runs_per_task": 1})
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        exp = loadExperiment("experiments/e.json")
        t0 = time.perf_counter()
        doneMask(exp, 1)
        dm = time.perf_counter() - t0
        t0 = time.perf_counter()
        command("submit", "experiments/e.json", "--backend", "fake")
        seconds = time.perf_counter() - t0
        ledger = next(Path(".").rglob("ledger.sqlite"))
        result = {"n": exp.numPermutations(), "seconds": seconds, "baseline": dm, "ledger_bytes": ledger.stat().st_size,
                  "arrays": len(fake.jobs), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    Path(out).write_text(json.dumps(result))


def bigCommand(n: int, what: str, out: str, perTask: int | None = None) -> None:
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as folder:
        project(folder, n, runs=1, slurm=None if perTask is None else {"runs_per_task": perTask})
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        args = {"status": ["status"], "missing": ["missing"], "dry-run": ["submit", "--dry-run", "--out", "scripts"],
                "submit": ["submit"], "doneMask": []}[what]  # fmt: skip

        def run() -> None:
            if args:
                command(*args, "experiments/e.json", "--backend", "fake")
            else:
                doneMask(loadExperiment("experiments/e.json"), 1)

        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if what == "submit":  # the second run submits nothing (all queued): a fresh project for it
            fake.jobs.clear()
            for state in list(Path(".").rglob(".pyexputils")):
                shutil.rmtree(state)
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    Path(out).write_text(json.dumps({"seconds": seconds, "maxrss_mb": rss, "peak": peak}))


def writeStatusFiles(fake: FakeBackend, account: bool = True) -> None:
    """What the runner of every task of every job writes when each of its runs completes (exit 0); without
    ``account``, as runners before the run's account on ``task_end`` wrote it."""
    for job in fake.jobs.values():
        assert job.spec is not None
        m = job.spec.manifest
        os.makedirs(os.path.join(m.status_dir, m.tag), exist_ok=True)
        for t in range(len(m.tasks)):
            indices = list(m.tasks[t])
            head = f'"host":"node1","job":"{job.id}","task":{t},"attempt":{m.attempt},"time":1700000000.0'
            with open(os.path.join(m.status_dir, m.tag, f"{t}.jsonl"), "w", encoding="utf-8") as f:
                f.write(json.dumps({"event": "task_start", "host": "node1", "job": job.id, "task": t, "attempt": m.attempt,
                                    "time": 1.7e9, "indices": indices, "pid": 1, "parallel": 1, "tag": m.tag}, separators=(",", ":")) + "\n")  # fmt: skip
                for k in range(0, len(indices), 4096):
                    f.write("".join(f'{{"event":"start",{head},"index":{i},"pid":2,"command":"true"}}\n'
                                    f'{{"event":"end",{head},"index":{i},"cause":"COMPLETED","exit":0,"signal":null,'
                                    f'"seconds":0.01,"maxrss_mb":3.1}}\n' for i in indices[k : k + 4096]))  # fmt: skip
                said = f',"offset":0,"outcomes":{json.dumps(summary((i, DONE) for i in indices), separators=(",", ":"))}' if account else ""
                f.write(f'{{"event":"task_end",{head},"cut_off":false,"cause":null,"exit":0{said}}}\n')


DONE = ("COMPLETED", 0, None, True)  # an index's last line when its run completed


def dropAccounts(folder: str) -> None:
    """Every status file under ``folder`` as runners before the run's account wrote it: its last line
    (task_end) without ``offset`` and ``outcomes``."""
    for path in Path(folder).rglob("*.jsonl"):
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
            at = size - len(tail) + tail.rfind(b"\n", 0, len(tail) - 1) + 1
            end = json.loads(tail[at - (size - len(tail)) :])
            end.pop("offset", None)
            end.pop("outcomes", None)
            f.seek(at)
            f.truncate()
            f.write(json.dumps(end, separators=(",", ":")).encode() + b"\n")


def bigQueued(n: int, what: str, folder: str, out: str) -> None:
    """``setup``: the project in ``folder`` and a submit of every index (``setup-ended``: and every task's
    status file written, every run COMPLETED); ``status`` / ``watch``: that look, over a fake backend that
    holds the submitted arrays, every task PENDING; ``ended``: ``status`` with every task ended (COMPLETED),
    timed, then again under tracemalloc."""
    if what.startswith("setup"):
        project(folder, n)
        fake = FakeBackend()
        session.BACKENDS["fake"] = lambda config: fake
        t0 = time.perf_counter()
        command("submit", "experiments/e.json", "--runs", "10", "--backend", "fake")
        seconds = time.perf_counter() - t0
        if what == "setup-ended":
            writeStatusFiles(fake)
        if what == "setup-ended-old":
            writeStatusFiles(fake, account=False)
        Path(out).write_text(json.dumps({"seconds": seconds, "arrays": len(fake.jobs),
                                         "tasks": sum(len(j.tasks) for j in fake.jobs.values())}))  # fmt: skip
        return
    from pyexputils.runner.ledger import Ledger

    os.chdir(folder)
    configModule._cached.clear()
    fake = FakeBackend()
    session.BACKENDS["fake"] = lambda config: fake
    state = next(Path(".").rglob("ledger.sqlite")).parent
    reader = Ledger.read(str(state.parent))
    assert reader is not None
    with reader:
        for sub in reader.submissions():  # in submission order: the fake's job ids are 1, 2, ...
            assert fake.add(sub.tag, sub.array_size, state="COMPLETED" if what in ("ended", "round") else "PENDING").id == sub.job_id
        ledgerBytes = reader.size()
    dm = None
    if what == "ended":
        t0 = time.perf_counter()
        doneMask(loadExperiment("experiments/e.json"), 10)
        dm = time.perf_counter() - t0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if what == "round":
        return endedRound(fake, out, before)
    t0 = time.perf_counter()
    peak = None
    if what in ("status", "ended"):
        command("status", "experiments/e.json", "--backend", "fake")
        if what == "ended":
            seconds = time.perf_counter() - t0
            tracemalloc.start()
            command("status", "experiments/e.json", "--backend", "fake")
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    else:
        watcher = session.Session(backend=fake)
        sweeps = watcher.load(["experiments/e.json"], 10, command=True)
        with watcher.openLedger() as led:
            r = watcher.round(led, sweeps)
        assert r.sent is None and r.standings[0].counts().get(judge.State.QUEUED) == n, r.standings[0].counts()
    if what != "ended":
        seconds = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"seconds": seconds, "before_mb": before, "ledger_bytes": ledgerBytes, "peak": peak, "baseline": dm,
                                     "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def endedRound(fake: FakeBackend, out: str, before: float) -> None:
    """The first watch round over an ended sweep (cwd: its project), timed, then again under tracemalloc
    from the same state (the ledger and the measurements put back as they were)."""
    state = str(next(Path(".").rglob("ledger.sqlite")).parent.resolve())
    ledger = os.path.join(state, "ledger.sqlite")
    keep = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(".")))
    paths = (ledger, ledger + "-wal", ledger + "-shm", os.path.join(state, "durations"))
    saved = {p: os.path.join(keep, os.path.basename(p)) for p in paths if os.path.exists(p)}
    for p, copy in saved.items():
        (shutil.copytree if os.path.isdir(p) else shutil.copy2)(p, copy)
    timed: dict[str, float] = {}
    real = session.Session.measure

    def measured(self: session.Session, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            timed["measure"] = timed.get("measure", 0.0) + time.perf_counter() - t0

    session.Session.measure = measured  # type: ignore[method-assign]

    def run() -> None:
        watcher = session.Session(backend=fake)
        sweeps = watcher.load(["experiments/e.json"], 10, command=True)
        with watcher.openLedger() as led:
            r = watcher.round(led, sweeps, send=False)
        assert r.sent is None and sum(r.standings[0].counts().values()) > 0

    def restore() -> None:
        for p in paths:
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.unlink(p)
            if p in saved:
                (shutil.copytree if os.path.isdir(saved[p]) else shutil.copy2)(saved[p], p)

    try:
        t0 = time.perf_counter()
        run()
        seconds, measureSeconds = time.perf_counter() - t0, timed.pop("measure")
        durationsBytes = sum(f.stat().st_size for f in Path(state, "durations").rglob("*") if f.is_file())
        restore()
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert timed.pop("measure") > 0
        restore()
    finally:
        shutil.rmtree(keep)
    Path(out).write_text(json.dumps({"seconds": seconds, "measure": measureSeconds, "peak": peak, "before_mb": before, "durations_bytes": durationsBytes,
                                     "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


FITTED_SETTINGS = 1_000


def fitted(n: int, mode: str, out: str) -> None:
    """A fitted plan of several classes (see the module docstring): ``mode`` ``packed`` (now) or ``rows`` (the
    encoding before: no packed ledger rows, the manifest's scattered tasks as numbers)."""
    from pyexputils.runner import bundles, ledger
    from pyexputils.runner.durations import Durations

    if mode == "rows":
        bundles.PACK_RANGES = ledger.PACK_RANGES = 1 << 62
        real = bundles.Bundles.toJson

        def numbers(self: bundles.Bundles) -> dict[str, Any]:
            return real(self) if self.indices.isRanges else {"per": self.per, "indices": self.indices.array().tolist()}

        bundles.Bundles.toJson = numbers  # type: ignore[method-assign]
    runs = max(1, n // FITTED_SETTINGS)
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    got: dict[str, Any] = {"n": n, "mode": mode, "phases": {}}
    for memory in (False, True):
        with tempfile.TemporaryDirectory(dir=base) as folder:
            project(folder, FITTED_SETTINGS * runs, runs=runs)
            fake = FakeBackend()
            s = session.Session(backend=fake)
            path = os.path.realpath("experiments/e.json")
            d = Durations(s.state.durations(path), path, FITTED_SETTINGS)
            for i in range(FITTED_SETTINGS):
                d.add(i, "COMPLETED", 2.0 * 3 ** (i % 3), 100.0)
            d.save()
            s.diskRescan = 3600.0
            with s.openLedger() as led:
                sweeps = s.load(["experiments/e.json"], runs, ledger=led, command=True)

                def phase(label: str, fn: Callable[[], Any]) -> Any:
                    if memory:
                        tracemalloc.start()
                        r = fn()
                        got["phases"][label]["peak"] = tracemalloc.get_traced_memory()[1]
                        tracemalloc.stop()
                        return r
                    t0 = time.perf_counter()
                    r = fn()
                    got["phases"][label] = {"seconds": time.perf_counter() - t0}
                    return r

                sent = phase("submit", lambda: s.round(led, sweeps)).sent
                assert sent is not None and sum(job.manifest.tasks.runs for job, _ in sent.submitted) == FITTED_SETTINGS * runs
                got["arrays"] = len(sent.submitted)
                got["rows"] = led.db.execute("SELECT COUNT(*) FROM attempt_ranges").fetchone()[0]
                got["manifest_bytes"] = sum(os.path.getsize(job.manifest_path) for job, _ in sent.submitted)
                phase("status", lambda: s.standing(sweeps[0], s.snapshot(led, sweeps), led).counts())
                fake.start("1", 0)
                fake.end("1", 0, results=False)
                phase("watch round", lambda: s.round(led, sweeps))
                got["verdict_rows"] = led.db.execute("SELECT COUNT(*) FROM verdict_ranges").fetchone()[0]
                got["ledger_bytes"] = led.size()
                got["task"] = len(fake.spec("1").manifest.tasks[0])
        if not memory:
            got["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps(got))


def measuredPlan(n: int, what: str, folder: str, out: str) -> None:
    """``setup``: run times of ``n`` settings measured (2, 6 and 18 s by setting) and saved under ``folder``;
    ``plan``: load them and plan every setting (fitted), timed, then again under tracemalloc."""
    from pyexputils.runner.backend import Limits
    from pyexputils.runner.durations import Durations
    from pyexputils.runner.plan import PlanOptions, Request, plan
    from pyexputils.runner.planfit import fit

    path = os.path.join(folder, "e.npz")
    if what == "setup":
        d = Durations(path, "/e.json", n)
        for k in range(n):
            d.add(k, "COMPLETED", 2.0 * 3 ** (k % 3), 100.0)
        d.save()
        Path(out).write_text(json.dumps({"bytes": sum(f.stat().st_size for f in Path(folder).iterdir())}))
        return

    def run() -> int:
        d = Durations(path, "/e.json", n)
        m = d.measured()
        assert m is not None
        requests, _ = fit([Request("e", range(n), PlanOptions(time_minutes=10))], {"e": m}, 600)
        return plan(requests, Limits(max_time_minutes=600, max_array_size=1001)).runs

    t0 = time.perf_counter()
    assert run() == n
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    Path(out).write_text(json.dumps({"seconds": seconds, "maxrss_mb": rss, "peak": peak}))


def spawn(*args: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([sys.executable, __file__, *args, "--out", out], check=True)
        return json.loads(Path(out).read_text())  # type: ignore[no-any-return]
    finally:
        os.unlink(out)


def fmtPeak(peak: float | None, n: int) -> str:
    return "-" if peak is None else f"{peak / 2**20:.1f} MB ({peak / n:.1f} B/index)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,1e5,1e6")
    p.add_argument("--big", default="1e7", help="fresh-sweep commands at this size ('' to skip)")
    p.add_argument("--big-queued", default="1e7", help="status and a quiet watch round of a queued sweep of this size ('' to skip)")
    p.add_argument("--big-ended", default="1e6", help="status of a sweep of this size whose every task ended, no verdict recorded ('' to skip)")
    p.add_argument("--big-ended-files", choices=["both", "account", "old"], default="both",
                   help="--big-ended's status files: as the runner writes them (task_end with the run's account), as older runners did, or both")
    p.add_argument("--ended-round", default="", help="the first watch round over an ended sweep of this size ('' to skip)")
    p.add_argument("--measured", default="1e6", help="planning this many measured settings ('' to skip)")
    p.add_argument("--one-run", default="1e6", help="submit of this many one-run tasks ('' to skip)")
    p.add_argument("--fitted", default="1e6", help="a fitted plan of several classes at these sizes ('' to skip)")
    p.add_argument("--child-fitted", nargs=2)
    p.add_argument("--child", type=float)
    p.add_argument("--child-one-run", type=float)
    p.add_argument("--big-runs-per-task", type=int, help="--big with this runs_per_task (default: auto)")
    p.add_argument("--child-big", nargs=2)
    p.add_argument("--child-big-queued", nargs=3)
    p.add_argument("--child-measured", nargs=3)
    p.add_argument("--out")
    a = p.parse_args()
    if a.child:
        return child(int(a.child), a.out)
    if a.child_one_run:
        return oneRun(int(a.child_one_run), a.out)
    if a.child_fitted:
        return fitted(int(float(a.child_fitted[0])), a.child_fitted[1], a.out)
    if a.child_big:
        return bigCommand(int(float(a.child_big[0])), a.child_big[1], a.out, a.big_runs_per_task)
    if a.child_measured:
        return measuredPlan(int(float(a.child_measured[0])), a.child_measured[1], a.child_measured[2], a.out)
    if a.child_big_queued:
        return bigQueued(int(float(a.child_big_queued[0])), a.child_big_queued[1], a.child_big_queued[2], a.out)
    print("| indices | phase | time | baseline: doneMask | ratio | judgeIndex per index (reference) | new / reference | tracemalloc peak |")
    print("|---|---|---|---|---|---|---|---|")
    for size in [int(float(x)) for x in a.sizes.split(",") if x]:
        r = spawn("--child", str(size))
        for row in r["rows"]:
            ref = row.get("reference")
            refText = "-" if ref is None else f"{ref:.3f} s"
            vsRef = "-" if ref is None else f"{row['seconds'] / ref:.2f}x"
            print(f"| {r['n']:,} | {row['phase']} | {row['seconds']:.3f} s | {row['baseline']:.3f} s | "
                  f"{row['seconds'] / row['baseline']:.1f}x | {refText} | {vsRef} | {fmtPeak(row['peak'], r['n'])} |")  # fmt: skip
        print(f"| {r['n']:,} | (whole process: peak RSS {r['maxrss_mb']:.0f} MB; ledger {r['ledger_bytes'] / 1e6:.2f} MB; {r['arrays']} arrays) | | | | | | |")
    if a.one_run:
        n = int(float(a.one_run))
        r = spawn("--child-one-run", str(n))
        print(f"\nsubmit of {r['n']:,} one-run tasks ({r['arrays']} arrays): {r['seconds']:.2f} s "
              f"(doneMask {r['baseline']:.3f} s); ledger {r['ledger_bytes'] / 1e6:.3f} MB; peak RSS {r['maxrss_mb']:.0f} MB")  # fmt: skip
    if a.big:
        n = int(float(a.big))
        print(f"\nfresh sweep of {n:,} indices (no ledger, no results), each command in its own process:")
        per = [] if a.big_runs_per_task is None else ["--big-runs-per-task", str(a.big_runs_per_task)]
        if per:
            print(f"  (runs_per_task {a.big_runs_per_task}: {-(-n // a.big_runs_per_task):,} tasks)")
        base = spawn("--child-big", str(n), "doneMask")
        print(f"  doneMask alone: {base['seconds']:.2f} s, peak RSS {base['maxrss_mb']:.0f} MB")
        for what in ("status", "missing", "dry-run", "submit"):
            r = spawn("--child-big", str(n), what, *per)
            print(f"  {what}: {r['seconds']:.2f} s ({r['seconds'] / max(base['seconds'], 1e-3):.1f}x doneMask), "
                  f"peak RSS {r['maxrss_mb']:.0f} MB ({r['maxrss_mb'] * 2**20 / n:.1f} B/index), "
                  f"tracemalloc peak {fmtPeak(r.get('peak'), n)}")  # fmt: skip

    for n in [int(float(x)) for x in a.fitted.split(",") if x]:
        modes = ["packed", "rows"] if n <= REFERENCE_UP_TO else ["packed"]
        got = {m: spawn("--child-fitted", str(n), m) for m in modes}
        now = got["packed"]
        print(f"\nfitted plan of {n:,} indices ({FITTED_SETTINGS:,} settings measured in 3 classes, {n // FITTED_SETTINGS:,} runs; "
              f"{now['arrays']} arrays, the first's task {now['task']:,} indices), each mode in its own process:")  # fmt: skip
        print("| mode | phase | time | tracemalloc peak | ledger | attempt rows | verdict rows | manifests | peak RSS |")
        print("|---|---|---|---|---|---|---|---|---|")
        for m, r in got.items():
            label = "now (schema 4, manifest v3)" if m == "packed" else "before (a row per run, indices as numbers)"
            for ph, x in r["phases"].items():
                print(f"| {label} | {ph} | {x['seconds']:.2f} s | {fmtPeak(x['peak'], n)} | {r['ledger_bytes'] / 1e6:.2f} MB | "
                      f"{r['rows']:,} | {r['verdict_rows']:,} | {r['manifest_bytes'] / 1e6:.2f} MB | {r['maxrss_mb']:.0f} MB |")  # fmt: skip
        if "rows" in got:
            for ph in now["phases"]:
                a_, b_ = now["phases"][ph], got["rows"]["phases"][ph]
                print(f"  {ph}: {b_['seconds'] / max(a_['seconds'], 1e-6):.1f}x faster, {b_['peak'] / max(a_['peak'], 1):.1f}x less memory than before")

    if a.big_queued:
        n = int(float(a.big_queued))
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.TemporaryDirectory(dir=base) as folder:
            setup = spawn("--child-big-queued", str(n), "setup", folder)
            print(f"\nqueued sweep of {n:,} indices ({setup['arrays']} arrays, {setup['tasks']:,} tasks; submit {setup['seconds']:.1f} s, "
                  "not measured), each look in its own process (RSS before it: the interpreter, imports and the fake):")  # fmt: skip
            for what, label in (("status", "status"), ("watch", "quiet watch round")):
                r = spawn("--child-big-queued", str(n), what, folder)
                print(f"  {label}: {r['seconds']:.2f} s, peak RSS {r['maxrss_mb']:.0f} MB ({r['maxrss_mb'] * 2**20 / n:.1f} B/index; "
                      f"{r['before_mb']:.0f} MB before it); ledger {r['ledger_bytes'] / 1e6:.2f} MB")  # fmt: skip
    if a.big_ended:
        n = int(float(a.big_ended))
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.TemporaryDirectory(dir=base) as folder:
            kinds = {"both": ["account", "old"], "account": ["account"], "old": ["old"]}[a.big_ended_files]
            setup = spawn("--child-big-queued", str(n), "setup-ended" if kinds[0] == "account" else "setup-ended-old", folder)
            files = sum(f.stat().st_size for f in Path(folder).rglob("*.jsonl"))
            print(f"\nended sweep of {n:,} indices ({setup['arrays']} arrays, {setup['tasks']:,} tasks; status files {files / 2**20:.0f} MB, "
                  "every run COMPLETED, no results on disk, no verdict recorded), status in its own process:")  # fmt: skip
            for kind in kinds:
                if kind == "old" and kinds[0] == "account":
                    dropAccounts(folder)
                r = spawn("--child-big-queued", str(n), "ended", folder)
                label = "task_end with the run's account" if kind == "account" else "no account (older runners: every line read)"
                print(f"  status, {label}: {r['seconds']:.2f} s ({r['seconds'] / max(r['baseline'], 1e-3):.1f}x doneMask {r['baseline']:.2f} s), "
                      f"peak RSS {r['maxrss_mb']:.0f} MB ({r['maxrss_mb'] * 2**20 / n:.1f} B/index; {r['before_mb']:.0f} MB before it), "
                      f"tracemalloc peak {fmtPeak(r['peak'], n)}")  # fmt: skip

    if a.ended_round:
        n = int(float(a.ended_round))
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        with tempfile.TemporaryDirectory(dir=base) as folder:
            setup = spawn("--child-big-queued", str(n), "setup-ended", folder)
            r = spawn("--child-big-queued", str(n), "round", folder)
            print(f"\nthe first watch round over an ended sweep of {n:,} indices ({setup['arrays']} arrays, {setup['tasks']:,} tasks, "
                  f"every run COMPLETED, files with the run's account; verdicts recorded, run times folded): {r['seconds']:.2f} s "
                  f"(Session.measure {r['measure']:.2f} s), peak RSS {r['maxrss_mb']:.0f} MB ({r['before_mb']:.0f} MB before it), "
                  f"tracemalloc peak {fmtPeak(r['peak'], n)}; measurements {r['durations_bytes'] / 2**20:.2f} MB on disk")  # fmt: skip

    if a.measured:
        n = int(float(a.measured))
        with tempfile.TemporaryDirectory() as folder:
            setup = spawn("--child-measured", str(n), "setup", folder)
            r = spawn("--child-measured", str(n), "plan", folder)
            print(f"\nplanning {n:,} measured settings (3 classes; measurements {setup['bytes'] / 2**20:.1f} MB on disk): "
                  f"{r['seconds']:.2f} s, peak RSS {r['maxrss_mb']:.0f} MB, tracemalloc peak {fmtPeak(r['peak'], n).replace('index', 'setting')}")  # fmt: skip


if __name__ == "__main__":
    main()
