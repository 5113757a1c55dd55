"""Properties of the sweep math on random sweeps (hypothesis)."""
from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyexputils.models import Config, ExperimentDescription

CONFIG = Config(save_path="results/{name}/{params}/{run}")

names = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
scalars = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(alphabet="abcxyz", min_size=1, max_size=4),
    st.booleans(),
)


def uniqueByText(values: list[Any]) -> list[Any]:
    out, seen = [], set()
    for v in values:
        if str(v) not in seen:
            seen.add(str(v))
            out.append(v)
    return out


values = st.lists(scalars, min_size=1, max_size=4).map(uniqueByText)
leaf = st.one_of(scalars, values)
sweeps = st.dictionaries(
    names,
    st.one_of(leaf, st.dictionaries(names, leaf, min_size=1, max_size=3)),
    min_size=1,
    max_size=4,
)


def exp(meta: dict[str, Any]) -> ExperimentDescription:
    return ExperimentDescription({"name": "e", "metaParameters": meta}, config=CONFIG)


def leafLists(meta: dict[str, Any]) -> list[list[Any]]:
    out = []
    for v in meta.values():
        if isinstance(v, dict):
            out += leafLists(v)
        else:
            out.append(v if isinstance(v, list) else [v])
    return out


def canon(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True)


@settings(max_examples=150, deadline=None)
@given(sweeps)
def test_getPermutation_is_a_bijection_onto_the_product(meta: dict[str, Any]) -> None:
    e = exp(meta)
    count = 1
    for lst in leafLists(meta):
        count *= len(lst)
    assert e.numPermutations() == count
    perms = [canon(e.getPermutation(i)) for i in range(count)]
    assert len(set(perms)) == count
    # wrapping: index i and i + P give the same setting, next run
    for i in range(0, count, max(1, count // 7)):
        assert canon(e.getPermutation(i + count)) == perms[i]
        assert e.getRun(i + count) == 1


@settings(max_examples=100, deadline=None)
@given(sweeps, st.integers(1, 3))
def test_interpolateSavePath_is_injective_over_permutations_and_runs(meta: dict[str, Any], runs: int) -> None:
    e = exp(meta)
    total = e.numPermutations() * runs
    paths = [e.interpolateSavePath(i) for i in range(total)]
    assert len(set(paths)) == total


@settings(max_examples=100, deadline=None)
@given(sweeps, st.randoms(use_true_random=False))
def test_key_order_does_not_change_save_paths(meta: dict[str, Any], rnd: Any) -> None:
    items = list(meta.items())
    rnd.shuffle(items)
    shuffled = {k: (dict(rnd.sample(list(v.items()), len(v))) if isinstance(v, dict) else v) for k, v in items}
    a, b = exp(meta), exp(shuffled)
    byPathA = {a.interpolateSavePath(i): canon(a.getPermutation(i)) for i in range(a.numPermutations())}
    byPathB = {b.interpolateSavePath(i): canon(b.getPermutation(i)) for i in range(b.numPermutations())}
    assert byPathA == byPathB


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=5), st.data())
def test_last_parameter_varies_fastest(radices: list[int], data: st.DataObject) -> None:
    meta = {f"p{j}": list(range(n)) for j, n in enumerate(radices)}
    e = exp(meta)
    expected = list(itertools.product(*(range(n) for n in radices)))
    i = data.draw(st.integers(0, len(expected) - 1))
    assert tuple(e.getPermutation(i).values()) == expected[i]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=9), st.integers(0, 10**9))
def test_large_sweeps_decode_digits(radices: list[int], i: int) -> None:
    """Sweeps beyond the lookup tables decode the same way (mixed radix, last fastest)."""
    meta = {f"p{j}": list(range(n)) for j, n in enumerate(radices)}
    e = exp(meta)
    p = i % e.numPermutations()
    expected = []
    for n in reversed(radices):
        p, r = divmod(p, n)
        expected.append(r)
    assert list(e.getPermutation(i).values()) == list(reversed(expected))
