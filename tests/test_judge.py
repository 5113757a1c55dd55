"""judgeIndex: the one decision of an index's state (pure), exhaustively over its inputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.runner import judge

from pyexputils.runner.causes import LIVE_STATES, Cause, Evidence, Verdict
from pyexputils.runner.judge import PENDING_STATES, Facts, Latest, LiveIndices, State, completedRuns, judgeAll, judgeEach, judgeIndex, sinceLast
from pyexputils.runner.ledger import LedgerView
from pyexputils.runner.packed import pack
from pyexputils.runner.policy import Policy, Resources
from pyexputils.runner.status import IndexOutcome

BASE = Resources(10, 1000, "mem")
POLICY = Policy(max_attempts=4, max_failed_retries=1, max_time_minutes=40, max_mem_mb=4000)
SCHEDULER = st.sampled_from([None, "TIMEOUT", "OUT_OF_MEMORY", "PREEMPTED", "NODE_FAIL", "CANCELLED by 0", "FAILED", "COMPLETED"])
RUNNER = st.sampled_from([None, "RUNNING", "COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED"])
CAUSES = st.sampled_from(list(Cause))


@st.composite
def latests(draw: st.DrawFn) -> Latest:
    state = draw(RUNNER)
    outcome = None if state is None else IndexOutcome(0, state, 1 if state == "FAILED" else 0, None, "n", "1", 1, 0.0,
                                                      draw(st.booleans()), draw(st.sampled_from([None, "CANCELLED", "PREEMPTED"])))  # fmt: skip
    ev = Evidence(draw(SCHEDULER), outcome, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), draw(st.booleans()))
    recorded = draw(st.one_of(st.none(), st.builds(Verdict, CAUSES, st.booleans())))
    history = draw(st.lists(st.builds(Verdict, CAUSES.filter(lambda c: c is not Cause.COMPLETED), st.booleans()), max_size=6))
    res = Resources(draw(st.sampled_from([10, 20, 40])), draw(st.sampled_from([1000, 2000, 4000])), "mem")
    return Latest(len(history) + 1, "t", 0, recorded, ev, history, res)


@given(st.booleans(), st.sampled_from(sorted(LIVE_STATES)), st.one_of(st.none(), latests()))
def test_a_live_index_is_queued_or_running_whatever_else_is_known(onDisk: bool, live: str, latest: Latest | None) -> None:
    status, verdict = judgeIndex(3, onDisk, live, latest, BASE, POLICY)
    assert status.state in (State.QUEUED, State.RUNNING) and verdict is None
    assert status.state is (State.RUNNING if live in ("RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT") else State.QUEUED)
    assert status.partial == onDisk


@given(st.booleans())
def test_never_submitted_follows_the_seed(onDisk: bool) -> None:
    status, verdict = judgeIndex(0, onDisk, None, None, BASE, POLICY)
    assert verdict is None
    assert status.state is (State.DONE if onDisk else State.MISSING)
    assert (status.resources == BASE) is (not onDisk)


@given(st.booleans(), latests())
def test_the_done_rule(onDisk: bool, latest: Latest) -> None:
    status, verdict = judgeIndex(0, onDisk, None, latest, BASE, POLICY)
    ended = latest.recorded or verdict
    assert ended is not None
    assert (verdict is None) is (latest.recorded is not None)  # a new verdict exactly when none was recorded
    assert status.cause is not None and status.attempts == latest.attempt
    if status.state is State.DONE:
        assert ended.cause is Cause.COMPLETED and onDisk  # done only when the latest attempt completed
    if ended.cause is Cause.COMPLETED:
        assert status.state is (State.DONE if onDisk else State.MISSING)
    else:
        assert status.state in (State.RETRY, State.FINAL) and status.partial == onDisk
        assert status.cause is ended.cause or status.state is State.FINAL
    if status.state in PENDING_STATES:
        assert status.resources is not None
    else:
        assert status.resources is None or status.state is State.DONE
    if status.state is State.FINAL:
        assert status.reason


def test_checkpointed_results_then_timeout_is_not_done() -> None:
    out = IndexOutcome(0, "TIMEOUT", None, 15, "n", "1", 1, 0.0, True)
    latest = Latest(1, "t", 0, None, Evidence(None, out, onDisk=True), [], BASE)
    status, verdict = judgeIndex(0, True, None, latest, BASE, POLICY)
    assert (status.state, status.cause, status.partial) == (State.RETRY, Cause.TIMEOUT, True)
    assert status.resources == Resources(20, 1000, "mem") and verdict == Verdict(Cause.TIMEOUT, True, None)


def test_results_removed_after_completing_are_missing_again_not_a_crash() -> None:
    latest = Latest(2, "t", 0, Verdict(Cause.COMPLETED, True), Evidence(None, None), [Verdict(Cause.FAILED, True)], BASE)
    status, verdict = judgeIndex(0, False, None, latest, BASE, POLICY)
    assert status.state is State.MISSING and status.resources == BASE and "removed" in status.reason and verdict is None


def test_sinceLast_counts_from_the_last_completion_or_retry() -> None:
    F, T, C = Verdict(Cause.FAILED, True), Verdict(Cause.TIMEOUT, True), Verdict(Cause.COMPLETED, True)
    assert sinceLast({}, 1) == [] and sinceLast({1: F}, 1) == [] and sinceLast({1: F}, 2) == [F]
    assert sinceLast({1: F, 2: T, 3: F}, 4) == [F, T, F]
    assert sinceLast({1: F, 2: C, 3: T, 4: F}, 5) == [T, F]  # results removed after attempt 2 completed
    assert sinceLast({1: F, 2: T, 3: F}, 4, reset=2) == [F]  # `retry` after attempt 2
    assert sinceLast({1: F, 2: T, 5: F}, 3) == [F, T]  # later attempts do not count for an earlier one


# --- judgeAll (arrays) against judgeIndex on every index (the reference) ---------------------------------
VERDICTS = st.builds(Verdict, CAUSES, st.booleans(), st.sampled_from([None, 0, 1, 137]))


@st.composite
def outcomes_(draw: st.DrawFn, i: int) -> IndexOutcome | None:
    state = draw(RUNNER)
    if state is None:
        return None
    return IndexOutcome(i, state, draw(st.sampled_from([None, 0, 1])), None, "n", "1", 1, 0.0, draw(st.booleans()),
                        draw(st.sampled_from([None, "CANCELLED", "PREEMPTED"])))  # fmt: skip


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    n = draw(st.integers(1, 14))
    onDisk = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    liveSet = sorted(draw(st.sets(st.integers(0, n - 1))))
    runningOf = np.array([draw(st.booleans()) for _ in liveSet], dtype=bool)
    live = LiveIndices.fromIndices(np.array(liveSet, dtype=np.int64), runningOf)
    if draw(st.booleans()):  # as tasks of packed rows give them: masks
        held, run = np.zeros(n + draw(st.integers(0, 2)), dtype=bool), np.zeros(n, dtype=bool)
        held[liveSet] = True
        run[np.array(liveSet, dtype=np.int64)[runningOf]] = True
        live = LiveIndices(None, None, held, run)
    resets = draw(st.dictionaries(st.integers(0, n - 1), st.integers(0, 4), max_size=3))
    if draw(st.booleans()):  # per index: any attempt, submission, task and recorded verdict
        table = draw(st.lists(VERDICTS, min_size=1, max_size=5))
        attempt = [draw(st.integers(0, 4)) for _ in range(n)]
        tag = [draw(st.integers(0, 2)) if a else 0 for a in attempt]
        task = [draw(st.integers(0, 3)) if a else 0 for a in attempt]
        recorded = [draw(st.integers(-1, len(table) - 1)) if a else -1 for a in attempt]
        view = LedgerView.of(attempt, tag, task, recorded, ["t0", "t1", "t2"], table)
        rows = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 4), st.integers(1, 4), st.integers(0, len(view.table) - 1)), max_size=8))  # fmt: skip
        view.spans = tuple(np.array([r[k] if k != 1 else r[0] + r[1] for r in rows], dtype=np.int64) for k in range(4))  # type: ignore[assignment]
        view.resets = resets
    else:  # as the ledger's rows make it: attempt ranges bundled in tasks, verdict ranges, later rows winning
        members = st.none() | st.sets(st.integers(0, n + 2), min_size=1).map(lambda m: pack(np.array(sorted(m), dtype=np.int64)))
        arows = [(lo, k, t, per, a, tag, None) if m is None else (m.first, len(m), t, per, a, tag, m)
                 for lo, k, t, per, a, tag, m in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 6), st.integers(0, 3), st.integers(1, 3),
                                                       st.integers(1, 4), st.sampled_from(["t0", "t1", "t2"]), members), max_size=6))]  # fmt: skip
        vrows = [(lo, k, a, v.cause.value, int(v.started), v.exit, None) if m is None else (m.first, len(m), a, v.cause.value, int(v.started), v.exit, m)
                 for lo, k, a, v, m in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 6), st.integers(1, 4), VERDICTS, members), max_size=8))]  # fmt: skip
        view = LedgerView.fromRows(arows, vrows, resets, n)
    evidence = [Evidence(draw(SCHEDULER), draw(outcomes_(i)), draw(st.booleans()), bool(onDisk[i]), draw(st.booleans()),
                         draw(st.booleans()), draw(st.booleans())) for i in range(n)]  # fmt: skip
    table: list[Verdict] = []
    done: list[int] = []
    ids: list[int] = []
    for i, ev in enumerate(evidence):
        if ev.outcome is not None and ev.outcome.state == "COMPLETED":
            v = Verdict(Cause.COMPLETED, ev.outcome.started, ev.outcome.exit)
            if v not in table:
                table.append(v)
            done.append(i)
            ids.append(table.index(v))
    res = [Resources(draw(st.sampled_from([10, 20, 40])), draw(st.sampled_from([1000, 2000])), "mem") for _ in range(3)]
    completed, completedId = completedRuns(np.array(done, dtype=np.int64), np.array(ids, dtype=np.int16))
    return Facts(onDisk, live, view, BASE, POLICY, res, evidence.__getitem__, completed, completedId, table)


@settings(max_examples=400, deadline=None)
@given(facts(), st.sampled_from([1, 2, 3, judge.CHUNK]))
def test_the_array_path_agrees_with_judgeIndex_on_every_index(f: Facts, chunk: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(judge, "CHUNK", chunk)  # passes a chunk of indices at a time: their edges anywhere
        fast = judgeAll(f)
    ref = judgeEach(f)
    assert sorted((lo + k, a, v) for lo, n, a, v in fast.verdicts.ranges() for k in range(n)) == sorted(ref.verdicts)  # what the ledger gets
    for i in range(f.n):
        assert fast.status(i) == ref.status(i), i
    for lo in range(0, f.n, 7):  # ls's tag and task of each index, as arrays, a chunk at a time
        idx = np.arange(lo, min(lo + 7, f.n), dtype=np.int64)
        names, tags, tasks = fast.latestTasks(idx)
        got = [(None, None) if t < 0 else (names[t], k) for t, k in zip(tags.tolist(), tasks.tolist())]
        assert got == [(fast.status(i).tag, fast.status(i).task) for i in idx.tolist()]
    assert list(fast.state) == list(ref.state)
    assert sorted(fast.verdicts) == sorted(ref.verdicts)
    assert fast.counts() == ref.counts() and fast.partial() == ref.partial()
    for state in State:
        assert fast.causes(state) == ref.causes(state)
        assert fast.indices([state]).tolist() == ref.indices([state]).tolist()


def test_indices_never_submitted_cost_no_call_of_judgeIndex(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = judge.judgeIndex
    monkeypatch.setattr(judge, "judgeIndex", lambda i, *a: calls.append(i) or real(i, *a))
    n = 100_000
    onDisk = np.zeros(n, dtype=bool)
    onDisk[::3] = True
    f = Facts(onDisk, LiveIndices.fromIndices(np.array([5, 7]), np.array([True, False])), LedgerView.empty(n), BASE, POLICY, [],
              lambda i: Evidence(None, None))  # fmt: skip
    j = judgeAll(f)
    assert calls == [] and j.counts()[State.DONE] == onDisk.sum() and j.status(7).state is State.QUEUED


def masked(p: list[tuple[int, bool]]) -> LiveIndices:
    """Live indices as tasks of packed rows give them: masks (a later pair of one index wins, as in a dict)."""
    held, run = np.zeros(31, dtype=bool), np.zeros(31, dtype=bool)
    for i, r in dict(p).items():
        held[i], run[i] = True, r
    return LiveIndices(None, None, held, run)


@given(st.lists(st.tuples(st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=12), st.booleans()), max_size=3))
def test_live_indices_merge_running_wins(drawn: list[tuple[list[tuple[int, bool]], bool]]) -> None:
    parts = [list(dict(p).items()) if asMask else p for p, asMask in drawn]
    arrays = [masked(p) if asMask else LiveIndices.fromIndices(np.array([i for i, _ in p], dtype=np.int64), np.array([r for _, r in p], dtype=bool))
              for p, (_, asMask) in zip(parts, drawn)]  # fmt: skip
    want: dict[int, str] = {}
    for p in parts:
        for i, r in p:
            if want.get(i) != "RUNNING":
                want[i] = "RUNNING" if r else "PENDING"
    got = LiveIndices.merge(arrays)
    assert dict(got) == want and list(got) == sorted(want) and len(got) == len(want)
    assert all(i not in got for i in range(-2, 34) if i not in want)


@settings(deadline=None)  # its first call imports the session
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 9), st.integers(0, 6), st.integers(1, 4)), max_size=5),
       st.one_of(st.none(), st.lists(st.integers(0, 12), max_size=8)))  # fmt: skip
def test_the_ranges_live_tasks_hold_are_their_indices(rows: list[tuple[int, int, int, int]], tasks: list[int] | None) -> None:
    from pyexputils.runner.session import heldRanges

    want = {lo + k for lo, n, task, per in rows for k in range(n) if tasks is None or task + k // per in tasks}
    got = LiveIndices(heldRanges(rows, tasks))
    assert list(got) == sorted(want)


@settings(deadline=None)
@given(st.lists(st.tuples(st.sets(st.integers(0, 60), min_size=1), st.integers(0, 6), st.integers(1, 4)), max_size=4),
       st.one_of(st.none(), st.lists(st.integers(0, 12), max_size=8)), st.sampled_from([2, 5, 1 << 16]))  # fmt: skip
def test_the_indices_live_tasks_of_packed_rows_hold_are_their_members(rows: list[tuple[set[int], int, int]], tasks: list[int] | None, block: int) -> None:
    from pyexputils.runner.session import heldMask

    packed = [(min(m), len(m), task, per, pack(np.array(sorted(m), dtype=np.int64), block)) for m, task, per in rows]
    want = {i for m, task, per in rows for k, i in enumerate(sorted(m)) if tasks is None or task + k // per in tasks}
    got = LiveIndices(None, None, heldMask(packed, tasks), np.zeros(0, dtype=bool))
    assert list(got) == sorted(want) and len(got) == len(want)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 2), st.sampled_from([0, 1])), max_size=300), st.sampled_from([2, 4, 1000]))
def test_new_verdicts_as_ranges_become_ledger_rows_of_exactly_them(runs: list[tuple[int, int, int]], pack: int) -> None:
    from pyexputils.runner import ledger
    from pyexputils.runner.packed import Packed

    lo, n, att, vid, at = [], [], [], [], 0  # ranges: gaps, lengths, attempts and verdicts at random
    for gap, length, v in runs:
        at += gap
        lo.append(at)
        n.append(length)
        att.append(1 + v)
        vid.append(v)
        at += length
    table = [Verdict(Cause.COMPLETED, True, 0), Verdict(Cause.COMPLETED, False, None)]
    want = sorted((lo[k] + j, att[k], table[vid[k]]) for k in range(len(lo)) for j in range(n[k]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger, "PACK_RANGES", pack)  # scattered ones packed, the others ranges
        rows = ledger.verdictRows(*(np.asarray(x, dtype=np.int64) for x in (lo, n, att, vid)), table)
    got = sorted((i, a, v) for f, k, a, v, m in rows for i in ledger.membersOf(f, k, None if m is None else Packed(m)).tolist())
    assert got == want
