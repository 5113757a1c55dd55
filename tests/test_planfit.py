"""runner.planfit: bundles fitted to measured run times (pure): no predicted task over its limit, every index
planned exactly once, arrays within the cluster's limits, and no change without measurements."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.runner.backend import Limits
from pyexputils.runner.plan import PlanOptions, Request, RunTime, TimeTable, freeSlots, plan, predictSame, predictTask
from pyexputils.runner.planfit import CLASS_RATIO, SHARE, Measured, RunTimes, classes, fit, fitBundle, taskMinutes

runTimes = st.builds(
    lambda mean, spread, tail: RunTime(mean, mean * spread, mean * (1 + tail)),
    st.floats(0.5, 4000), st.floats(0, 0.3), st.floats(0, 0.6),
)  # fmt: skip
optionsS = st.builds(
    PlanOptions,
    runs_per_task=st.one_of(st.none(), st.integers(1, 30)),
    parallel=st.integers(1, 4),
    time_minutes=st.one_of(st.none(), st.integers(1, 120)),
    cpus_per_task=st.integers(1, 4),
    max_tasks=st.integers(1, 50),
)
limitsS = st.builds(
    Limits,
    max_array_size=st.one_of(st.none(), st.integers(1, 11)),
    max_job_count=st.one_of(st.none(), st.integers(1, 300)),
    max_submit_jobs=st.one_of(st.none(), st.integers(1, 300)),
    max_time_minutes=st.one_of(st.none(), st.integers(1, 600)),
)


@st.composite
def sweeps(draw: st.DrawFn) -> tuple[list[int], Measured]:
    settingsN = draw(st.integers(1, 12))
    indices = sorted(draw(st.lists(st.integers(0, settingsN * 20 - 1), max_size=200, unique=True)))
    per = draw(st.dictionaries(st.integers(0, settingsN - 1), runTimes, max_size=settingsN))
    return indices, Measured(settingsN, per)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(sweeps(), optionsS), min_size=1, max_size=3), limitsS, st.integers(0, 50))
def test_fitted_plans_hold_every_index_once_within_limits_and_predicted_under_the_limit(reqs: list, limits: Limits, queued: int) -> None:  # fmt: skip
    requests = [Request(f"e{k}", idx, o) for k, ((idx, _), o) in enumerate(reqs)]
    measured = {f"e{k}": m for k, ((_, m), _) in enumerate(reqs)}
    fitted, _ = fit(requests, measured, limits.max_time_minutes)
    p = plan(fitted, limits, queued)
    for r in requests:
        planned = [i for a in p.arrays if a.key == r.key for t in a.tasks for i in t]
        assert sorted(planned + list(p.deferred.get(r.key, []))) == list(r.indices)  # every index exactly once
        assert len(set(planned)) == len(planned)
    slots = freeSlots(limits, queued)
    if slots is not None:
        assert p.tasks <= slots
    for a in p.arrays:
        assert a.tasks and all(len(t) <= a.runs_per_task for t in a.tasks)
        if limits.max_array_size is not None:
            assert a.size <= limits.max_array_size
        if limits.max_time_minutes is not None and a.time_minutes is not None:
            assert a.time_minutes <= limits.max_time_minutes
        if a.predicted_s is None:
            continue
        assert a.time_minutes is not None
        k = int(a.key[1:])
        m = measured[a.key]
        o = requests[k].options
        single = max(taskMinutes(predictTask([m.perSetting[i % m.settings]])[1]) for t in a.tasks for i in t)
        if limits.max_time_minutes is None or single <= limits.max_time_minutes:  # one run fits: every task does
            for t in a.tasks:
                assert predictTask([m.perSetting[i % m.settings] for i in t], o.parallel)[1] <= SHARE * a.time_minutes * 60 + 1e-6
        assert a.predicted_s <= SHARE * a.time_minutes * 60 + 1e-6 or single > (limits.max_time_minutes or math.inf)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 999), max_size=200, unique=True).map(sorted), optionsS, limitsS)
def test_without_measurements_the_plan_is_todays(indices: list[int], o: PlanOptions, limits: Limits) -> None:
    r = [Request("e", indices, o)]
    for measured in ({}, {"e": Measured(10)}):
        fitted, notes = fit(r, measured, limits.max_time_minutes)
        assert fitted == r and not notes
        assert plan(fitted, limits) == plan(r, limits)


@settings(max_examples=200, deadline=None)
@given(sweeps())
def test_classes_keep_similar_settings_together_and_the_unmeasured_apart(sweep: tuple[list[int], Measured]) -> None:
    indices, m = sweep
    split, rest = classes(indices, m)
    assert sorted([i for _, idx in split for i in idx] + list(rest)) == indices
    assert all(i % m.settings not in m.perSetting for i in rest)
    for rt, idx in split:
        p95s = [m.perSetting[i % m.settings].p95 for i in idx]
        assert max(p95s) <= CLASS_RATIO * min(p95s) + 1e-9
        assert rt.p95 == max(p95s)


def test_a_spread_of_one_to_eight_goes_to_four_arrays_each_asking_its_own_time() -> None:
    m = Measured(4, {s: RunTime(60.0 * 2**s, 1.0, 60.0 * 2**s + 2) for s in range(4)})
    fitted, _ = fit([Request("e", range(400), PlanOptions(time_minutes=30))], {"e": m}, None)
    p = plan(fitted, Limits())
    assert len(p.arrays) == 4
    for a in p.arrays:
        settingsIn = {i % 4 for t in a.tasks for i in t}
        assert len(settingsIn) == 1
        assert a.predicted_core_minutes is not None and a.time_minutes is not None
        assert a.predicted_core_minutes >= 0.7 * a.coreMinutes()  # filled to the efficiency target
        assert a.predicted_s is not None and a.predicted_s <= 0.8 * a.time_minutes * 60


def test_explicit_runs_per_task_stays_and_only_the_time_is_fitted() -> None:
    m = Measured(1, {0: RunTime(100.0, 5.0, 110.0)})
    fitted, _ = fit([Request("e", range(20), PlanOptions(runs_per_task=4, time_minutes=60))], {"e": m}, None)
    (a,) = plan(fitted, Limits()).arrays
    assert a.runs_per_task == 4 and a.size == 5
    assert a.time_minutes == taskMinutes(predictSame(RunTime(100.0, 5.0, 110.0), 4)[1]) == 9  # not 4 x 60


def test_a_run_longer_than_maxtime_is_said_and_capped() -> None:
    m = Measured(1, {0: RunTime(5000.0, 0.0, 5000.0)})
    fitted, notes = fit([Request("e", range(3), PlanOptions(time_minutes=60))], {"e": m}, 60)
    (a,) = plan(fitted, Limits(max_time_minutes=60)).arrays
    assert a.time_minutes == 60 and a.runs_per_task == 1
    assert notes and "MaxTime" in notes[0]


def test_fitBundle_shrinks_to_maxtime_and_grows_short_runs_to_the_efficiency_target() -> None:
    rt = RunTime(10.0, 0.0, 10.0)
    assert fitBundle(rt, 100, 1, 50, 2, grow=False) == 9  # 9 x 10 s = 90 s <= 0.8 x 2 min
    b = fitBundle(rt, 100, 1, 1, None, grow=True)
    t = math.ceil(100 / b)
    assert 100 * 10 / (t * taskMinutes(predictSame(rt, b)[1]) * 60) >= 0.7


def classesOneByOne(indices: list[int], m: Measured) -> tuple[list[tuple[RunTime, list[int]]], list[int]]:
    """The reference: settings sorted by p95 one by one, a class grown while within CLASS_RATIO of its first."""
    known = sorted({i % m.settings for i in indices if i % m.settings in m.perSetting}, key=lambda s: m.perSetting[s].p95)
    groups: list[list[int]] = []
    for s in known:
        if groups and m.perSetting[s].p95 <= CLASS_RATIO * max(m.perSetting[groups[-1][0]].p95, 1e-9):
            groups[-1].append(s)
        else:
            groups.append([s])
    out = []
    for g in groups:
        count = {s: sum(1 for i in indices if i % m.settings == s) for s in g}
        total = sum(count.values())
        mean = sum(count[s] * m.perSetting[s].mean for s in g) / total
        var = sum(count[s] * m.perSetting[s].sd ** 2 for s in g) / total
        out.append((RunTime(mean, math.sqrt(var), max(m.perSetting[s].p95 for s in g)), [i for i in indices if i % m.settings in g]))
    return out, [i for i in indices if i % m.settings not in m.perSetting]


@settings(max_examples=300, deadline=None)
@given(sweeps(), st.booleans())
def test_classes_as_arrays_are_the_classes_found_one_by_one(sweep: tuple[list[int], Measured], asArrays: bool) -> None:
    indices, m = sweep
    if asArrays:  # what Durations gives: run times by setting as arrays
        m = Measured(m.settings, RunTimes(TimeTable.of(m.perSetting)), m.overall)
    got, rest = classes(indices, m)
    want, wantRest = classesOneByOne(indices, m)
    assert list(rest) == wantRest and [list(idx) for _, idx in got] == [idx for _, idx in want]
    for (a, _), (b, _) in zip(got, want):
        assert math.isclose(a.mean, b.mean, rel_tol=1e-9) and math.isclose(a.sd, b.sd, rel_tol=1e-9, abs_tol=1e-9) and a.p95 == b.p95


def test_measured_settings_read_as_a_mapping_without_a_runtime_each() -> None:
    t = TimeTable.of({3: RunTime(1.0, 0.5, 2.0), 7: RunTime(4.0, 0.0, 4.0)})
    r = RunTimes(t)
    assert dict(r) == {3: RunTime(1.0, 0.5, 2.0), 7: RunTime(4.0, 0.0, 4.0)} and len(r) == 2 and 5 not in r and r.get(5) is None
    assert Measured(10, r).table() is t and Measured(10, r, RunTime(9, 0, 9)).of(5) == RunTime(9, 0, 9)
