"""runner.plan: every missing index in exactly one task, arrays within MaxArraySize, queue and time limits."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.errors import ConfigError
from pyexputils.runner.backend import Limits
from pyexputils.runner.bundles import IndexSet
from pyexputils.runner.plan import (TASKS_PER_SLOT, PlanOptions, Request, RunTime, SettingTimes, autoBundle, freeSlots, indexRanges, plan,
                                    predictTask, predictTasks, taskSlots)  # fmt: skip

indexSets = st.lists(st.integers(0, 5000), max_size=400, unique=True).map(sorted)
options = st.builds(
    PlanOptions,
    runs_per_task=st.one_of(st.none(), st.integers(1, 40)),
    parallel=st.integers(1, 4),
    time_minutes=st.one_of(st.none(), st.integers(1, 300)),
    cpus_per_task=st.integers(1, 4),
    throttle=st.one_of(st.none(), st.integers(1, 5)),
    max_tasks=st.integers(1, 50),
)
limitsS = st.builds(
    Limits,
    max_array_size=st.one_of(st.none(), st.integers(1, 11)),
    max_job_count=st.one_of(st.none(), st.integers(1, 200)),
    max_submit_jobs=st.one_of(st.none(), st.integers(1, 200)),
    max_time_minutes=st.one_of(st.none(), st.integers(1, 600)),
    cpus=st.one_of(st.none(), st.integers(1, 64)),
    task_slots=st.one_of(st.none(), st.integers(1, 8)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(indexSets, options), min_size=1, max_size=4), limitsS, st.integers(0, 50))
def test_every_index_once_and_limits_hold(reqs: list, limits: Limits, queued: int) -> None:
    requests = [Request(f"e{k}", idx, o) for k, (idx, o) in enumerate(reqs)]
    p = plan(requests, limits, queued)
    slots = freeSlots(limits, queued)
    for k, r in enumerate(requests):
        planned = [i for a in p.arrays if a.key == r.key for t in a.tasks for i in t]
        got = planned + list(p.deferred.get(r.key, []))
        assert sorted(got) == list(r.indices)  # every missing index exactly once (planned or deferred)
        assert len(set(planned)) == len(planned)
    for a in p.arrays:
        assert a.tasks and all(a.tasks)
        if limits.max_array_size is not None:
            assert a.size - 1 <= limits.max_array_size - 1  # highest array index
        assert all(len(t) <= a.runs_per_task for t in a.tasks)
        assert a.throttle == next(r.options.throttle for r in requests if r.key == a.key)
        o = next(r.options for r in requests if r.key == a.key)
        if o.runs_per_task is not None:
            assert a.runs_per_task == min(o.runs_per_task, len(next(r.indices for r in requests if r.key == a.key)))
        assert a.cpus_per_task == o.cpus_per_task * o.parallel
        if a.time_minutes is not None:
            assert a.time_minutes <= math.ceil(a.runs_per_task / a.parallel) * (o.time_minutes or 0)
            if limits.max_time_minutes is not None:
                assert a.time_minutes <= limits.max_time_minutes
    if slots is not None:
        assert p.tasks <= slots
    if not p.deferred:
        assert p.runs == sum(len(r.indices) for r in requests)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(indexSets, options), min_size=1, max_size=3), limitsS, st.integers(0, 50))
def test_the_compact_tasks_are_the_old_list_of_lists(reqs: list, limits: Limits, queued: int) -> None:
    """Each request's tasks (Bundles) over its arrays, in order, are what the planner made before them: its
    sorted indices cut into consecutive slices of ``runs_per_task``, the rest deferred; arrays balanced."""
    requests = [Request(f"e{k}", idx, o) for k, (idx, o) in enumerate(reqs)]
    p = plan(requests, limits, queued)
    for r in requests:
        mine = [a for a in p.arrays if a.key == r.key]
        if not mine:
            assert list(p.deferred.get(r.key, [])) == list(r.indices)
            continue
        b = mine[0].runs_per_task
        tasks = [list(t) for a in mine for t in a.tasks]
        planned = sum(len(t) for t in tasks)
        idx = list(r.indices)
        assert tasks == [idx[k : min(k + b, planned)] for k in range(0, planned, b)]
        assert list(p.deferred.get(r.key, [])) == idx[planned:]
        assert all(a.tasks == [list(t) for t in a.tasks] and a.runs == sum(len(t) for t in a.tasks) for a in mine)
        sizes = [a.size for a in mine]
        assert all(x == sizes[0] for x in sizes[:-1]) and sizes[-1] <= sizes[0]  # balanced


def test_small_max_array_size_splits_balanced() -> None:
    p = plan([Request("e", range(100), PlanOptions(runs_per_task=1))], Limits(max_array_size=11))
    assert [a.size for a in p.arrays] == [10] * 10
    assert any("MaxArraySize 11" in n for n in p.notes)


def test_auto_bundles_to_max_tasks_and_time() -> None:
    o = PlanOptions(time_minutes=10, parallel=2, max_tasks=100)
    p = plan([Request("e", range(1000), o)], Limits())
    assert p.tasks == 100 and p.arrays[0].runs_per_task == 10
    assert p.arrays[0].time_minutes == 50 and p.arrays[0].cpus_per_task == 2
    # MaxTime 30 min: at most 3 rounds of 2 => bundles of 6
    p = plan([Request("e", range(1000), o)], Limits(max_time_minutes=30))
    assert p.arrays[0].runs_per_task == 6 and p.arrays[0].time_minutes == 30


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20000), st.integers(1, 256), st.integers(1, 4), st.integers(1, 2000))
def test_auto_fills_every_slot_and_no_more(n: int, cpus: int, cpusPerTask: int, maxTasks: int) -> None:
    o = PlanOptions(cpus_per_task=cpusPerTask, max_tasks=maxTasks)
    limits = Limits(cpus=cpus)
    slots = taskSlots(o, limits)
    assert slots == max(1, cpus // cpusPerTask)
    b = autoBundle(o, n, limits)
    tasks = math.ceil(n / b)
    most = min(maxTasks, TASKS_PER_SLOT * slots)
    assert tasks <= most  # never more tasks than can run at once, nor than max_tasks
    assert b == 1 or math.ceil(n / (b - 1)) > most  # the smallest such bundle
    if most == TASKS_PER_SLOT * slots:
        assert tasks >= min(n, slots) / 2  # the slots bound bundles: at least half of them get a task
    assert b >= autoBundle(o, n, Limits())  # never smaller than max_tasks alone makes it
    # equal runs end after b run times: no bundle that fits the slots ends sooner
    assert b == max(1, math.ceil(n / most))


def test_auto_bundles_to_the_slots_of_the_partition_or_the_local_workers() -> None:
    # 1,000 runs on a 16-CPU partition: 16 tasks of 63 runs (not 1,000 one-run tasks)
    p = plan([Request("e", range(1000), PlanOptions())], Limits(cpus=16))
    assert (p.tasks, p.arrays[0].runs_per_task) == (16, 63)
    # 4 CPUs a run: 4 slots, 4 tasks; local workers count as slots whatever the CPUs
    assert plan([Request("e", range(1000), PlanOptions(cpus_per_task=4))], Limits(cpus=16)).tasks == 4
    assert plan([Request("e", range(1000), PlanOptions(cpus_per_task=4))], Limits(cpus=3, task_slots=3)).tasks == 3
    # a big partition: max_tasks decides, as before; a small sweep: one run per task
    assert plan([Request("e", range(10**5), PlanOptions())], Limits(cpus=10**4)).tasks == 1000
    assert plan([Request("e", range(16), PlanOptions())], Limits(cpus=16)).arrays[0].runs_per_task == 1
    # 20 runs on 16 CPUs: 10 tasks of 2, done in two run times, as 20 tasks of one would be
    assert plan([Request("e", range(20), PlanOptions())], Limits(cpus=16)).tasks == 10
    # several experiments share the slots by their size
    p = plan([Request("a", range(750), PlanOptions()), Request("b", range(250), PlanOptions())], Limits(cpus=16))
    assert [a.size for a in p.arrays] == [12, 4]
    # an explicit runs_per_task stays
    assert plan([Request("e", range(1000), PlanOptions(runs_per_task=1))], Limits(cpus=16)).tasks == 1000


def test_queue_slots_bundle_then_defer() -> None:
    p = plan([Request("e", range(100), PlanOptions())], Limits(max_submit_jobs=20), queued=10)
    assert p.tasks <= 10 and p.runs == 100 and not p.deferred
    p = plan([Request("e", range(100), PlanOptions(runs_per_task=2))], Limits(max_submit_jobs=20), queued=10)
    assert p.tasks == 10 and p.runs == 20 and p.deferred["e"] == list(range(20, 100))


@given(st.lists(st.integers(0, 300), unique=True))
def test_index_ranges_roundtrip(xs: list[int]) -> None:
    text = indexRanges(xs)
    back: list[int] = []
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        back.extend(range(int(a), int(b or a) + 1))
    assert back == sorted(xs)
    assert indexRanges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


runTimes = st.builds(lambda m, sd, extra: RunTime(m, sd, m + 1.645 * sd + extra), st.floats(0.1, 1000), st.floats(0, 100), st.floats(0, 50))


@settings(max_examples=200, deadline=None)
@given(indexSets.filter(bool), st.integers(1, 30), st.integers(1, 40), st.integers(1, 4), st.data())
def test_predicting_tasks_from_a_table_of_settings_is_predictTask_of_each(idx: list[int], n: int, per: int, parallel: int, data: st.DataObject) -> None:  # fmt: skip
    table = {s: data.draw(runTimes) for s in range(n)}
    times = SettingTimes(IndexSet.of(idx), n, table)
    listed = [table[i % n] for i in idx]
    assert list(times) == listed and times[-1] == listed[-1] and list(times[3:9]) == listed[3:9]
    means, p95s = predictTasks(times, per, parallel)
    expected = [predictTask(listed[j : j + per], parallel) for j in range(0, len(listed), per)]
    assert np.allclose(means, [m for m, _ in expected], rtol=1e-9) and np.allclose(p95s, [p for _, p in expected], rtol=1e-9)
    assert np.allclose(predictTasks(listed, per, parallel)[1], p95s, rtol=1e-9)
