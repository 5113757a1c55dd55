"""runner.plan: every missing index in exactly one task, arrays within MaxArraySize, queue and time limits."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.errors import ConfigError
from pyexputils.runner.backend import Limits
from pyexputils.runner.plan import PlanOptions, Request, freeSlots, indexRanges, plan

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
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(indexSets, options), min_size=1, max_size=4), limitsS, st.integers(0, 50))
def test_every_index_once_and_limits_hold(reqs: list, limits: Limits, queued: int) -> None:
    requests = [Request(f"e{k}", idx, o) for k, (idx, o) in enumerate(reqs)]
    p = plan(requests, limits, queued)
    slots = freeSlots(limits, queued)
    for k, r in enumerate(requests):
        planned = [i for a in p.arrays if a.key == r.key for t in a.tasks for i in t]
        got = planned + p.deferred.get(r.key, [])
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
