"""runner.bundles: the compact index sets and tasks stand for exactly the lists they replace."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.runner import bundles
from pyexputils.runner.bundles import Bundles, IndexSet, allIndices, countRuns, taskArray
from pyexputils.runner.ledger import taskRanges
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.packed import Packed, pack



def fromRuns(runs: list[tuple[int, int]]) -> list[int]:
    """Runs of ``n`` consecutive indices, each after a gap."""
    out: list[int] = []
    at = 0
    for gap, n in runs:
        at += gap
        out += range(at, at + n)
        at += n
    return out


def fittedClass(settings: int, runs: int, code: list[int], radix: int) -> list[int]:
    """The indices (``setting + run * settings``) of one run-time class of a fitted plan: the settings whose
    code is 0 (``code`` repeated), or, with ``radix`` > 1, those whose digit in that place is 0 (a class by
    one parameter's value: blocks of ``radix`` settings in mixed radix)."""
    mine = [s for s in range(settings) if (code[s % len(code)] if radix == 1 else (s // radix) % len(code)) == 0]
    return [s + r * settings for r in range(runs) for s in mine]


# sorted, distinct: runs of consecutive indices (held as ranges), scattered ones (held as an array), or a
# fitted plan's class (every k-th setting, or blocks of them, over several runs)
indexSets = (
    st.lists(st.tuples(st.integers(0, 30), st.integers(1, 40)), max_size=30).map(fromRuns)
    | st.lists(st.integers(0, 3000), max_size=300, unique=True).map(sorted)
    | st.builds(fittedClass, st.integers(1, 60), st.integers(1, 8), st.lists(st.integers(0, 3), min_size=1, max_size=9),
                st.sampled_from([1, 1, 2, 5]))  # fmt: skip
)


def expandRows(rows: list) -> list[tuple[int, int, int]]:
    """(index, task, attempt) of every member of ledger attempt rows (lo, n, task, per, attempt[, members])."""
    out = []
    for r in rows:
        lo, n, task, per, attempt = r[:5]
        members = r[5] if len(r) > 5 else None
        idx = list(range(lo, lo + n)) if members is None else Packed(members).positionsList(0, n)
        assert len(idx) == n and idx[0] == lo
        out += [(i, task + k // per, attempt) for k, i in enumerate(idx)]
    return sorted(out)


def chunks(idx: list[int], per: int) -> list[list[int]]:
    """The planner's old tasks: consecutive slices of ``per``."""
    return [idx[k : k + per] for k in range(0, len(idx), per)]


@settings(max_examples=300, deadline=None)
@given(indexSets, st.integers(0, 400), st.integers(0, 400))
def test_an_index_set_is_the_sorted_list_it_stands_for(idx: list[int], a: int, b: int) -> None:
    s = IndexSet.of(idx)
    assert len(s) == len(idx) and list(s) == idx and s == idx and s.array().tolist() == idx
    assert s[a:b] == idx[a:b] and list(s[a:b]) == idx[a:b] and s.between(a, b) == idx[a:b]
    if idx:
        assert s[a % len(idx)] == idx[a % len(idx)] and s[-1] == idx[-1]
    lo, n = s.ranges()
    assert [i for x, m in zip(lo.tolist(), n.tolist()) for i in range(x, x + m)] == idx
    assert all(x + m < y for x, m, y in zip(lo.tolist(), n.tolist(), lo[1:].tolist()))  # maximal runs
    probes = [a, b, a + b, -1, 5000]
    assert s.rank(probes).tolist() == [sum(1 for i in idx if i < v) for v in probes]
    assert (a in s) == (a in idx)
    assert IndexSet.fromRanges(lo, n) == s and np.asarray(s).tolist() == idx
    assert IndexSet.of(np.array(idx[::-1] + idx, dtype=np.int64)) == idx  # unsorted, repeated: sorted


def test_a_fresh_sweep_is_one_range_and_scattered_indices_an_array() -> None:
    big = IndexSet.of(range(10**7))
    assert big.isRanges and len(big.ranges()[0]) == 1 and big[10**7 - 1] == 10**7 - 1
    assert IndexSet.of(np.arange(0, 10**6, 2)).isRanges is False
    assert IndexSet.of(np.arange(0, 10**6, dtype=np.int64)).isRanges


@settings(max_examples=300, deadline=None)
@given(indexSets, st.integers(1, 50), st.integers(0, 30), st.integers(0, 30))
def test_bundles_are_the_planners_list_of_lists(idx: list[int], per: int, a: int, b: int) -> None:
    old = chunks(idx, per)
    t = Bundles.of(idx, per)
    assert len(t) == len(old) and list(t) == old and t == old and countRuns(t) == len(idx) == t.runs
    assert all(t[k] == old[k] for k in range(len(old))) and (not old or t[-1] == old[-1])
    assert t[a:b] == old[a:b] and countRuns(t[a:b]) == sum(len(x) for x in old[a:b])
    assert allIndices(t).tolist() == allIndices(old).tolist() and taskArray(t).tolist() == taskArray(old).tolist()
    assert Bundles.fromJson(json.loads(json.dumps(t.toJson()))) == t


@settings(max_examples=300, deadline=None)
@given(indexSets, st.integers(1, 12), st.lists(st.integers(1, 3), min_size=1), st.integers(0, 20))
def test_attempt_ranges_hold_what_the_list_of_lists_does(idx: list[int], per: int, pattern: list[int], cut: int) -> None:
    """Expanded, the ledger's ranges of a Bundles (attempts per index, or one for all) give every (index, task,
    attempt) that taskRanges gives for the same tasks as lists; no range spans a gap."""
    old = chunks(idx, per)[cut:]
    t = Bundles.of(idx, per)[cut:]
    attempts = {i: pattern[k % len(pattern)] for k, i in enumerate(idx)}
    arr = np.array([attempts[i] for i in t.indices], dtype=np.int32)

    assert expandRows(list(t.attemptRanges(arr))) == expandRows(taskRanges(old, attempts))
    assert expandRows(list(t.attemptRanges(2))) == expandRows(taskRanges(old, {i: 2 for i in idx}))
    one = list(t.attemptRanges(np.broadcast_to(np.int32(1), (t.runs,))))
    assert expandRows(one) == expandRows(taskRanges(old, {}))
    assert len(one) <= 2 * bundles.PACK_RANGES + 2  # one attempt: a few rows, however scattered (a fitted class)


@settings(max_examples=200, deadline=None)
@given(indexSets, st.integers(1, 12), st.sampled_from([1, 2, 7, 1 << 16]), st.lists(st.integers(-5, 4000), max_size=20))
def test_a_packed_index_set_is_the_sorted_list_it_stands_for(idx: list[int], per: int, block: int, probes: list[int]) -> None:
    """Packed (in blocks of any size): its members, any slice of them by position (plain Python too), and
    the position of any value."""
    p = pack(np.array(idx, dtype=np.int64), block)
    assert len(p) == len(idx) and p.array().tolist() == idx and Packed(bytes(p)) == p
    assert p.positionsList(0, len(idx)) == idx and [i for _, c in p.chunks() for i in c.tolist()] == idx
    assert p.positions(per, 3 * per).tolist() == idx[per : 3 * per] == p.positionsList(per, 3 * per)
    pos, hit = p.rank(np.array(probes, dtype=np.int64))
    assert pos.tolist() == [sum(1 for i in idx if i < v) for v in probes] and hit.tolist() == [v in idx for v in probes]


def test_attempt_ranges_of_a_fresh_sweep_are_one_row() -> None:
    assert list(Bundles.of(range(10**7), 10**4).attemptRanges(1)) == [(0, 10**7, 0, 10**4, 1, None)]
    assert list(Bundles.of(range(5, 10**6), 1).attemptRanges(3)) == [(5, 10**6 - 5, 0, 1, 3, None)]


def test_a_fitted_class_of_a_million_indices_is_one_row_of_a_few_bytes() -> None:
    """Every 7th setting over 10 runs (10^5 settings): one packed row, not a row per index."""
    cls = Bundles.of(np.arange(3, 10**6, 7), 1000)
    rows = list(cls.attemptRanges(1))
    assert len(rows) == 1 and rows[0][:5] == (3, len(cls.indices), 0, 1000, 1)
    assert rows[0][5] is not None and len(rows[0][5]) < 20_000
    assert Packed(rows[0][5]).array().tolist() == cls.indices.array().tolist()


def test_a_manifest_stores_bundles_as_ranges_and_reads_the_older_list_of_lists(tmp_path: Path) -> None:
    m = Manifest(tag="t", experiment="/e.json", project="/p", command="true", tasks=Bundles.of(range(10**7), 10**4))
    m.write(str(tmp_path / "m.json"))
    assert (tmp_path / "m.json").stat().st_size < 1000
    back = Manifest.read(str(tmp_path / "m.json"))
    assert isinstance(back.tasks, Bundles) and back.tasks.indices == m.tasks.indices and back.tasks.per == 10**4
    assert len(back.tasks) == 1000 and back.tasks[999] == list(range(9_990_000, 10**7))
    scattered = Manifest(tag="s", experiment="/e.json", project="/p", command="true", tasks=Bundles.of([1, 3, 5, 9], 3))
    scattered.write(str(tmp_path / "s.json"))
    assert Manifest.read(str(tmp_path / "s.json")).tasks == [[1, 3, 5], [9]]
    fitted = Manifest(tag="f", experiment="/e.json", project="/p", command="true", tasks=Bundles.of(np.arange(3, 10**7, 7), 1000))
    fitted.write(str(tmp_path / "f.json"))  # a fitted class: every 7th index, packed (version 3)
    assert (tmp_path / "f.json").stat().st_size < 50_000
    assert Manifest.read(str(tmp_path / "f.json")).tasks[1428] == list(range(3 + 7 * 1_428_000, 10**7, 7))
    # version 1, as the code before wrote it: tasks as a list of lists
    old = {"tag": "o", "experiment": "/e.json", "project": "/p", "command": "true", "tasks": [[3, 4], [5]], "parallel": 1,
           "require": [], "log_dir": "/l", "status_dir": "/s", "attempt": 2, "time_limit_s": None, "version": 1}  # fmt: skip
    (tmp_path / "o.json").write_text(json.dumps(old))
    o = Manifest.read(str(tmp_path / "o.json"))
    assert o.tasks == [[3, 4], [5]] and o.attempt == 2 and o.version == 1 and o.grace_s == 10.0
    hand = Manifest(tag="h", experiment="/e.json", project="/p", command="true", tasks=[[7], [2, 9]])  # by hand: as given
    hand.write(str(tmp_path / "h.json"))
    assert Manifest.read(str(tmp_path / "h.json")).tasks == [[7], [2, 9]]


def test_chunked_passes_agree_across_chunk_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundles, "CHUNK", 4)
    idx = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 20, 21, 22, 23, 24, 25, 26]
    s = IndexSet.of(idx)
    assert list(s) == idx and s.ranges()[0].tolist() == [0, 6, 20] and s.ranges()[1].tolist() == [5, 6, 7]
    att = np.array([1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.int32)
    rows = list(Bundles(s, 3).attemptRanges(att))
    assert sum(r[1] for r in rows) == len(idx)
    assert [r for r in rows if r[4] == 2] == [(4, 1, 1, 1, 2, None), (6, 1, 1, 1, 2, None), (7, 3, 2, 3, 2, None)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.sampled_from([1, 3, 4, 1 << 20]))
def test_an_index_set_from_a_mask_is_where_it_is_true(bits: list[bool], chunk: int) -> None:
    mp = pytest.MonkeyPatch()
    mp.setattr(bundles, "CHUNK", chunk)
    try:
        mask = np.array(bits, dtype=bool)
        assert IndexSet.fromMask(mask) == np.flatnonzero(mask).tolist()
    finally:
        mp.undo()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(indexSets, st.integers(1, 5)), min_size=1, max_size=4), indexSets, st.integers(1, 7))
def test_recorded_bundles_give_the_attempts_the_lists_would(history: list, idx: list[int], per: int) -> None:
    """Submissions recorded as Bundles or as lists: the same attempts afterwards; nextAttemptArray is
    nextAttempts aligned with the indices."""
    import tempfile

    from pyexputils.runner.causes import Cause, Verdict
    from pyexputils.runner.judge import NewVerdicts
    from pyexputils.runner.ledger import Ledger, Submission, _compact

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        with Ledger.open(a) as compact, Ledger.open(b) as lists:
            for k, (done, p) in enumerate(history):
                for led, tasks in ((compact, Bundles.of(done, p)), (lists, chunks(done, p))):
                    led.record(Submission(f"t{k}", str(k), "fake", "/e.json", len(tasks), {}, 1, 1.0, "/m.json"), tasks)
            assert compact.attempts("/e.json") == lists.attempts("/e.json")
            want = lists.nextAttempts("/e.json", idx)
            got = compact.nextAttemptArray("/e.json", IndexSet.of(idx))
            assert got.tolist() == [want[i] for i in idx]
            mine = Bundles.of(idx, per)
            compact.record(Submission("last", "9", "fake", "/e.json", len(mine), {}, 1, 1.0, "/m.json"), mine)
            lists.record(Submission("last", "9", "fake", "/e.json", len(mine), {}, 1, 1.0, "/m.json"), chunks(idx, per))
            assert compact.attempts("/e.json") == lists.attempts("/e.json")
            assert compact.tasksOf("last") == lists.tasksOf("last")
            # the read side: every index's latest attempt, its submission and task, and recorded verdicts
            top = max([i for done, _ in history for i in done] + idx + [0]) + 1
            done = np.array(idx[::2], dtype=np.int64)
            new = NewVerdicts(done, np.ones(len(done), dtype=np.int64), np.full(len(done), 2 if idx else 1, dtype=np.int64),
                              (np.arange(len(done)) % 2).astype(np.int64), [Verdict(Cause.COMPLETED, True, 0), Verdict(Cause.FAILED, True, 1)])  # fmt: skip
            compact.addVerdicts("/e.json", new)
            lists.addVerdicts("/e.json", list(new))
            assert compact.verdicts("/e.json") == lists.verdicts("/e.json")
            assert compact.unresolvedJobs() == lists.unresolvedJobs()
            assert {i: (a.tag, a.task, a.attempt) for i, a in compact.latest("/e.json").items()} == {
                i: (a.tag, a.task, a.attempt) for i, a in lists.latest("/e.json").items()}  # fmt: skip
            cv, lv = compact.view("/e.json", top), lists.view("/e.json", top)
            has = np.flatnonzero(lv.attempt)
            assert cv.attempt.tolist() == lv.attempt.tolist() and np.flatnonzero(cv.attempt).tolist() == has.tolist()
            assert [cv.tags[t] for t in cv.tagOf(has).tolist()] == [lv.tags[t] for t in lv.tagOf(has).tolist()]
            assert cv.taskOf(has).tolist() == lv.taskOf(has).tolist() == [lv.taskOf(int(i)) for i in has]
            assert [cv.taskOf(int(i)) for i in has] == cv.taskOf(has).tolist()
            assert [cv.table[r] if r >= 0 else None for r in cv.recorded.tolist()] == [lv.table[r] if r >= 0 else None for r in lv.recorded.tolist()]
            assert cv.histories(has) == lv.histories(has)
            for i in idx[:5]:
                assert compact.attemptsOf("/e.json", i) == lists.attemptsOf("/e.json", i)
            # the migration from schema 3 packs a plan's rows of scattered indices: the same attempts after it
            with lists.db:
                _compact(lists.db)
            assert lists.attempts("/e.json") == compact.attempts("/e.json")
            assert all(lists.tasksOf(t) == compact.tasksOf(t) for t in [f"t{k}" for k in range(len(history))] + ["last"])


@settings(max_examples=200, deadline=None)
@given(indexSets, st.lists(st.integers(0, 3), min_size=1, max_size=40), st.integers(1, 4), st.sampled_from([2, 5, 1 << 16]))
def test_split_by_setting_is_each_groups_members(idx: list[int], code: list[int], groups: int, chunk: int) -> None:
    mp = pytest.MonkeyPatch()
    mp.setattr(bundles, "CHUNK", chunk)
    try:
        c = np.array([x % groups for x in code], dtype=np.int8)
        parts = bundles.splitBySetting(IndexSet.of(idx), c, groups)
        assert [list(p) for p in parts] == [[i for i in idx if c[i % len(c)] == g] for g in range(groups)]
    finally:
        mp.undo()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), max_size=6), st.sampled_from([3, 1 << 16]))
def test_setting_groups_are_the_rules_each_setting_matches(picks: list[tuple[str, int]], chunk: int) -> None:
    import tempfile

    from pyexputils.models import loadExperiment
    from pyexputils.runner.options import ByRule, settingGroups

    values = {"a": [1, 2, 3], "b": [0.1, 0.2, 0.3, 0.4], "c": ["x", "y"]}
    rules = [ByRule(p, str(values[p][v % len(values[p])]), {}, "config.json") for p, v in picks]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "e.json"
        path.write_text(json.dumps({"metaParameters": values}))
        exp = loadExperiment(str(path))
        mp = pytest.MonkeyPatch()
        mp.setattr(bundles, "CHUNK", chunk)
        import pyexputils.runner.options as optionsModule

        mp.setattr(optionsModule, "CHUNK", chunk)
        try:
            group, ruleSets = settingGroups(exp, rules, "e.json")
        finally:
            mp.undo()
        for s in range(exp.numPermutations()):
            setting = exp.getPermutation(s)
            matched = tuple(r for r in rules if str(setting[r.param]) == r.value)
            assert ruleSets[int(group[s])] == matched
        assert all(x != y for k, x in enumerate(ruleSets) for y in ruleSets[k + 1 :]) and group.dtype == np.int8
