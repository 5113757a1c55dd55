"""The listing cache of missing detection (pyexputils.results.listings): a setting folder known unchanged is
not listed again, any change to it is seen, and with or without the cache the answer is the same.

Folders made by a test are seconds old, so the tests shorten SETTLED_S and wait that long (more than a tick
of the file system's clock) before a walk whose signatures should be trusted (every test runs with 20 ms:
conftest.py)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_results_indices import SEED, TEMPLATES, count_listings, make, naive, sweeps

import pyexputils.results.listings as listings
from pyexputils.results import doneMask, listMissingResults, listResultsPaths
from pyexputils.results.listings import ListingCache, signature

SETTLE = 0.1  # waited before a walk that should trust what it sees; SETTLED_S is half of it


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listings, "SETTLED_S", SETTLE / 2)


def settle() -> None:
    time.sleep(SETTLE)


def cacheFiles(root: Path) -> list[str]:
    folder = root / "results" / ".pyexputils" / "listings"
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if folder.exists() else []


def settingFolders(calls: list[str]) -> list[str]:
    """The listed folders that are setting folders (results/<name>/<agent>/<params>)."""
    return sorted(p for p in calls if p.count("/") == 3)


def fill(exp: Any, runs: int, present: set[int]) -> None:
    for i in present:
        os.makedirs(exp.interpolateSavePath(i), exist_ok=True)


def test_an_unchanged_setting_folder_is_not_listed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exp = make()
    present = set(range(0, 48, 3)) | {1, 2}
    fill(exp, 3, present)
    settle()
    calls = count_listings(monkeypatch)
    first = listMissingResults(exp, runs=3)
    assert first == naive(exp, 3, [])
    assert len(settingFolders(calls)) == len({i % 16 for i in present})
    assert len(cacheFiles(tmp_path)) == 1
    calls.clear()
    assert listMissingResults(exp, runs=3) == first
    assert settingFolders(calls) == []  # every one known from its stat
    assert listMissingResults(exp, runs=3, cache=False) == first
    assert len(settingFolders(calls)) == len({i % 16 for i in present})


def test_every_kind_of_change_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 3, set(range(40)) - {34})
    settle()
    listMissingResults(exp, runs=3)
    setting = lambda i: os.path.dirname(exp.interpolateSavePath(i))  # noqa: E731
    os.rmdir(exp.interpolateSavePath(1))  # a run removed
    os.makedirs(exp.interpolateSavePath(2 + 32))  # a run added
    os.rename(exp.interpolateSavePath(3), exp.interpolateSavePath(3) + ".old")  # a run renamed away
    shutil.rmtree(setting(4))  # a setting folder removed
    was = os.stat(setting(12))  # a run added and the folder's mtime set back (as rsync does): only ctime tells
    os.makedirs(exp.interpolateSavePath(12 + 32))
    os.utime(setting(12), ns=(was.st_atime_ns, was.st_mtime_ns))
    was = os.stat(setting(6))  # a setting folder made again as it was, with its old times
    shutil.rmtree(setting(6))
    os.makedirs(exp.interpolateSavePath(6))
    os.makedirs(exp.interpolateSavePath(6 + 16))
    os.utime(setting(6), ns=(was.st_atime_ns, was.st_mtime_ns))
    os.makedirs(exp.interpolateSavePath(10 + 32))  # a run added where no run 2 was
    os.utime(setting(11))  # a touch: its times changed
    settle()
    calls = count_listings(monkeypatch)
    got = listMissingResults(exp, runs=3)
    assert got == naive(exp, 3, [])
    assert settingFolders(calls) == sorted(setting(i) for i in (1, 2, 3, 6, 10, 11, 12))  # 4 is gone, the others unchanged
    calls.clear()
    assert listMissingResults(exp, runs=3) == got
    assert settingFolders(calls) == []


def test_recently_changed_folders_are_listed_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without waiting SETTLED_S (10 s), a folder just made is listed each time and no cache file is kept."""
    monkeypatch.setattr(listings, "SETTLED_S", 10.0)  # the default (tests run with 20 ms: conftest.py)
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 2, set(range(32)))
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp, runs=2) == []
    assert listMissingResults(exp, runs=2) == []
    assert len(settingFolders(calls)) == 32
    assert cacheFiles(tmp_path) == []


def test_a_cache_of_other_settings_or_runs_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 3, set(range(48)))
    settle()
    assert listMissingResults(exp, runs=3) == []
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp, runs=2) == []  # another number of runs: another mask
    assert len(settingFolders(calls)) == 16
    assert listMissingResults(exp, runs=3) == []
    assert len(settingFolders(calls)) == 32  # the file is one per save path: runs=2 replaced it
    assert len(cacheFiles(tmp_path)) == 1
    other = make(d={**SEED, "metaParameters": {"alpha": [1.0, 0.5, 0.25, 0.125], "lambda": [1.0, 0.99, 0.98, 0.97]}})
    calls.clear()
    assert listMissingResults(other, runs=3) == naive(other, 3, [])
    assert len(settingFolders(calls)) == 12  # the 12 settings it shares with exp, listed again


@pytest.mark.parametrize("damage", [b"", b"not a zip", None])
def test_a_damaged_cache_file_is_ignored_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None, damage: bytes | None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 1, {0, 3, 7})
    settle()
    first = listMissingResults(exp)
    [name] = cacheFiles(tmp_path)
    path = tmp_path / "results" / ".pyexputils" / "listings" / name
    if damage is None:  # this sweep's cache, with arrays of the wrong shape
        with np.load(path) as z:
            what = str(z["what"])
        with open(path, "wb") as f:
            np.savez(f, what=np.array(what), sig=np.ones(3, np.uint64), bits=np.zeros(1, np.uint8))
    else:
        path.write_bytes(damage)
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp) == first
    assert len(settingFolders(calls)) == 3
    calls.clear()
    assert listMissingResults(exp) == first
    assert settingFolders(calls) == []


def test_a_cache_that_cannot_be_written_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 2, {0, 17, 31})
    (tmp_path / "blocker").write_text("a file where the cache folder would be")
    settle()
    assert listMissingResults(exp, runs=2, cache=str(tmp_path / "blocker" / "listings")) == naive(exp, 2, [])
    assert cacheFiles(tmp_path) == []


def test_a_cache_folder_of_ones_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 2, {0, 17, 31})
    settle()
    listMissingResults(exp, runs=2, cache=str(tmp_path / "mine"))
    assert len(os.listdir(tmp_path / "mine")) == 1 and cacheFiles(tmp_path) == []


def test_no_cache_with_required_files_or_without_setting_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    """With ``require`` every save folder is looked into anyway; ``{run}/{params}`` has no setting folders."""
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 2, {0, 17})
    Path(exp.interpolateSavePath(0), "r.npy").touch()
    settle()
    assert listMissingResults(exp, runs=2, require=["r.npy"]) == [i for i in range(32) if i != 0]
    other = make("results/{name}/{run}/{params}")
    fill(other, 2, {1, 20})
    settle()
    assert listMissingResults(other, runs=2) == naive(other, 2, [])
    assert cacheFiles(tmp_path) == []


def test_signature_is_trusted_only_when_settled(tmp_path: Path) -> None:
    st_ = os.stat(tmp_path)
    now = max(st_.st_mtime_ns, st_.st_ctime_ns)
    assert not listings.settled(st_, now)
    assert not listings.settled(st_, now + int(listings.SETTLED_S * 1e9))
    assert listings.settled(st_, now + int(listings.SETTLED_S * 1e9) + 1)
    old = signature(st_)
    assert old != 0 and old == signature(os.stat(tmp_path))
    (tmp_path / "x").mkdir()
    time.sleep(0.01)
    assert signature(os.stat(tmp_path)) not in (0, old)


def test_folders_are_settled_by_the_file_systems_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file server whose clock is a minute behind this machine's: folders made just now are not settled,
    though by this machine's clock they are a minute old."""
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 1, {0, 3, 5})
    monkeypatch.setattr(listings, "_clock", lambda: time.time_ns() + 60 * 10**9)
    calls = count_listings(monkeypatch)
    assert listMissingResults(exp) == naive(exp, 1, []) and listMissingResults(exp) == naive(exp, 1, [])
    assert len(settingFolders(calls)) == 6 and cacheFiles(tmp_path) == []
    assert os.listdir(tmp_path / "results" / ".pyexputils" / "listings") == []  # each walk's file removed


def test_a_walks_file_left_by_a_killed_process_is_removed_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 1, {0})
    folder = tmp_path / "results" / ".pyexputils" / "listings"
    folder.mkdir(parents=True)
    (folder / ".x.npz.1.aa.tmp").write_bytes(b"old")
    os.utime(folder / ".x.npz.1.aa.tmp", (0, 0))
    (folder / ".x.npz.2.bb.tmp").write_bytes(b"a walk under way")
    settle()
    listMissingResults(exp)
    assert sorted(os.listdir(folder)) == [".x.npz.2.bb.tmp"] + cacheFiles(tmp_path)


def test_fill_sets_the_bits_of_each_run(tmp_path: Path) -> None:
    cache = ListingCache(str(tmp_path / "c.npz"), "w", count=5, runs=3)
    before = np.zeros(15, bool)
    before[[0, 5, 7, 14]] = True
    cache.bits = np.packbits(before)
    mask = np.zeros(15, bool)
    cache.fill(mask, [0, 4])
    assert np.flatnonzero(mask).tolist() == [0, 5, 14]


# --- property: with the cache, after any changes, the answer is the naive one ----------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(d=sweeps(), template=st.sampled_from(TEMPLATES), runs=st.integers(1, 3), data=st.data())
def test_with_the_cache_after_changes_agrees_with_naive_check(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    d: dict[str, Any],
    template: str,
    runs: int,
    data: st.DataObject,
) -> None:
    monkeypatch.setattr(listings, "SETTLED_S", SETTLE / 2)
    base = str(tmp_path_factory.mktemp("sweep"))
    exp = make(template, d)
    total = runs * exp.numPermutations()
    paths = [os.path.join(base, exp.interpolateSavePath(i)) for i in range(total)]
    assert listResultsPaths(exp, runs) == [exp.interpolateSavePath(i) for i in range(total)]
    cache = os.path.join(base, "cache")
    for _ in range(3):
        for i in data.draw(st.sets(st.integers(0, total - 1), max_size=min(total, 6))):  # toggle some runs
            if os.path.exists(paths[i]):
                shutil.rmtree(paths[i])
            else:
                os.makedirs(paths[i])
        if data.draw(st.booleans()):
            settle()  # the changes are settled: trusted from now on
        got = doneMask(exp, runs, base=base, cache=cache)
        assert np.flatnonzero(~got).tolist() == naive(exp, runs, [], base)
        assert np.array_equal(doneMask(exp, runs, base=base, cache=cache), got)


MOUNTS = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
40 27 0:50 / /scratch rw,relatime - lustre 10.0.0.1@tcp:/scratch rw
41 40 0:51 / /scratch/bucket rw,relatime - fuse.gcsfuse bucket rw
42 27 0:52 / /my\\040data rw - nfs4 server:/data rw
43 27 0:53 / /over rw - ext4 /dev/vdb rw
44 27 0:54 / /over rw - fuse.sshfs host: rw
"""


@pytest.mark.parametrize("path, kind", [
    ("/home/me/results", "ext4"), ("/scratch/me/results", "lustre"), ("/scratch/bucket/results", "fuse.gcsfuse"),
    ("/scratch/bucketx", "lustre"), ("/my data/r", "nfs4"), ("/over/r", "fuse.sshfs"), ("/", "ext4"),
])  # fmt: skip
def test_the_file_system_of_a_path_is_its_longest_mount_point(path: str, kind: str) -> None:
    assert listings.fileSystem(path, MOUNTS) == kind


def test_no_cache_where_folder_times_are_not_known_to_be_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    """On a file system not known to set folder times (a FUSE mount of an object store), or when turned off,
    every folder is listed each time and no cache is kept."""
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 1, {0, 3})
    settle()
    calls = count_listings(monkeypatch)
    monkeypatch.setattr(listings, "KEEPS_TIMES", frozenset({"ext4"}))
    monkeypatch.setattr(listings, "fileSystem", lambda path, mounts: "fuse.gcsfuse")
    assert listMissingResults(exp) == naive(exp, 1, []) and listMissingResults(exp) == naive(exp, 1, [])
    monkeypatch.setattr(listings, "fileSystem", lambda path, mounts: "ext4")
    monkeypatch.setenv(listings.DISABLE, "0")
    assert listMissingResults(exp) == naive(exp, 1, [])
    assert len(settingFolders(calls)) == 3 * 2 and cacheFiles(tmp_path) == []
    monkeypatch.delenv(listings.DISABLE)
    listMissingResults(exp)
    assert len(cacheFiles(tmp_path)) == 1


def test_a_cache_on_another_file_system_than_the_results_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    """The file system's clock is read where the cache is written: on another one (another clock), no
    signature is kept."""
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system at /dev/shm")
    monkeypatch.chdir(tmp_path)
    exp = make()
    fill(exp, 1, {0, 3})
    settle()
    cache = tempfile.mkdtemp(dir=other)
    try:
        calls = count_listings(monkeypatch)
        assert listMissingResults(exp, cache=cache) == naive(exp, 1, []) and listMissingResults(exp, cache=cache) == naive(exp, 1, [])
        assert len(settingFolders(calls)) == 4 and os.listdir(cache) == []
    finally:
        shutil.rmtree(cache)


def test_memory_with_the_cache_grows_by_a_signature_an_index_of_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settled: None) -> None:  # fmt: skip
    """The cache costs 8 bytes a setting (its signature) while a walk runs: with one run a setting, the walk's
    tracemalloc peak grows by at most 12 bytes for each index added (mask, signature, seen), not by a copy of
    the file's arrays."""
    import tracemalloc

    peaks, sizes = [], []
    for n in (20_000, 60_000):  # more settings than PARSE_ABOVE: the root's names parsed, as in a big sweep
        folder = tmp_path / f"n{n}"
        folder.mkdir()
        monkeypatch.chdir(folder)
        exp = make("results/{name}/{params}/{run}", {"name": "m", "metaParameters": {"a": list(range(100)), "b": list(range(n // 100))}})
        for path in listResultsPaths(exp, 1):
            os.makedirs(path)
        settle()
        doneMask(exp, 1)  # the cache written: every folder settled
        assert len(cacheFiles(folder)) == 1
        calls = count_listings(monkeypatch)
        tracemalloc.start()
        mask = doneMask(exp, 1, workers=1)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert mask.all() and calls == []  # no setting folder listed (the root's names are read with scandir)
        monkeypatch.undo()  # (count_listings' patch; SETTLED_S again below)
        monkeypatch.setattr(listings, "SETTLED_S", SETTLE / 2)
        sizes.append(len(mask))
    perIndex = (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])
    assert perIndex <= 12, f"{perIndex:.1f} B an added index (peaks {peaks})"
