"""The pure grouping of ``ls`` and ``errors`` (pyexputils.runner.inspect)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyexputils.runner.bundles import Bundles
from pyexputils.runner.inspect import errorKey, flatten, formatSpans, groupErrors, groupRuns, lastLines, sharedValues, spans, taskSpans

indexSets = st.sets(st.integers(0, 300), max_size=80)


@given(indexSets, st.integers(1, 7))
def test_a_jobs_spans_come_from_its_ranges_and_are_its_indices(indices: set[int], per: int) -> None:
    tasks = Bundles.of(sorted(indices), per)  # a plan's tasks (ranges), and the same as lists
    assert taskSpans(tasks) == taskSpans([list(t) for t in tasks]) == spans(indices)


def test_a_jobs_spans_cost_its_ranges() -> None:
    tasks = Bundles.of(range(10**9), 1000)  # 10^6 tasks: nothing per index is made
    assert taskSpans(tasks) == [(0, 10**9 - 1)] and formatSpans(taskSpans(tasks)) == "0-999999999"


@given(indexSets)
def test_spans_cover_exactly_the_indices_and_never_touch(indices: set[int]) -> None:
    s = spans(indices)
    assert {i for a, b in s for i in range(a, b + 1)} == indices
    assert all(a <= b for a, b in s)
    assert all(s[k][1] + 1 < s[k + 1][0] for k in range(len(s) - 1))  # separate: a gap between any two
    text = formatSpans(s)
    back = set()
    for part in filter(None, text.split(",")):
        a, _, b = part.partition("-")
        back |= set(range(int(a), int(b or a) + 1))
    assert back == indices


@given(st.lists(st.tuples(st.integers(1, 3), st.sampled_from("ab")), max_size=60))
def test_groups_partition_the_rows_into_maximal_runs_of_one_key(steps: list[tuple[int, str]]) -> None:
    rows, i = [], 0
    for gap, key in steps:
        i += gap
        rows.append((i, key, i * 10))
    groups = list(groupRuns(rows, lambda items, x: [x] if items is None else [*items, x]))
    assert [(i, k, x) for g in groups for i, k, x in zip(range(g.first, g.last + 1), [g.key] * g.count, g.value)] == rows
    for g, h in zip(groups, groups[1:]):  # maximal: two neighbours that could join never both exist
        assert not (g.key == h.key and g.last + 1 == h.first)
    assert sum(g.count for g in groups) == len(rows)


def test_groups_refuse_indices_out_of_order() -> None:
    with pytest.raises(ValueError):
        list(groupRuns([(3, "a", None), (2, "a", None)], lambda n, x: 0))


def test_a_listing_of_alike_indices_is_one_line() -> None:
    rows = ((i, ("DONE", None), i) for i in range(100_000))
    (g,) = groupRuns(rows, lambda n, x: 1 if n is None else n + 1)  # the fold: a count, not the items
    assert (g.shown, g.count, g.value) == ("0-99999", 100_000, 100_000)


words = st.text(st.sampled_from("abcXYZ_: "), min_size=1, max_size=12)


@given(words, st.lists(st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False)), min_size=2, max_size=2),
       st.integers(0, 2**48))  # fmt: skip
def test_one_bug_is_one_key_whatever_its_numbers_addresses_and_paths(word: str, nums: list[float], addr: int) -> None:
    a = errorKey([f"ValueError: {word} {nums[0]} at {hex(addr)} in /r/res/a/7/x.npy"], ["/r/res/a/7"])
    b = errorKey([f"ValueError: {word} {nums[1]} at {hex(addr + 17)} in /r/res/b/123/x.npy"], ["/r/res/b/123"])
    assert a == b


@pytest.mark.parametrize("line, key", [
    ("FileNotFoundError: x/warmstart-1234.npy", "FileNotFoundError: x/warmstart-N.npy"),
    ("x=-5 y=+0.5 (-3) a - 5", "x=N y=N (N) a - N"),
    ("nums 1e+16 -0.0 1.5e-07", "nums N N N"),
    ("RuntimeError: CUDA out of memory. Tried 12.00 MiB (GPU 0; 0x7f3a in use)", "RuntimeError: CUDA out of memory. Tried N MiB (GPU N; <addr> in use)"),
    ("OSError: /tmp/tmpab12cd9x/f is int64 at 2026-11-28 22:07:44.123", "OSError: /tmp/<id>/f is int64 at <time>"),
    ("job 1234_7 failed", "job N_N failed"),
])  # fmt: skip
def test_what_is_taken_out(line: str, key: str) -> None:
    assert errorKey([line]) == key


def test_different_errors_stay_apart_and_multi_line_keys() -> None:
    assert errorKey(["KeyError: 'alpha'"]) != errorKey(["KeyError: 'beta'"])
    assert errorKey(["x", "y 3"]) == "x ⏎ y N"
    assert errorKey(["loss nan at step 12, lr=1e-3"]) == "loss nan at step N, lr=N"


def test_last_lines_skip_blanks_and_slurm_own_lines() -> None:
    text = "Traceback (most recent call last):\n  File 'x'\nOSError: disk\n\nslurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01T00:00:00 ***\n"
    assert lastLines(text) == ["OSError: disk"]
    assert lastLines(text, 2) == ["  File 'x'", "OSError: disk"]
    assert lastLines("") == []


@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["k1", "k2", "k3"])), unique_by=lambda r: r[0], max_size=40))
def test_error_groups_partition_the_indices_largest_first(rows: list[tuple[int, str]]) -> None:
    groups = groupErrors((i, k, f"raw {i}") for i, k in rows)
    assert sorted(i for g in groups for i in g.indices) == sorted(i for i, _ in rows)
    assert [g.count for g in groups] == sorted((g.count for g in groups), reverse=True)
    for g in groups:
        assert g.example == min(g.indices) and g.text == f"raw {g.example}"
        assert {k for i, k in rows if i in g.indices} == {g.key}


def test_format_spans_can_stop_after_a_few() -> None:
    s = spans([0, 1, 2, 5, 7, 9, 10])
    assert formatSpans(s) == "0-2,5,7,9-10"
    assert formatSpans(s, most=2) == "0-2,5 ... and 2 more ranges (3 indices)"
    assert formatSpans(s, most=4) == formatSpans(s)


@given(st.lists(st.fixed_dictionaries({"a": st.sampled_from([1, 2]), "b": st.sampled_from(["x", "y"])}), min_size=1, max_size=10))
def test_shared_values_are_exactly_the_swept_names_with_one_value(group: list[dict[str, object]]) -> None:
    flat = [flatten(g) for g in group]
    shared = sharedValues(flat, ["a", "b"])
    for name in ("a", "b"):
        values = {json.dumps(g[name]) for g in group}
        assert (name in shared) == (len(values) == 1)
        if name in shared:
            assert shared[name] == values.pop()
    assert sharedValues(flat, []) == {} and sharedValues([], ["a"]) == {}


def test_flatten_names_nested_settings_with_dots() -> None:
    assert flatten({"opt": {"lr": 0.1, "name": "adam"}, "n": [1, 2]}) == {"opt.lr": "0.1", "opt.name": '"adam"', "n": "[1, 2]"}


def test_run_facts_take_each_index_from_its_latest_attempts_file(tmp_path: Path) -> None:
    """``ls``'s host and elapsed time per index: the end's seconds (else the time since the start, while it
    runs), the end's host (else the start's), from the file of the index's latest attempt only."""
    from types import SimpleNamespace

    from pyexputils.cli_inspect import RunFacts
    from pyexputils.runner.judge import IndexStatus, State

    def line(event: str, index: int, host: str | None, **kw: object) -> str:
        return json.dumps({"event": event, "host": host, "index": index, **kw}) + "\n"

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "0.jsonl").write_text(
        json.dumps({"event": "task_start", "host": "A", "indices": [0, 1, 2, 3, 4]}) + "\n"
        + line("start", 0, "A", time=100.0) + line("end", 0, "A", seconds=2.5)
        + line("start", 1, "A", time=100.0) + line("end", 1, "A", seconds=9.0)  # requeued: the later run counts
        + line("start", 1, "B", time=200.0) + line("end", 1, "B", seconds=4.0)
        + line("start", 2, "C", time=990.0)  # still running at 1000
        + line("start", 3, "A", time=100.0) + line("end", 3, "A", seconds=1.0)  # its latest attempt is in 1.jsonl
        + line("start", 4, "D", time=100.0) + line("end", 4, None, seconds=3.0))  # fmt: skip
    (tmp_path / "t" / "1.jsonl").write_text(line("start", 3, "E", time=500.0) + line("end", 3, "E", seconds=7.0))
    facts = RunFacts(6)
    facts.want([IndexStatus(i, State.DONE, tag="t", task=0) for i in (0, 1, 2, 4)] + [IndexStatus(3, State.DONE, tag="t", task=1)])
    facts.want([IndexStatus(5, State.MISSING)])  # never submitted: no file
    facts.read(SimpleNamespace(state=SimpleNamespace(statusOf=lambda tag: str(tmp_path / tag))), now=1000.0)  # type: ignore[arg-type]
    hosts = [None if h < 0 else facts.hostNames[h] for h in facts.host.tolist()]
    secs = [None if x != x else x for x in facts.seconds.tolist()]
    assert list(zip(hosts, secs)) == [("A", 2.5), ("B", 4.0), ("C", 10.0), ("E", 7.0), ("D", 3.0), (None, None)]
