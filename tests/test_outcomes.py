"""Status files read back as ranges (:class:`pyexputils.runner.outcomes.Outcomes`) say what a fold of every
event, one object per index, says; and a task's file costs its ranges, not its runs."""
from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.runner import outcomes as outcomesModule
from pyexputils.runner import status as statusModule
from pyexputils.runner.outcomes import Outcomes
from pyexputils.runner.status import IndexOutcome, StatusWriter, readEvents


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
