"""runner.durations: per-setting measurements folded once from the runner's status files, bounded in size."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyexputils.runner import durations
from pyexputils.runner.durations import _STATS, RING, Durations, SubmissionInfo, _Table
from pyexputils.runner.policy import Measure
from pyexputils.runner.statedir import StateDir
from pyexputils.runner.causes import Cause
from pyexputils.runner.status import StatusWriter, lastRunEnded, readEvents


def writeTask(state: StateDir, tag: str, task: int, runs: list[tuple[int, str, float, float | None]], end: bool = True) -> None:
    folder = Path(state.statusOf(tag))
    folder.mkdir(parents=True, exist_ok=True)
    t = 1000.0
    lines = [{"event": "task_start", "time": t, "parallel": 1, "indices": [i for i, *_ in runs]}]
    for index, cause, seconds, mem in runs:
        t += seconds
        e = {"event": "end", "time": t, "index": index, "cause": cause, "seconds": seconds}
        if mem is not None:
            e["maxrss_mb"] = mem
        lines.append(e)
    if end:
        lines.append({"event": "task_end", "time": t + 1})
    (folder / f"{task}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def sub(tag: str, size: int = 2) -> SubmissionInfo:
    return SubmissionInfo(tag, "77", size, {"time": "0:10:00", "cpus_per_task": 2, "mem": "1000M"})


def test_fold_once_save_load_and_measure(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    writeTask(state, "a-1", 0, [(0, "COMPLETED", 10.0, 100.0), (4, "COMPLETED", 12.0, 150.0), (1, "TIMEOUT", 30.0, None)])
    writeTask(state, "a-1", 1, [(2, "COMPLETED", 40.0, None)], end=False)  # still running
    d = Durations.load(state, "/p/e.json", 4)
    d.refresh(state, [sub("a-1")], live={"77"})
    assert d.changed and int(d.n[0]) == 2 and int(d.n[2]) == 0  # the unfinished task waits
    d.refresh(state, [sub("a-1")], live={"77"})
    assert int(d.n[0]) == 2  # folded once
    d.save()
    again = Durations.load(state, "/p/e.json", 4)
    assert int(again.n[0]) == 2 and again.arrays["a-1"]["folded"] == "0"
    again.refresh(state, [sub("a-1")], live=set())  # the job left the queue: the rest is folded, closed
    assert int(again.n[2]) == 1 and again.arrays["a-1"]["closed"]
    m = again.measured()
    assert m is not None and m.perSetting[0].mean == 11.0 and m.perSetting[2].mean == 40.0
    assert m.perSetting[1].mean == 60.0  # only a TIMEOUT at 30 s: at least twice that
    assert again.measure(4) == Measure(m.perSetting[0].p95, 150.0)
    (row,) = again.efficiency()
    assert row["tasks_ended"] == 2 and row["timeouts"] == 1 and row["time_requested_min"] == 10.0
    assert row["cpus"] == 2.0 and row["mem_requested_mb"] == 1000.0 and row["mem_efficiency"] == 0.15
    assert 0 < row["time_efficiency"] < 1
    assert Durations.load(state, "/p/e.json", 5).measured() is None  # another sweep shape: afresh


def test_size_is_per_setting_not_per_run(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    d = Durations.load(state, "/p/e.json", 3)
    for k in range(10_000):
        d.add(k, "COMPLETED", float(k % 7 + 1))
    d.save()
    assert os.path.getsize(d.path) < 4096
    assert d.ring.shape == (3, RING)
    m = d.measured()
    assert m is not None and m.overall is not None and 1 <= m.overall.mean <= 7


def test_unreadable_file_starts_afresh(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    path = Path(state.durations("/p/e.json"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip")
    assert Durations.load(state, "/p/e.json", 2).measured() is None


def test_a_look_reads_the_small_file_only_and_the_table_is_rewritten_when_the_log_is_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    state = StateDir(str(tmp_path))
    d = Durations.load(state, "/p/e.json", 10_000)
    for k in range(10_000):
        d.add(k, "COMPLETED", 2.0, 50.0)
    d.save()  # many runs: the table is written
    reads: list[str] = []
    real = Durations._read
    monkeypatch.setattr(Durations, "_read", lambda self: reads.append(self.path) or real(self))
    a = Durations.load(state, "/p/e.json", 10_000)
    writeTask(state, "a-1", 0, [(3, "COMPLETED", 4.0, 80.0), (7, "TIMEOUT", 9.0, None)])
    a.refresh(state, [sub("a-1")], live={"77"})
    a.save()  # two runs: beside the table, which is not read
    assert reads == [] and a.arrays["a-1"]["tasks"] == 1
    b = Durations.load(state, "/p/e.json", 10_000)
    assert reads == [] and b.arrays == a.arrays
    assert int(b.n[3]) == 2 and int(b.n[7]) == 1 and b.measure(7) is not None and len(reads) == 1
    m = b.measured()
    assert m is not None and m.perSetting[3].mean == 3.0 and m.perSetting[7].mean == 2.0 and len(m.perSetting) == 10_000
    assert b.measure(3) == Measure(m.perSetting[3].p95, 80.0)


def test_a_version_1_file_is_read_and_a_compaction_cut_short_counts_no_run_twice(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    path = Path(state.durations("/p/e.json"))
    path.parent.mkdir(parents=True)
    dense = {"n": np.array([2, 0, 0]), "sum": np.array([6.0, 0, 0]), "sumsq": np.array([20.0, 0, 0]), "max": np.array([4.0, 0, 0]),
             "mem": np.array([0.0, 0, 30.0]), "timeouts": np.array([0, 1, 0]), "censored": np.array([0.0, 5.0, 0]),
             "ring": np.array([[2, 4, 0, 0, 0, 0, 0, 0], [0] * 8, [0] * 8], dtype=np.float32)}  # fmt: skip
    meta = {"version": 1, "experiment": "/p/e.json", "settings": 3, "arrays": {"a-1": {"closed": True}}}
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), **dense)
    d = Durations.load(state, "/p/e.json", 3)
    assert d.arrays == meta["arrays"] and d.n.tolist() == [2, 0, 0] and d.measure(2) == Measure(None, 30.0)
    m = d.measured()
    assert m is not None and m.perSetting[0].mean == 3.0 and m.perSetting[1].mean == 10.0
    d.add(0, "COMPLETED", 6.0)
    d.save()  # the table was read: rewritten (version 2), the log emptied
    f = Durations.load(state, "/p/e.json", 3)
    f.add(0, "COMPLETED", 6.0)
    f.save()  # beside the table
    log = Path(d.logPath).read_bytes()
    g = Durations.load(state, "/p/e.json", 3)
    assert int(g.n[0]) == 4
    g.save()  # the table read: rewritten with the run of the log
    Path(d.logPath).write_bytes(log)  # as if the process had died before the log was rewritten
    e = Durations.load(state, "/p/e.json", 3)
    assert int(e.n[0]) == 4 and e.measured() is not None  # each run once


def test_a_version_2_file_is_read_as_this_version_would_have_made_it_of_the_same_runs(tmp_path: Path) -> None:
    """Session 6's files (table: counts int64, figures float64; the log as now): the records and the log kept,
    the table narrowed to this version's types, as if its runs had been merged now; written back as version 3."""
    state = StateDir(str(tmp_path))
    path = Path(state.durations("/p/e.json"))
    path.parent.mkdir(parents=True)
    nan = math.nan
    runs = [(0, 1, 3.3, 100.1), (0, 1, 4.7, nan), (1, 2, 600.1, nan), (2, 0, 1.0, 250.3), (0, 1, 1e-3, nan), (1, 2, 0.7, 3.0),
            *((4, 1, 0.1 * k, 1.5) for k in range(11))]  # fmt: skip
    later = [(0, 1, 5.5, 80.2), (3, 2, 9.9, nan)]
    wide = wideTable()
    referenceMerge(wide, runs)
    meta = {"version": 2, "experiment": "/p/e.json", "settings": 5, "gen": 1}
    with open(path, "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps(meta)), ids=wide.ids, **{k: getattr(wide, k) for k in _STATS})
    records = {"a-1": {"job": "7", "folded": "0-3", "closed": True, "tasks": 4, "runs": 19}}
    ls, lc, lt, lm = (np.array(x, dtype) for x, dtype in zip(zip(*later), (np.int64, np.int8, np.float64, np.float64)))
    with open(Path(path).with_suffix(".log.npz"), "wb") as f:
        np.savez_compressed(f, meta=np.array(json.dumps({**meta, "arrays": records})), ls=ls, lc=lc, lt=lt, lm=lm)
    d = Durations.load(state, "/p/e.json", 5)
    assert d.logPath == str(Path(path).with_suffix(".log.npz")) and d.arrays == records and d._logged == 2
    table = referenceTable(runs + later)
    assert tableOf(d._table_()) == tableOf(table) and wide.censored[1] != table.censored[1]  # 600.1 as float32
    figures = referenceFigures(table, 5)
    assert figuresOf(d) == figures
    d.save()
    with np.load(path) as z:
        assert json.loads(str(z["meta"]))["version"] == 3 and {k: str(z[k].dtype) for k in _STATS} == {k: np.dtype(NARROW[k]).name for k in _STATS}
    again = Durations.load(state, "/p/e.json", 5)
    assert again.arrays == records and tableOf(again._table_()) == tableOf(table) and figuresOf(again) == figures


def test_a_requeued_task_is_folded_when_its_last_run_ended_with_every_run_of_it(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path))
    writeTask(state, "a-1", 0, [(0, "TIMEOUT", 30.0, None)])  # the first run, cut off (its task_end written)
    path = Path(state.statusOf("a-1")) / "0.jsonl"
    first = path.read_text()
    path.write_text(first + json.dumps({"event": "task_start", "time": 2000.0, "parallel": 1, "indices": [0, 2]}) + "\n"
                    + json.dumps({"event": "end", "time": 2010.0, "index": 0, "cause": "COMPLETED", "seconds": 10.0}) + "\n")  # requeued, running
    d = Durations.load(state, "/p/e.json", 4)
    d.refresh(state, [sub("a-1")], live={"77"})
    assert int(d.n[0]) == 0 and d.arrays["a-1"]["folded"] == ""  # the second run goes on: not yet
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"event": "end", "time": 2030.0, "index": 2, "cause": "COMPLETED", "seconds": 20.0}) + "\n")
        f.write(json.dumps({"event": "task_end", "time": 2031.0}) + "\n")
    d.refresh(state, [sub("a-1")], live={"77"})
    assert int(d.n[0]) == 1 and int(d.n[2]) == 1 and d.arrays["a-1"]["folded"] == "0"  # both runs, once


@pytest.mark.parametrize("last, ended", [('{"event":"task_end","x":1}\n', True), ('{"event": "task_end"}\n', True),
                                         ('{"event":"end","index":1}\n', False), ('{"event":"task_end","x":1}', False),
                                         ('{"event":"task_start","indices":[' + ",".join(map(str, range(50_000))) + "]}\n", False),
                                         ('{"event":"task_end","outcomes":"' + "7," * 50_000 + '"}\n', True), ("", False)])  # fmt: skip
def test_last_run_ended_reads_the_last_line_only(tmp_path: Path, last: str, ended: bool) -> None:
    path = tmp_path / "0.jsonl"
    path.write_text('{"event":"task_start","indices":[1]}\n{"event":"task_end"}\n' + last)  # an earlier run's task_end does not count
    assert lastRunEnded(str(path)) is (ended or not last)
    assert not lastRunEnded(str(tmp_path / "none.jsonl"))


# --- the array fold against the per-run fold it replaced -----------------------------------------------


def referenceFold(rec: dict[str, Any], events: Iterable[Mapping[str, Any]], settings: int, log: list[tuple[int, int, float, float]]) -> None:
    """Durations._foldTask and add before the array fold (session 6), one event and one run at a time."""
    start: float | None = None
    last: float | None = None
    for e in events:
        t = e.get("time")
        if isinstance(t, (int, float)):
            last = float(t) if last is None else max(last, float(t))
        kind = e.get("event")
        if kind == "task_start":
            if start is None and isinstance(t, (int, float)):
                start = float(t)
            if isinstance(e.get("parallel"), int):
                rec["parallel"] = max(int(rec.get("parallel", 1)), e["parallel"])
            continue
        if kind != "end" or not isinstance(e.get("index"), int):
            continue
        seconds = e.get("seconds")
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            continue
        rec["runs"] += 1
        rec["run_seconds"] += float(seconds)
        mem = e.get("maxrss_mb")
        if isinstance(mem, (int, float)):
            rec["mem_max_mb"] = max(rec["mem_max_mb"], float(mem))
        code = {"COMPLETED": 1, "TIMEOUT": 2}.get(str(e.get("cause")), 0)
        if code or isinstance(mem, (int, float)):
            log.append((int(e["index"]) % settings, code, float(seconds), math.nan if not isinstance(mem, (int, float)) else float(mem)))
        if e.get("cause") == "TIMEOUT":
            rec["timeouts"] += 1
        elif e.get("cause") == "COMPLETED":
            rec["completed"] += 1
    if start is not None and last is not None:
        rec["elapsed"] += last - start
    rec["tasks"] += 1


def referenceMerge(t: _Table, log: Sequence[tuple[int, int, float, float]]) -> None:
    """Durations._merge before the array fold: a Python loop per run (and its growth: np.insert per column)."""
    settings = np.unique(np.fromiter((x[0] for x in log), dtype=np.int64, count=len(log)))
    new = settings[~np.isin(settings, t.ids)]
    at = np.searchsorted(t.ids, new)
    t.ids = np.insert(t.ids, at, new)
    for name in _STATS:
        setattr(t, name, np.insert(getattr(t, name), at, 0, axis=0))
    ids = t.ids
    n, total, sq, top, mem, timeouts, censored, ring = (t.n, t.sum, t.sumsq, t.max, t.mem, t.timeouts, t.censored, t.ring)
    for s, code, seconds, m in log:
        k = int(np.searchsorted(ids, s))
        if m == m:  # not nan
            mem[k] = max(mem[k], m)
        if code == 1:
            ring[k, n[k] % RING] = seconds
            n[k] += 1
            total[k] += seconds
            sq[k] += seconds * seconds
            top[k] = max(top[k], seconds)
        elif code == 2:
            timeouts[k] += 1
            censored[k] = max(censored[k], seconds)


def wideTable() -> _Table:
    """An empty table in the types of version 2 (every count int64, every figure but the ring float64)."""
    f, i = np.zeros(0, np.float64), np.zeros(0, np.int64)
    return _Table(i, i.copy(), f, f.copy(), f.copy(), f.copy(), i.copy(), f.copy(), np.zeros((0, RING), np.float32))


NARROW = {"n": np.int32, "sum": np.float64, "sumsq": np.float64, "max": np.float32, "mem": np.float64, "timeouts": np.int32,
          "censored": np.float32, "ring": np.float32}  # version 3: counts int32, sums float64, run times not summed float32  # fmt: skip


def referenceTable(log: Sequence[tuple[int, int, float, float]]) -> _Table:
    """The table the per-run merge makes of ``log`` in version 2's types, then in this version's."""
    t = wideTable()
    referenceMerge(t, log)
    return _Table(t.ids, *(getattr(t, k).astype(NARROW[k]) for k in _STATS))


NUMBER = st.one_of(st.floats(0, 1e7), st.integers(0, 10**6), st.sampled_from([0.0, 1e-5, 2.5e20, 1e400, -1.5, math.nan, True, None, "3"]))


@st.composite
def endLine(draw: st.DrawFn) -> str:
    e: dict[str, Any] = {"event": "end", "host": "node1", "job": "5", "task": draw(st.integers(0, 3)), "attempt": 1,
                         "time": draw(st.one_of(st.floats(0, 2e9), st.integers(0, 2 * 10**9), st.sampled_from([-1.0, math.nan]))),
                         "index": draw(st.one_of(st.integers(0, 40), st.sampled_from([-3, True, 10**20, "4"]))),
                         "cause": draw(st.sampled_from(["COMPLETED", "COMPLETED", "TIMEOUT", "FAILED", "OUT_OF_MEMORY", "CANCELLED"])),
                         "exit": draw(st.sampled_from([0, 1, -2, None])), "signal": draw(st.sampled_from([None, 9, 15]))}  # fmt: skip
    seconds = draw(NUMBER)
    if seconds is not None:
        e["seconds"] = seconds
    mem = draw(st.one_of(st.none(), NUMBER))
    if mem is not None:
        e["maxrss_mb"] = mem
    if draw(st.booleans()):
        e["missing"] = draw(st.lists(st.sampled_from(["out.npz", 'a"b', "é", "x\\y"]), max_size=2))
    if draw(st.booleans()):
        e["killed"] = True
    if draw(st.integers(0, 9)) == 0:
        e["extra"] = 1  # a field the runner does not write
    shape = draw(st.integers(0, 19))
    if shape == 0:
        return json.dumps(e) + "\n"  # spaced
    if shape == 1:
        return '{"event":"end","index":' + "}\n"  # damaged
    if shape == 2:
        return '{"event":"start",' + json.dumps(e, separators=(",", ":"))[1:] + "\n"  # read as its first kind
    return json.dumps(e, separators=(",", ":")) + draw(st.sampled_from(["\n"] * 6 + ["\r\n", "\r"]))


@st.composite
def taskFile(draw: st.DrawFn) -> str:
    lines = [json.dumps({"event": "task_start", "time": draw(st.sampled_from([1000.0, 5, math.nan, None])), "parallel": draw(st.integers(1, 3)),
                         "indices": [1, 2]}, separators=(",", ":")) + "\n"]  # fmt: skip
    for _ in range(draw(st.integers(0, 30))):
        lines.append(draw(st.one_of(endLine(), endLine(), endLine(), st.sampled_from(['{"event":"start","index":1,"time":3e9}\n',
                     '{"event":"task_end","time":2.5e9}\n', '{"event": "task_start", "time": 1.0, "parallel": 7}\n', '[1]\n',
                     *(f'{{"event":"task_start","time":{t},"indices":{x},"parallel":{p}}}\n' for t, x, p in  # its indices not decoded when well formed
                       [(7, "[]", 4), (0.5, "[0]", 5), (9, "[0,10,2]", 6), (3, "[01]", 8), (4, "[1,-2]", 9), (5, "[1,,2]", 9), (6, "[1,2", 9),
                        (2, '[1],"parallel":12,"indices":[3]', 10), (1, "[1 ,2]", 11)])]))))  # fmt: skip
    end = '{"event":"end","host":"n","job":"5","task":0,"attempt":1,"time":3.5e9,"index":2,"cause":"COMPLETED","exit":0,"signal":null,"seconds":4.5}'
    return "".join(lines) + draw(st.sampled_from(["", '{"event":"task_end","time":3000.5}\n', end, end + "\r", "\r"]))


def tableOf(t: _Table) -> str:
    """Every figure, exactly (nan equal to nan), and its type."""
    return repr({k: (str(getattr(t, k).dtype), getattr(t, k).tolist()) for k in ("ids", *_STATS)})


def referenceFigures(t: _Table, settings: int) -> str:
    """Durations.measured() and measure() of every setting, as session 6 made them of the table (every call
    from the table; exactly, nan equal to nan)."""
    n = np.maximum(t.n, 1)
    mean = t.sum / n
    sd = np.sqrt(np.maximum(0.0, t.sumsq / n - mean * mean))
    p95 = np.zeros(len(t.ids))
    some = t.n > 0
    for c in np.unique(np.minimum(t.n[some], RING)).tolist():
        rows = np.flatnonzero(np.minimum(t.n, RING) == c)
        for a in range(0, len(rows), 1 << 14):
            part = rows[a : a + (1 << 14)]
            p95[part] = np.quantile(t.ring[part, :c].astype(np.float64), 0.95, axis=1)
    p95 = np.maximum(np.maximum(p95, mean), t.censored) * some
    mean, sd = mean * some, sd * some
    seen = (t.n > 0) | (t.timeouts > 0)
    measured: Any = None
    if seen.any():
        if bool(seen.all()) and bool((t.n > 0).all()):
            table = (t.ids, mean, sd, p95)
        else:
            timedOut = t.n[seen] == 0
            x = 2.0 * t.censored[seen].astype(np.float64)
            table = (t.ids[seen], np.where(timedOut, x, mean[seen]), np.where(timedOut, 0.0, sd[seen]), np.where(timedOut, x, p95[seen]))
        total = int(t.n.sum())
        overall = None
        if total:
            mu = float(t.sum.sum()) / total
            sigma = math.sqrt(max(0.0, float(t.sumsq.sum()) / total - mu * mu))
            samples = t.ring.ravel() if bool((t.n >= RING).all()) else t.ring[np.arange(RING)[None, :] < t.n[:, None]]
            overall = (mu, sigma, max(mu, float(np.quantile(samples, 0.95))))
        measured = ([a.tolist() for a in table], overall)
    each = []
    for s in range(settings):
        k = int(np.searchsorted(t.ids, s))
        if k >= len(t.ids) or t.ids[k] != s:
            each.append(None)
            continue
        rt = float(p95[k]) if t.n[k] else None
        mem = float(t.mem[k]) or None
        each.append(None if rt is None and mem is None else (rt, mem))
    return repr((measured, each))


def figuresOf(d: Durations) -> str:
    """What :func:`referenceFigures` gives, from ``d``'s readers."""
    m = d.measured()
    measured: Any = None
    if m is not None:
        t = m.table()
        measured = ([a.tolist() for a in (t.keys, t.mean, t.sd, t.p95)], None if (o := m.overall) is None else (o.mean, o.sd, o.p95))
    each = [(x.p95_s, x.mem_mb) if (x := d.measure(s)) is not None else None for s in range(d.settings)]
    return repr((measured, each))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=st.lists(taskFile(), min_size=1, max_size=3), settings_=st.integers(1, 6), block=st.sampled_from([1, 7, 64, 1 << 20]),
       logMin=st.sampled_from([0, 3, 256]), before=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["COMPLETED", "TIMEOUT", "FAILED"]),
                                                                         st.floats(0, 100), st.one_of(st.none(), st.floats(0, 10)))))  # fmt: skip
def test_the_array_fold_gives_the_table_and_record_of_the_per_run_fold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: list[str],
                                                                       settings_: int, block: int, logMin: int,
                                                                       before: list[tuple[int, str, float, float | None]]) -> None:  # fmt: skip
    """Lines of the runner's shape, spaced, damaged or odd (nan, bool, negative, huge, a string), in batches of
    any size, the table merged early or late, over runs folded before: the same table, record and log."""
    monkeypatch.setattr(durations, "BLOCK", block)
    monkeypatch.setattr(durations, "LOG_MIN", logMin)
    root = tmp_path / str(len(list(tmp_path.iterdir())))
    state = StateDir(str(root))
    d = Durations.load(state, "/p/e.json", settings_)
    ref: list[tuple[int, int, float, float]] = []
    for index, cause, seconds, mem in before:
        d.add(index, cause, seconds, mem)
        code = {"COMPLETED": 1, "TIMEOUT": 2}.get(cause, 0)
        if code or mem is not None:
            ref.append((index % settings_, code, seconds, math.nan if mem is None else mem))
    d.save()
    d = Durations.load(state, "/p/e.json", settings_)
    d.measured()  # the figures of the runs before (made again when runs are added)
    folder = Path(state.statusOf("a-1"))
    folder.mkdir(parents=True)
    for task, text in enumerate(files):
        (folder / f"{task}.jsonl").write_bytes(text.encode())
    d.refresh(state, [sub("a-1", len(files))], live=set())
    rec = {"runs": 0, "run_seconds": 0.0, "mem_max_mb": 0.0, "timeouts": 0, "completed": 0, "elapsed": 0.0, "tasks": 0}
    for name in os.listdir(folder):  # in the order refresh takes them
        referenceFold(rec, readEvents(str(folder / name), durations._FOLDED), settings_, ref)
    got = d.arrays["a-1"]
    assert repr({k: got[k] for k in rec}) == repr(rec) and got.get("parallel") == rec.get("parallel")
    table = referenceTable(ref)
    assert tableOf(d._table_()) == tableOf(table), (tableOf(d._table_()), tableOf(table))
    figures = referenceFigures(table, settings_)
    assert figuresOf(d) == figures
    written = d._ahead or d._long()
    d.save()
    assert (d._t is None or not written) and figuresOf(d) == figures  # the table let go once written: its figures kept
    again = Durations.load(state, "/p/e.json", settings_)
    assert tableOf(again._table_()) == tableOf(table) and figuresOf(again) == figures


def test_end_lines_as_the_runner_writes_them_are_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """StatusWriter's lines, fields as TaskRunner._finish gives them: matched, not decoded (only task_start and
    task_end are); the same table and record as the per-run fold."""
    state = StateDir(str(tmp_path))
    path = Path(state.statusOf("a-1")) / "0.jsonl"
    with StatusWriter(str(path), host="node-7", job="12_3", task=3, attempt=2) as w:
        w.write("task_start", time=100.0, indices=list(range(40)), pid=1, parallel=2, tag="a-1")
        for i in range(40):
            w.write("start", time=100.0 + i, index=i, pid=5, command="python run.py")
            extra: dict[str, Any] = {"seconds": round(1.5 * i + 0.001, 3)}
            if i % 3:
                extra["maxrss_mb"] = round(i * 10.24, 1)
            cause = [Cause.COMPLETED, Cause.TIMEOUT, Cause.FAILED, Cause.OUT_OF_MEMORY][i % 4]
            if cause is Cause.FAILED:
                extra["missing"] = ["out.npz"]
            if cause is Cause.OUT_OF_MEMORY:
                extra["killed"] = True
            w.write("end", time=round(101.0 + i, 3), index=i, cause=cause, exit=None if i % 4 == 3 else i % 2, signal=9 if i % 4 == 3 else None, **extra)
        w.write("skip", time=200.0, index=41, cause="CANCELLED")
        w.write("task_end", time=201.5, cut_off=False, cause=None, exit=0)
    decoded: list[str] = []
    real = json.loads
    monkeypatch.setattr(durations.json, "loads", lambda s, *a, **k: decoded.append(s) or real(s, *a, **k))
    d = Durations.load(state, "/p/e.json", 7)
    d.refresh(state, [sub("a-1")], live=set())
    assert [real(x)["event"] for x in decoded] == ["task_start", "task_end"]
    monkeypatch.setattr(durations.json, "loads", real)
    rec = {"runs": 0, "run_seconds": 0.0, "mem_max_mb": 0.0, "timeouts": 0, "completed": 0, "elapsed": 0.0, "tasks": 0}
    log: list[tuple[int, int, float, float]] = []
    referenceFold(rec, readEvents(str(path), durations._FOLDED), 7, log)
    assert repr({k: d.arrays["a-1"][k] for k in rec}) == repr(rec) and d.arrays["a-1"]["parallel"] == 2 and rec["runs"] == 40
    table = referenceTable(log)
    assert tableOf(d._table_()) == tableOf(table)
