"""The pure grouping of ``ls`` and ``errors`` (pyexputils.runner.inspect)."""
from __future__ import annotations

import json

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
    groups = groupRuns(rows)
    assert [(i, k, x) for g in groups for i, k, x in zip(range(g.first, g.last + 1), [g.key] * g.count, g.items)] == rows
    for g, h in zip(groups, groups[1:]):  # maximal: two neighbours that could join never both exist
        assert not (g.key == h.key and g.last + 1 == h.first)
    assert sum(g.count for g in groups) == len(rows)


def test_groups_refuse_indices_out_of_order() -> None:
    with pytest.raises(ValueError):
        groupRuns([(3, "a", None), (2, "a", None)])


def test_a_listing_of_alike_indices_is_one_line() -> None:
    rows = [(i, ("DONE", None), i) for i in range(100_000)]
    (g,) = groupRuns(rows)
    assert (g.shown, g.count) == ("0-99999", 100_000)


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
