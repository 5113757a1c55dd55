"""judgeIndex: the one decision of an index's state (pure), exhaustively over its inputs."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pyexputils.runner.causes import LIVE_STATES, Cause, Evidence, Verdict
from pyexputils.runner.judge import PENDING_STATES, Latest, State, judgeIndex, sinceLast
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
