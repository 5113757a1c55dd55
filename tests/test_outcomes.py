"""Status files read back as ranges (:class:`pyexputils.runner.outcomes.Outcomes`) say what a fold of every
event, one object per index, says; and a task's file costs its ranges, not its runs."""
from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.runner import outcomes as outcomesModule
from pyexputils.runner import status as statusModule
from pyexputils.runner.outcomes import Outcomes
from pyexputils.runner.inspect import formatSpans
from pyexputils.runner.status import IndexOutcome, StatusWriter, readEvents, summary


def reference(paths: list[str]) -> dict[int, IndexOutcome]:
    """Every event folded one by one: the latest outcome per index; after a ``stop``, the CANCELLED
    outcomes written since take the state of a later ``scheduler`` event."""
    out: dict[int, IndexOutcome] = {}
    for path in paths:
        seen: str | None = None
        since: set[int] = set()
        stopped = False
        for ev in readEvents(path):
            kind = ev.get("event")
            if kind == "scheduler":
                seen = ev.get("state")
                for i in since:
                    if out[i].state == "CANCELLED":
                        out[i] = replace(out[i], schedulerState=seen)
            elif kind == "stop":
                since, stopped = set(), True
            elif kind in ("start", "end", "skip"):
                i = int(ev["index"])
                state = "RUNNING" if kind == "start" else str(ev.get("cause", "FAILED"))
                out[i] = IndexOutcome(i, state, ev.get("exit"), ev.get("signal"), ev.get("host"), str(ev["job"]),
                                      ev.get("attempt"), None, kind != "skip", seen)  # fmt: skip
                if stopped and state == "CANCELLED":
                    since.add(i)
    return out


EVENT = st.one_of(
    st.tuples(st.just("start"), st.integers(0, 40), st.none(), st.none()),
    st.tuples(st.just("end"), st.integers(0, 40), st.sampled_from(["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"]), st.sampled_from([None, 0, 1])),
    st.tuples(st.just("skip"), st.integers(0, 40), st.sampled_from(["CANCELLED", "TIMEOUT"]), st.none()),
    st.tuples(st.just("stop"), st.just(0), st.none(), st.none()),
    st.tuples(st.just("scheduler"), st.just(0), st.sampled_from([None, "CANCELLED", "PREEMPTED"]), st.none()),
    st.tuples(st.just("run"), st.integers(0, 40), st.integers(1, 30), st.sampled_from([0, 1])),  # a run of indices ended alike
)  # fmt: skip


def write(path: Path, events: list[tuple[str, int, Any, Any]], host: str) -> None:
    if len(events) == 1 and events[0][0] == "run" and events[0][2] > 1000:  # a big task: lines written at once
        head = f'"host":"{host}","job":7,"task":0,"attempt":1,"time":0.0'
        with open(path, "w", encoding="utf-8") as f:
            f.write(f'{{"event":"task_start",{head},"indices":{list(range(events[0][2]))},"pid":1,"parallel":1,"tag":"t"}}\n')
            f.writelines(f'{{"event":"start",{head},"index":{k},"pid":1,"command":"x"}}\n'
                         f'{{"event":"end",{head},"index":{k},"cause":"COMPLETED","exit":0,"signal":null}}\n' for k in range(events[0][2]))  # fmt: skip
        return
    with StatusWriter(str(path), host=host, job=7, task=0, attempt=1) as w:
        w.write("task_start", time=0.0, indices=list(range(40)), pid=1, parallel=1, tag="t")
        for kind, i, a, b in events:
            if kind == "start":
                w.write("start", time=0.0, index=i, pid=1, command="x")
            elif kind == "end":
                w.write("end", time=0.0, index=i, cause=a, exit=b, signal=None, seconds=1.0)
            elif kind == "skip":
                w.write("skip", time=0.0, index=i, cause=a)
            elif kind == "stop":
                w.write("stop", time=0.0, signal=15, name="SIGTERM", cause="CANCELLED", running=[], skipped=[])
            elif kind == "scheduler":
                w.write("scheduler", time=0.0, state=a, source="stderr")
            else:
                for k in range(i, i + a):
                    w.write("start", time=0.0, index=k, pid=1, command="x")
                    w.write("end", time=0.0, index=k, cause="COMPLETED" if b == 0 else "FAILED", exit=b, signal=None, seconds=1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(EVENT, max_size=30), min_size=1, max_size=3), st.sampled_from([1, 2, 3, 1024]), st.sampled_from([1, 2, 4096]))
def test_the_ranges_say_what_a_fold_per_index_says(tmp_path_factory: pytest.TempPathFactory, files: list[list[tuple[str, int, Any, Any]]],
                                                   batch: int, block: int) -> None:  # fmt: skip
    folder = tmp_path_factory.mktemp("o")
    paths = []
    for k, events in enumerate(files):
        write(folder / f"{k}.jsonl", events, host=f"h{k % 2}")
        paths.append(str(folder / f"{k}.jsonl"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(statusModule, "BATCH", batch)  # batches and blocks as small as one line / one range
        mp.setattr(outcomesModule, "BATCH", batch)
        mp.setattr(outcomesModule, "BLOCK", block)
        got = Outcomes.read(paths)
    want = reference(paths)
    assert dict(got.items()) == want
    assert len(got) == len(want) and all(got.get(i) == want.get(i) for i in range(-1, 45))
    assert list(got.lo) == sorted(got.lo) and all(got.hi[:-1] <= got.lo[1:])  # sorted, disjoint


def test_a_long_line_is_read_in_pieces_and_skipped_unread_when_its_kind_is_not_wanted(tmp_path: Path) -> None:
    path = tmp_path / "0.jsonl"
    with StatusWriter(str(path), host="h", job=7, task=0, attempt=1) as w:
        w.write("task_start", time=0.0, indices=list(range(100_000)), pid=1, parallel=1, tag="t")  # ~700 kB
        w.write("start", time=0.0, index=3, pid=1, command="x")
        w.write("stop", time=0.0, signal=15, name="SIGTERM", cause="CANCELLED", running=[3], skipped=list(range(4, 50_000)))
    assert [e["event"] for e in readEvents(str(path))] == ["task_start", "start", "stop"]
    assert len(next(readEvents(str(path)))["indices"]) == 100_000
    tracemalloc.start()
    try:
        got = [e["event"] for e in readEvents(str(path), frozenset({"start"}))]
        p = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == ["start"] and p < 300_000, p  # the long lines were never held whole


def test_a_task_whose_runs_all_completed_is_one_range_read_in_bounded_memory(tmp_path: Path) -> None:
    def peak(n: int) -> int:
        path = tmp_path / f"{n}.jsonl"
        write(path, [("run", 0, n, 0)], host="h")
        tracemalloc.start()
        try:
            got = Outcomes.read([str(path)])
            p = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(got.lo) == 1 and len(got) == n and got.get(n - 1) == IndexOutcome(n - 1, "COMPLETED", 0, None, "h", "7", 1, None)
        return p

    small, large = peak(5_000), peak(50_000)
    assert large <= small * 1.5, (small, large)  # a batch of lines at a time, then its ranges: nothing per run


def test_only_the_kinds_asked_for_come_back_however_the_lines_were_written(tmp_path: Path) -> None:
    path = tmp_path / "0.jsonl"
    path.write_text('{"event": "task_start", "time": 1}\n{"event":"start","index":1}\n{"index": 1, "event": "end"}\n{"event":"task_end"}\n')
    assert [e["event"] for e in readEvents(str(path), frozenset({"end", "task_end"}))] == ["end", "task_end"]
    assert [e["event"] for e in readEvents(str(path))] == ["task_start", "start", "end", "task_end"]


# --- a run's account on its task_end line (status.summary): read instead of the run's lines -------------------
FINAL = st.sampled_from([("COMPLETED", 0, None, True), ("FAILED", 1, None, True), ("FAILED", 0, None, True), ("FAILED", None, None, True),
                         ("OUT_OF_MEMORY", None, 9, True), ("TIMEOUT", None, 15, True), ("COMPLETED", None, None, False)])  # fmt: skip
RUN = st.tuples(
    st.lists(st.tuples(st.integers(0, 30), FINAL), min_size=1, max_size=12, unique_by=lambda x: x[0]),  # its indices, in the order they end
    st.sampled_from(["done", "cut", "killed"]),  # not cut off: task_end with the account; stopped; killed without a task_end
    st.integers(0, 12),  # how many end before the stop / the kill
    st.sampled_from([None, "CANCELLED", "PREEMPTED"]),  # a cut-off run's scheduler event (none when None)
    st.sampled_from(["h0", "h1"]),  # a requeued task may run on another node
)


def writeRuns(path: Path, runs: list[tuple[list[tuple[int, Any]], str, int, str | None, str]]) -> None:
    """Runs of one array task appended to its file, as the runner writes them (a requeue appends a run)."""
    for finals, how, k, seen, host in runs:
        with StatusWriter(str(path), host=host, job=7, task=0, attempt=1) as w:
            offset = w.offset
            w.write("task_start", time=0.0, indices=[i for i, _ in finals], pid=1, parallel=2, tag="t")
            ended = finals if how == "done" else finals[:k]
            running: set[int] = set()
            for n, (i, (cause, exit, signal, started)) in enumerate(ended):
                if started:
                    for j, f in ended[n : n + 2]:  # two at once: the next one starts before this one ends
                        if f[3] and j not in running:
                            w.write("start", time=0.0, index=j, pid=1, command="x")
                            running.add(j)
                    w.write("end", time=0.0, index=i, cause=cause, exit=exit, signal=signal, seconds=1.0)
                else:
                    w.write("skip", time=0.0, index=i, cause=cause)
            rest = [i for i, _ in finals[len(ended):]]
            if how == "done":
                w.write("task_end", time=0.0, cut_off=False, cause=None, exit=1, offset=offset, outcomes=summary(ended))
            elif how == "cut":
                for i in rest[:1]:
                    w.write("start", time=0.0, index=i, pid=1, command="x")
                w.write("stop", time=0.0, signal=15, name="SIGTERM", cause="CANCELLED", running=rest[:1], skipped=rest[1:])
                for i in rest[1:]:
                    w.write("skip", time=0.0, index=i, cause="CANCELLED")
                if seen is not None:
                    w.write("scheduler", time=0.0, state=seen, source="stderr")
                for i in rest[:1]:
                    w.write("end", time=0.0, index=i, cause="CANCELLED", exit=None, signal=15, seconds=1.0)
                w.write("task_end", time=0.0, cut_off=True, cause="CANCELLED", exit=1)
            elif rest:
                w.write("start", time=0.0, index=rest[0], pid=1, command="x")  # running when the node died


def ranges(o: Outcomes) -> list[tuple[int, int, Any]]:
    return [(a, b, o.kinds[k]) for a, b, k in zip(o.lo.tolist(), o.hi.tolist(), o.kind.tolist())]


def everyLine(paths: list[str]) -> Outcomes:
    """Outcomes as a reader that does not know the account reads them: every line."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outcomesModule, "readSummary", lambda path: None)
        return Outcomes.read(paths)


def readCounting(paths: list[str]) -> tuple[Outcomes, list[str]]:
    """Outcomes.read, and the kinds of the lines it decoded."""
    decoded: list[str] = []

    def counting(path: str, only: frozenset[str] | None = None, end: int | None = None) -> Any:
        for ev in readEvents(path, only, end):
            decoded.append(ev["event"])
            yield ev

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outcomesModule, "readEvents", counting)
        return Outcomes.read(paths), decoded


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(RUN, min_size=1, max_size=3), min_size=1, max_size=2), st.sampled_from([1, 3, 1 << 20]))
def test_a_runs_account_reads_as_its_lines(tmp_path_factory: pytest.TempPathFactory, files: list[list[Any]], chunk: int) -> None:
    folder = tmp_path_factory.mktemp("s")
    paths = []
    for k, runs in enumerate(files):
        writeRuns(folder / f"{k}.jsonl", runs)
        paths.append(str(folder / f"{k}.jsonl"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(outcomesModule, "SPAN_CHUNK", chunk)  # ranges text parsed a few characters at a time
        got, decoded = readCounting(paths)
    assert ranges(got) == ranges(everyLine(paths))
    assert dict(got.items()) == reference(paths)
    lastDone = [runs[-1][1] == "done" for runs in files]
    earlier = sum(len(runs) - 1 for runs in files)
    if all(lastDone) and not earlier:  # every file one run, not cut off: its lines are not read
        assert decoded == []


def finished(tmp_path: Path) -> Path:
    path = tmp_path / "0.jsonl"
    writeRuns(path, [([(0, ("COMPLETED", 0, None, True)), (1, ("FAILED", 3, None, True)), (2, ("COMPLETED", 0, None, True)),
                       (5, ("COMPLETED", None, None, False)), (3, ("COMPLETED", 0, None, True))], "done", 0, None, "h")])  # fmt: skip
    return path


def lastLine(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    end = json.loads(lines[-1])
    edit(end)
    path.write_text("".join(lines[:-1]) + json.dumps(end, separators=(",", ":")) + "\n")


@pytest.mark.parametrize("damage", ["torn", "no newline", "bad ranges", "index twice", "negative", "offset mid-line", "offset past it",
                                    "offset not int", "cut off", "exit not int", "started not bool", "not a list", "requeued, running"])  # fmt: skip
def test_a_damaged_or_superseded_account_is_not_read_and_the_lines_are(tmp_path: Path, damage: str) -> None:
    path = finished(tmp_path)
    assert ranges(readCounting([str(path)])[0]) == ranges(everyLine([str(path)])) and readCounting([str(path)])[1] == []  # intact: read
    text = path.read_text()
    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "bad ranges": lambda e: e["outcomes"][0].update(indices="0-x"),
        "index twice": lambda e: e["outcomes"][0].update(indices="0-1"),  # 1 FAILED too
        "negative": lambda e: e["outcomes"][0].update(indices="-1"),
        "offset mid-line": lambda e: e.update(offset=5),
        "offset past it": lambda e: e.update(offset=len(text)),
        "offset not int": lambda e: e.update(offset="0"),
        "cut off": lambda e: e.update(cut_off=True),
        "exit not int": lambda e: e["outcomes"][0].update(exit="0"),
        "started not bool": lambda e: e["outcomes"][0].update(started=1),
        "not a list": lambda e: e.update(outcomes={"0": "x"}),
    }
    if damage == "torn":
        path.write_text(text[: len(text) - 12])  # killed mid-write
    elif damage == "no newline":
        path.write_text(text[:-1])
    elif damage == "requeued, running":  # the task runs again: its new run's lines come after the account
        writeRuns(path, [([(2, ("COMPLETED", 0, None, True)), (4, ("COMPLETED", 0, None, True))], "killed", 0, None, "h2")])
    else:
        lastLine(path, edits[damage])
    got = Outcomes.read([str(path)])
    assert ranges(got) == ranges(everyLine([str(path)])) and dict(got.items()) == reference([str(path)])
    if damage == "requeued, running":
        assert got.get(2) is not None and got.get(2).state == "RUNNING"  # type: ignore[union-attr]  # never called done


def test_a_requeued_tasks_account_stands_for_its_run_and_the_earlier_run_is_read(tmp_path: Path) -> None:
    path = tmp_path / "0.jsonl"
    first = [(i, ("COMPLETED", 0, None, True)) for i in range(4)]
    writeRuns(path, [(first, "cut", 2, "PREEMPTED", "h0"), (first[2:] + [(9, ("FAILED", 1, None, True))], "done", 0, None, "h1")])
    got, decoded = readCounting([str(path)])
    assert ranges(got) == ranges(everyLine([str(path)])) and dict(got.items()) == reference([str(path)])
    assert "scheduler" in decoded and decoded.count("start") == 3  # the first run's lines; none of the second's
    assert got.get(3) == IndexOutcome(3, "COMPLETED", 0, None, "h1", "7", 1, None, True, "PREEMPTED")  # the earlier run's scheduler state, as before


def test_ranges_text_parses_to_the_ranges_formatSpans_wrote(tmp_path: Path) -> None:
    for text in ["", "0", "0-99,140", "3,5,7-8,1000000000000"]:
        got = outcomesModule.spanArrays(text)
        assert got is not None and formatSpans([(a, b - 1) for a, b in zip(*(x.tolist() for x in got))]) == text
    for bad in [",", "1,", ",1", "1,,2", "1-2-3", "3-1", "a", "1-", "-1", "1 ,2", "١", "1" * 19]:
        assert outcomesModule.spanArrays(bad) is None, bad


def test_an_account_costs_its_ranges_not_its_runs(tmp_path: Path) -> None:
    def peak(n: int) -> int:
        path = tmp_path / f"{n}.jsonl"
        write(path, [("run", 0, n, 0)], host="h")
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": "task_end", "host": "h", "job": 7, "task": 0, "attempt": 1, "time": 0.0, "cut_off": False, "cause": None,
                                "exit": 0, "offset": 0, "outcomes": summary((i, ("COMPLETED", 0, None, True)) for i in range(n))}, separators=(",", ":")) + "\n")  # fmt: skip
        tracemalloc.start()
        try:
            got, decoded = readCounting([str(path)])
            p = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert decoded == [] and ranges(got) == [(0, n, ("COMPLETED", 0, None, "h", "7", 1, True, None))]
        return p

    small, large = peak(5_000), peak(50_000)
    assert large <= small * 1.2 + 10_000, (small, large)
