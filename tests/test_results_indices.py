"""listIndices / listMissingResults: seed examples, `require`, file-system call counts, and agreement
with a naive per-index check on random sweeps, save paths and present subsets (hypothesis)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyexputils.results.indices as indices
from pyexputils.errors import ExperimentError
from pyexputils.models import Config, ExperimentDescription
from pyexputils.results import doneMask, listIndices, listMissingResults, listResultsPaths

SEED = {
    "name": "MountainCar-v0",
    "agent": "SARSA",
    "metaParameters": {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.96]},
}


def make(save_path: str = "results/{name}/{agent}/{params}/{run}", d: dict[str, Any] = SEED, **config: Any) -> ExperimentDescription:
    return ExperimentDescription(d, config=Config(save_path=save_path, **config))


def naive(exp: ExperimentDescription, runs: int, require: list[str], base: str = "") -> list[int]:
    out = []
    for i in listIndices(exp, runs):
        path = os.path.join(base, exp.interpolateSavePath(i))
        if not (os.path.exists(path) and all(os.path.exists(os.path.join(path, f)) for f in require)):
            out.append(i)
    return out


# --- seed examples ----------------------------------------------------------------------------------
def test_listIndices_cycles_over_settings_once_per_run() -> None:
    exp = make()
    pairs = [(i, exp.getRun(i)) for i in listIndices(exp, runs=2)]
    assert pairs[:3] == [(0, 0), (1, 0), (2, 0)]
    assert pairs[16:18] == [(16, 1), (17, 1)]
    assert list(listIndices(exp)) == list(range(16))
    assert len(listIndices(exp, runs=100)) == 1600


def test_listMissingResults_seed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    missing = {0, 1, 4, 23, 1002}
    for i in listIndices(exp, runs=100):
        if i not in missing:
            os.makedirs(exp.interpolateSavePath(i))
    assert listMissingResults(exp, runs=100) == [0, 1, 4, 23, 1002]


def test_nothing_on_disk_costs_one_stat_and_no_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    calls = count_listings(monkeypatch)
    exp = make()
    assert listMissingResults(exp, runs=3) == list(range(48))
    assert calls == []  # the results folder is absent: no setting's name is even made


def test_everything_done_and_listings_grow_with_folders_not_indices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    for path in listResultsPaths(exp, runs=10):
        os.makedirs(path)
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp, runs=10) == []
    assert len(calls) == 1 + 16  # the root, then each setting's folder once: not 160


def test_require_needs_every_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make(require=["returns.npy", "done"])
    for i in range(16):
        os.makedirs(exp.interpolateSavePath(i))
    for i in (2, 3):
        Path(exp.interpolateSavePath(i), "returns.npy").touch()
    for i in (3, 4):
        Path(exp.interpolateSavePath(i), "done").touch()
    Path(exp.interpolateSavePath(5), ".returns.npy.abc.tmp").touch()  # a half-written file is not done
    Path(exp.interpolateSavePath(5), "done").touch()
    assert listMissingResults(exp) == [i for i in range(16) if i != 3]
    assert listMissingResults(exp, require=[]) == []  # the argument overrides the config
    assert listMissingResults(exp, require=["done"]) == [i for i in range(16) if i not in (3, 4, 5)]


def test_single_required_file_is_one_stat_per_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make(require=["returns.npy"])
    for i in range(16):
        os.makedirs(exp.interpolateSavePath(i))
        if i % 2:
            Path(exp.interpolateSavePath(i), "returns.npy").touch()
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp) == list(range(0, 16, 2))
    assert len(calls) == 1 + 16


def test_runs_beyond_the_save_path_are_an_error() -> None:
    exp = make("results/{name}/{params}")
    with pytest.raises(ExperimentError, match=r"no \{run\}"):
        listMissingResults(exp, runs=2)


def test_zero_runs_and_bad_runs() -> None:
    assert listMissingResults(make(), runs=0) == []
    with pytest.raises(ValueError):
        listMissingResults(make(), runs=-1)


def test_base_and_workers(tmp_path: Path) -> None:
    exp = make()
    for i in listIndices(exp, runs=30):
        if i % 3:
            os.makedirs(tmp_path / exp.interpolateSavePath(i))
    expected = [i for i in range(480) if i % 3 == 0]
    assert listMissingResults(exp, runs=30, base=str(tmp_path)) == expected
    assert listMissingResults(exp, runs=30, base=str(tmp_path), workers=4) == expected
    assert doneMask(exp, runs=30, base=str(tmp_path)).sum() == 480 - len(expected)


def test_a_file_where_a_folder_should_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    os.makedirs(exp.interpolateSavePath(1))
    Path(os.path.dirname(exp.interpolateSavePath(2))).write_text("not a folder")
    assert listMissingResults(exp) == naive(exp, 1, [])


def test_parent_folder_in_the_save_path_falls_back_to_per_index_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make("results/{params}/../{run}-{params}")
    for i in (0, 5, 17):
        os.makedirs(exp.interpolateSavePath(i))
    assert listMissingResults(exp, runs=2) == naive(exp, 2, [])


def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = os.listdir

    def listdir(path: str) -> list[str]:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(indices.os, "listdir", listdir)
    return calls


# --- property: agrees with the naive per-index check -----------------------------------------------
TEMPLATES = [
    "results/{name}/{params}/{run}",
    "results/{run}/{params}",
    "results/{name}/{params}_{run}",
    "out/run-{run}/x/{params}/data",
    "x/{params}/r{run}/{run}",
    "./res//{name}/{params}/{run}/",
    "results/{agent}-{run}/{params}",
    "results/{params}-{run}/done",
    "r/{run}_{params}",
]

VALUES = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([0.1, 1.0, 0.25, 1e-4, True, "adam", "a_b", "x-1", "env/v1", "{run}"]),
)


@st.composite
def sweeps(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(["alpha", "beta", "lr", "a", "z", "eps"]), min_size=0, max_size=4, unique=True))
    params: dict[str, Any] = {}
    for name in names:
        values = draw(st.lists(VALUES, min_size=1, max_size=4, unique_by=str))
        params[name] = values if len(values) > 1 or draw(st.booleans()) else values[0]
    if draw(st.booleans()):
        params["opt"] = {"beta": draw(st.lists(st.integers(0, 9), min_size=1, max_size=3, unique=True))}
    if draw(st.booleans()):
        params["hidden"] = draw(st.sampled_from([[[4, 64], [8, 64]], [[1]], [{"u": [1, 2]}]]))
    return {"name": "exp", "agent": "ag", "metaParameters": params}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    d=sweeps(),
    template=st.sampled_from(TEMPLATES),
    runs=st.integers(1, 4),
    require=st.sampled_from([[], ["r.npy"], ["r.npy", "done"]]),
    parse=st.booleans(),
    junk=st.booleans(),
    data=st.data(),
)
def test_agrees_with_naive_check(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    d: dict[str, Any],
    template: str,
    runs: int,
    require: list[str],
    parse: bool,
    junk: bool,
    data: st.DataObject,
) -> None:
    """Whether each level compares every name it can hold (few) or parses the names found (many; ``parse``
    makes every level read that way), and with folders beside the save folders that no run would have."""
    monkeypatch.setattr(indices, "PARSE_ABOVE", 0 if parse else 10**9)
    base = str(tmp_path_factory.mktemp("sweep"))
    exp = make(template, d)
    total = runs * exp.numPermutations()
    present = data.draw(st.sets(st.integers(0, total - 1), max_size=total))
    complete = data.draw(st.sets(st.sampled_from(sorted(present)), max_size=len(present))) if present else set()
    for i in present:
        path = os.path.join(base, exp.interpolateSavePath(i))
        os.makedirs(path, exist_ok=True)
        if i in complete:
            for f in require:
                Path(path, f).touch()
        elif require:
            Path(path, require[0] + ".tmp").touch()
        if junk:  # a name next to it that only looks like a run's
            os.makedirs(path.rstrip("/") + "x", exist_ok=True)
    assert listResultsPaths(exp, runs) == [exp.interpolateSavePath(i) for i in range(total)]
    got = listMissingResults(exp, runs, require=require, base=base)
    assert got == naive(exp, runs, require, base)
    assert got == sorted(got)


def test_a_value_with_a_slash_adds_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make(d={"name": "n", "agent": "a", "metaParameters": {"env": ["gym/CartPole", "gym/Acrobot"], "lr": [1, 2]}})
    assert exp.interpolateSavePath(1) == "results/n/a/env-gym/CartPole_lr-2/0"
    for i in (0, 3, 5):
        os.makedirs(exp.interpolateSavePath(i))
    assert listMissingResults(exp, runs=2) == [1, 2, 4, 6, 7]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sets(st.integers(0, 60)), st.sampled_from([2, 3, 4096]))
def test_ranges_text_is_index_ranges(monkeypatch: pytest.MonkeyPatch, members: set[int], chunk: int) -> None:
    from pyexputils.results.indices import rangesText
    from pyexputils.runner.plan import indexRanges

    monkeypatch.setattr(indices, "CHUNK", chunk)  # the text is made a chunk of ranges at a time
    assert rangesText(np.array(sorted(members), dtype=np.int64)) == indexRanges(sorted(members))
    mask = np.zeros(61, dtype=bool)
    mask[sorted(members)] = True
    assert rangesText(mask) == indexRanges(sorted(members))


@pytest.mark.parametrize("slow", [True, False])
def test_listings_go_to_threads_only_when_they_wait(monkeypatch: pytest.MonkeyPatch, slow: bool) -> None:
    import threading

    seen: list[tuple[int, str]] = []

    def listing(x: int) -> int:
        seen.append((x, threading.current_thread().name))
        return x * x

    monkeypatch.setattr(indices, "SLOW_LISTING_S", 0.0 if slow else 1e9)  # every listing slow, or none
    pace = indices.Pace(8)
    with pace:
        got = indices._map(listing, range(500), pace)
    assert got == [x * x for x in range(500)]  # in order, whatever ran them
    threads = {name for x, name in seen if x >= indices.PROBE}
    assert ({threading.current_thread().name} != threads) is slow and pace.threaded is slow
    assert {name for x, name in seen if x < indices.PROBE} == {threading.current_thread().name}  # the probe: here
    seen.clear()
    with pace:
        assert indices._map(listing, range(100), pace) == [x * x for x in range(100)]  # the walk's next call: no probe
    assert ({name for _, name in seen} != {threading.current_thread().name}) is slow


@pytest.mark.parametrize("slowFrom, oneOff", [(200, None), (None, 100)])
def test_listings_go_to_threads_once_they_start_to_wait(
    monkeypatch: pytest.MonkeyPatch, slowFrom: int | None, oneOff: int | None
) -> None:
    """Listings fast at first (a cached part of the tree) and slow later go to threads from the first probe
    whose median waited; one slow listing among fast ones (a preemption) does not."""
    import threading

    clock = [0.0]
    seen: dict[int, str] = {}

    def listing(x: int) -> int:
        seen[x] = threading.current_thread().name
        # what the walk's clock sees this listing take: held up 10 ms once, or 1 ms each from slowFrom on
        clock[0] += 1e-2 if x == oneOff else 1e-3 if slowFrom is not None and x >= slowFrom else 1e-6
        return x

    monkeypatch.setattr(indices.time, "perf_counter", lambda: clock[0])
    main = threading.current_thread().name
    with indices.Pace(4) as pace:
        assert indices._map(listing, range(1000), pace) == list(range(1000))
    onMain = {x for x, name in seen.items() if name == main}
    if slowFrom is None:
        assert onMain == set(range(1000)) and pace.threaded is False
    else:
        switch = (slowFrom // indices.PROBE + 1) * indices.PROBE  # after the first probe that is mostly slow
        assert onMain == set(range(switch)) and pace.threaded is True


def test_threaded_listings_run_a_bounded_way_ahead_of_their_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk uses listings as threads make them: never more than AHEAD (+ the batches under way) ahead,
    so the names held at once stay bounded, whatever the number of folders."""
    import threading

    lock = threading.Lock()
    made = [0]

    def listing(x: int) -> int:
        with lock:
            made[0] += 1
        return x

    monkeypatch.setattr(indices, "SLOW_LISTING_S", 0.0)
    size = 10 * indices.AHEAD
    with indices.Pace(4) as pace:
        stream = indices._stream(listing, range(size), pace)
        ahead = []
        for used, x in enumerate(stream, start=1):
            assert x == used - 1
            if used % 1000 == 0 and size - used > indices.AHEAD:
                deadline = time.monotonic() + 5.0  # let the threads run ahead as far as they may
                while made[0] - used < indices.AHEAD // 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(0.005)
                ahead.append(made[0] - used)
    assert made[0] == size
    assert max(ahead) <= indices.AHEAD + indices.BATCH
    assert max(ahead) >= indices.AHEAD // 2  # and they do run ahead: the disk waits overlap the walk's work


def test_an_unreadable_folder_in_a_threaded_walk_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def listing(x: int) -> int:
        if x == 700:
            raise indices.unreadable(f"folder{x}", PermissionError(13, "Permission denied"))
        return x

    monkeypatch.setattr(indices, "SLOW_LISTING_S", 0.0)
    with indices.Pace(4) as pace:
        with pytest.raises(indices.ResultsUnreadable, match="folder700: cannot read"):
            indices._map(listing, range(5000), pace)
    assert pace._pool is None  # the threads were stopped


@pytest.mark.parametrize("template", ["results/{name}/{params}/{run}", "results/{name}/{run}/{params}"])
def test_memory_grows_by_a_few_bytes_an_index_not_by_the_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str
) -> None:
    """With results on disk, a sweep of many settings is read by parsing the names found: tracemalloc's peak
    grows by at most 16 B for each index added (the answer is a byte an index; the folders under way are
    bounded), where making every setting's name, its candidates and a node per setting folder cost ~400 B a
    setting."""
    import tracemalloc

    monkeypatch.chdir(tmp_path)
    for name, value in {"CHUNK": 64, "PARSE_ABOVE": 64, "AHEAD": 128}.items():  # buffers full at small sizes
        monkeypatch.setattr(indices, name, value)
    peaks = []
    sizes = []
    for last in (2, 8):  # 1,024 and 4,096 settings, 2 runs each
        d = {"name": f"m{last}", "metaParameters": {k: list(range(8)) for k in "abc"} | {"e": list(range(last))}}
        exp = make(template, d)
        runs = 2
        for path in listResultsPaths(exp, runs):
            os.makedirs(path)
        tracemalloc.start()
        mask = doneMask(exp, runs, workers=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert mask.all()
        sizes.append(len(mask))
    perIndex = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    assert perIndex <= 16, f"{perIndex:.1f} B an added index (peaks {peaks})"
