"""Resource parsing, classification of ended attempts, and the resubmission policy (all pure)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyexputils.errors import PyExpUtilsError
from pyexputils.runner.causes import Cause, Evidence, Verdict, classify
from pyexputils.runner.policy import Policy, Resources, attemptsUsed, decide
from pyexputils.runner.resources import formatMinutes, hours, parseMemMB, parseMinutes
from pyexputils.runner.status import IndexOutcome


# --- resources ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, minutes",
    [
        (5, 5),
        ("5", 5),
        ("0:20", 1),  # M:S, rounded up like Slurm
        ("1:30", 2),
        ("0:01:30", 2),
        ("2:59:59", 180),
        ("1-00", 1440),
        ("1-02:03", 1563),
        ("1-02:03:04", 1564),
        (hours(3), 180),
    ],
)
def test_parseMinutes(text: object, minutes: int) -> None:
    assert parseMinutes(text) == minutes


@pytest.mark.parametrize("bad", ["", "x", "1:2:3:4", "-5", 0, True, "0:00:00", 1.5])
def test_parseMinutes_rejects(bad: object) -> None:
    with pytest.raises(PyExpUtilsError, match="time"):
        parseMinutes(bad)


def test_unlimited() -> None:
    assert parseMinutes("UNLIMITED") is None
    assert parseMinutes("infinite") is None


@given(st.integers(1, 10**6))
def test_formatMinutes_round_trips(minutes: int) -> None:
    assert parseMinutes(formatMinutes(minutes)) == minutes


@pytest.mark.parametrize("text, mb", [("4G", 4096), ("500M", 500), ("500", 500), (100, 100), ("1T", 1048576), ("2048K", 2), ("1.5G", 1536), ("4gb", 4096)])
def test_parseMemMB(text: object, mb: int) -> None:
    assert parseMemMB(text) == mb


@pytest.mark.parametrize("bad", ["x", "G", "-1G", True, "0"])
def test_parseMemMB_rejects(bad: object) -> None:
    with pytest.raises(PyExpUtilsError, match="memory"):
        parseMemMB(bad)


# --- classification ------------------------------------------------------------------------------------
def outcome(state: str, exit: int | None = None, started: bool = True, seen: str | None = None) -> IndexOutcome:
    return IndexOutcome(0, state, exit, None, "node", "12", 1, 0.0, started, seen)


@pytest.mark.parametrize(
    "ev, cause, started",
    [
        # results on disk are no evidence of how an attempt ended (a checkpointing run has them early)
        (Evidence("TIMEOUT", outcome("TIMEOUT"), onDisk=True), "TIMEOUT", True),
        (Evidence(None, None, onDisk=True), "VANISHED", False),  # nothing says it finished: not done
        (Evidence("TIMEOUT", outcome("RUNNING")), "TIMEOUT", True),
        (Evidence("TIMEOUT", outcome("TIMEOUT", started=False)), "TIMEOUT", False),
        (Evidence("TIMEOUT", outcome("FAILED", 3)), "FAILED", True),
        (Evidence("TIMEOUT", outcome("COMPLETED", 0)), "COMPLETED", True),  # done before its bundle timed out
        (Evidence("OUT_OF_MEMORY", outcome("RUNNING")), "OUT_OF_MEMORY", True),
        (Evidence("PREEMPTED", outcome("CANCELLED")), "PREEMPTED", True),
        (Evidence("NODE_FAIL", None), "NODE_FAIL", False),
        (Evidence("CANCELLED by 0", outcome("CANCELLED")), "CANCELLED", True),  # a plain scancel: final
        (Evidence("CANCELLED by 0", outcome("CANCELLED"), userCancelled=True), "CANCELLED", True),
        (Evidence(None, outcome("COMPLETED", 0), userCancelled=True), "COMPLETED", True),
        # without sacct, after MinJobAge: the runner's record decides
        (Evidence(None, outcome("TIMEOUT")), "TIMEOUT", True),
        (Evidence(None, outcome("FAILED", 1)), "FAILED", True),
        (Evidence(None, outcome("OUT_OF_MEMORY")), "OUT_OF_MEMORY", True),
        (Evidence(None, outcome("CANCELLED", seen="CANCELLED")), "CANCELLED", True),  # it saw its scancel
        (Evidence(None, outcome("CANCELLED", seen="PREEMPTED"), preemptible=False), "PREEMPTED", True),
        (Evidence(None, outcome("CANCELLED"), preemptible=True), "PREEMPTED", True),  # a bare SIGTERM
        (Evidence(None, outcome("CANCELLED"), preemptible=False), "CANCELLED", True),
        (Evidence(None, outcome("CANCELLED"), userCancelled=True), "CANCELLED", True),
        (Evidence(None, outcome("RUNNING")), "NODE_FAIL", True),  # runner killed without warning
        (Evidence(None, outcome("COMPLETED", 0)), "COMPLETED", True),
        (Evidence(None, None), "VANISHED", False),
        (Evidence("COMPLETED", None), "VANISHED", False),  # status file lost, no results
        (Evidence("COMPLETED", None, onDisk=True), "COMPLETED", True),
        (Evidence("FAILED", None), "FAILED", False),
    ],
)
def test_classify(ev: Evidence, cause: str, started: bool) -> None:
    v = classify(ev)
    assert (v.cause, v.started) == (cause, started)
    assert isinstance(v.cause, Cause)


def test_classify_keeps_exit_code() -> None:
    assert classify(Evidence(None, outcome("FAILED", 7))).exit == 7


def test_cause_parse_and_text() -> None:
    assert Cause.parse("failed") is Cause.FAILED and f"{Cause.TIMEOUT}" == "TIMEOUT" and str(Cause.VANISHED) == "VANISHED"
    with pytest.raises(ValueError, match="unknown cause 'x'; expected one of COMPLETED"):
        Cause.parse("x")


# --- policy -----------------------------------------------------------------------------------------------
R = Resources(minutes=1, mem_mb=100)


def v(cause: str, started: bool = True) -> Verdict:
    return Verdict(cause, started)


def test_timeout_escalates_time_capped() -> None:
    p = Policy(max_time_minutes=3)
    d1 = decide([v("TIMEOUT")], R, p)
    assert d1.resources == Resources(minutes=2, mem_mb=100)
    assert d1.resources is not None
    d2 = decide([v("TIMEOUT"), v("TIMEOUT")], d1.resources, p)
    assert d2.resources == Resources(minutes=3, mem_mb=100)  # 4, capped at 3
    assert d2.resources is not None
    d3 = decide([v("TIMEOUT")] * 3, d2.resources, p)
    assert d3.resources is None and d3.final == "TIMEOUT" and "cap" in d3.reason


def test_timeout_factor_always_gains_a_minute() -> None:
    d = decide([v("TIMEOUT")], Resources(minutes=1), Policy(time_factor=1.2))
    assert d.resources == Resources(minutes=2)


def test_timeout_of_an_index_that_never_started_keeps_resources() -> None:
    assert decide([v("TIMEOUT", started=False)], R, Policy()).resources == R


def test_oom_escalates_memory() -> None:
    d = decide([v("OUT_OF_MEMORY")], R, Policy(max_mem_mb=300))
    assert d.resources == Resources(minutes=1, mem_mb=200)
    d = decide([v("OUT_OF_MEMORY")] * 2, Resources(1, 200), Policy(max_mem_mb=300))
    assert d.resources == Resources(minutes=1, mem_mb=300)
    d = decide([v("OUT_OF_MEMORY")] * 3, Resources(1, 300), Policy(max_mem_mb=300))
    assert d.final == "OUT_OF_MEMORY"


def test_oom_without_memory_option_is_final() -> None:
    assert decide([v("OUT_OF_MEMORY")], Resources(1), Policy()).final == "OUT_OF_MEMORY"


def test_failed_retried_at_most_max_failed_retries() -> None:
    p = Policy(max_failed_retries=1)
    assert decide([v("FAILED")], R, p).resources == R
    d = decide([v("FAILED"), v("FAILED")], R, p)
    assert d.final == "FAILED" and "max_failed_retries = 1" in d.reason
    assert decide([v("FAILED")], R, Policy(max_failed_retries=0)).final == "FAILED"


@pytest.mark.parametrize("cause", ["PREEMPTED", "NODE_FAIL", "VANISHED"])
def test_same_resources_after_preemption_node_failure_vanishing(cause: str) -> None:
    assert decide([v(cause)], R, Policy()).resources == R


def test_max_attempts_bounds_everything() -> None:
    p = Policy(max_attempts=3)
    assert decide([v("PREEMPTED")] * 2, R, p).resources == R
    d = decide([v("PREEMPTED")] * 3, R, p)
    assert d.final == "PREEMPTED" and "max_attempts = 3" in d.reason


def test_cut_off_attempts_do_not_count_but_are_bounded() -> None:
    history = [v("TIMEOUT", started=False)] * 4
    assert attemptsUsed(history) == 0
    assert decide(history, R, Policy(max_attempts=2)).resources == R
    assert decide([v("TIMEOUT", started=False)] * 6, R, Policy(max_attempts=2)).final == "TIMEOUT"


def test_cancelled_is_final_unless_asked() -> None:
    assert decide([v("CANCELLED")], R, Policy()).final == "CANCELLED"
    assert decide([v("CANCELLED")], R, Policy(resubmit_cancelled=True)).resources == R


def test_decide_refuses_a_completed_attempt() -> None:
    with pytest.raises(ValueError, match="got COMPLETED"):
        decide([v("COMPLETED")], R, Policy())
    with pytest.raises(ValueError):
        v("ACTIVE")  # not a cause


@given(st.lists(st.sampled_from(["TIMEOUT", "OUT_OF_MEMORY", "FAILED", "PREEMPTED", "NODE_FAIL", "VANISHED"]), min_size=1, max_size=40))
def test_every_history_ends_within_bounds(causes: list[str]) -> None:
    """Following decide() never resubmits past max_attempts."""
    p = Policy(max_attempts=4, max_time_minutes=60, max_mem_mb=1000)
    history: list[Verdict] = []
    res = R
    for cause in causes:
        history.append(v(cause))
        d = decide(history, res, p)
        if d.resources is None:
            assert d.final is not None
            break
        res = d.resources
        assert res.minutes <= 60 and (res.mem_mb or 0) <= 1000
    assert attemptsUsed(history) <= 4


def test_resources_options() -> None:
    assert Resources(90, 2048, "mem_per_cpu").options() == {"time": "1:30:00", "mem_per_cpu": "2048M"}


def test_failed_before_the_index_started_is_not_the_programs_failure() -> None:
    """A job killed before its runner started the index (e.g. Slurm's USR1 before the runner's handler:
    WTERMSIG 10, no status file) is retried within max_attempts, without using up max_failed_retries."""
    p = Policy(max_failed_retries=1, max_attempts=3)
    early = Verdict("FAILED", started=False)
    assert decide([early], R, p).resources == R
    assert decide([early, v("FAILED")], R, p).resources == R  # the program's first real failure: retried
    assert decide([early, v("FAILED"), v("FAILED")], R, p).final == "FAILED"
    assert decide([early, early, early], R, p).final == "FAILED"  # max_attempts still bounds it


def test_escalation_goes_by_the_measured_time_and_memory_of_the_setting() -> None:
    from pyexputils.runner.policy import Measure

    d = decide([v("TIMEOUT")], Resources(minutes=10, mem_mb=100), Policy(), Measure(p95_s=3000.0))
    assert d.resources == Resources(minutes=63, mem_mb=100)  # 3000 s x 1.25, not 10 x 2
    d = decide([v("TIMEOUT")], Resources(minutes=10), Policy(max_time_minutes=30), Measure(p95_s=3000.0))
    assert d.resources == Resources(minutes=30)  # capped
    d = decide([v("TIMEOUT")], Resources(minutes=10), Policy(), Measure(p95_s=60.0))
    assert d.resources == Resources(minutes=20)  # measured less than asked: the factor
    d = decide([v("OUT_OF_MEMORY")], Resources(minutes=10, mem_mb=100), Policy(), Measure(mem_mb=400.0))
    assert d.resources == Resources(minutes=10, mem_mb=500)
