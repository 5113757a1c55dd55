"""runner.ledger: one writer, columns by name, schema versions and migration, errors as one line naming the path."""
from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyexputils.runner.bundles import Bundles
from pyexputils.runner.causes import Cause, Verdict
from pyexputils.runner.ledger import SCHEMA_VERSION, Ledger, LedgerBusy, LedgerError, Submission, taskRanges
from pyexputils.runner.manifest import Manifest
from pyexputils.runner.statedir import StateDir


def sub(tag: str, job: str, exp: str = "/e.json", attempt: int = 1) -> Submission:
    return Submission(tag, job, "slurm", exp, 2, {"time": "0:10:00"}, attempt, 1.0, f"/m/{tag}.json", provenance={"git_commit": "abc"})


def test_record_latest_and_attempts(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path)) as led:
        led.record(sub("a", "10"), [[0, 1], [2]])
        assert led.nextAttempts("/e.json", [0, 2, 5]) == {0: 2, 2: 2, 5: 1}
        led.record(sub("b", "11", attempt=2), [[2]])
        latest = led.latest("/e.json")
        assert {i: (a.tag, a.task, a.attempt, a.job_id) for i, a in latest.items()} == {
            0: ("a", 0, 1, "10"), 1: ("a", 0, 1, "10"), 2: ("b", 0, 2, "11")}  # fmt: skip
        assert led.tasksOf("a") == ("/e.json", {0: [0, 1], 1: [2]}) and led.tasksOf("zz") is None
        led.markCancelled(["11"])
        assert [s.cancelled for s in led.submissions("/e.json")] == [False, True]
        assert led.submissions()[0].resources == {"time": "0:10:00"}
        assert led.byTag("a") is not None and led.byTag("a").provenance == {"git_commit": "abc"}  # type: ignore[union-attr]
        led.addVerdicts("/e.json", [(0, 1, Verdict(Cause.FAILED, True, 3)), (1, 1, Verdict(Cause.COMPLETED, True))])
        assert led.verdicts("/e.json") == {0: {1: Verdict(Cause.FAILED, True, 3)}, 1: {1: Verdict(Cause.COMPLETED, True)}}
        assert led.unresolvedJobs() == ["10", "11"]  # index 2 of a, and b
        led.setRuns("/e.json", 3)
        led.reset("/e.json", {0: 1})
    reader = Ledger.read(str(tmp_path))
    assert reader is not None
    with reader:
        assert reader.tags() == {"a", "b"} and reader.runs("/e.json") == 3 and reader.resets("/e.json") == {0: 1}
        with pytest.raises(LedgerError, match="read-only"):
            reader.setRuns("/e.json", 4)


def test_read_without_a_ledger_creates_nothing(tmp_path: Path) -> None:
    assert Ledger.read(str(tmp_path)) is None
    assert not (tmp_path / ".pyexputils").exists()


def test_one_writer(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path)):
        with pytest.raises(LedgerBusy, match=r"ledger\.lock: another pyexputils process \(pid \d+ on "):
            Ledger.open(str(tmp_path), wait=0.3)
        # another process cannot take it either
        code = f"from pyexputils.runner.ledger import Ledger\ntry:\n Ledger.open({str(tmp_path)!r}, wait=0.2)\nexcept Exception as e: print(type(e).__name__)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.stdout.strip() == "LedgerBusy"
    Ledger.open(str(tmp_path), wait=0).close()  # released


def test_a_wait_for_the_lock_is_said_once(tmp_path: Path) -> None:
    said: list[str] = []
    with Ledger.open(str(tmp_path)):
        with pytest.raises(LedgerBusy):
            Ledger.open(str(tmp_path), wait=0.5, onWait=said.append)
    assert len(said) == 1 and said[0].startswith("waiting up to 0.5 s for ") and "held by another pyexputils process (pid" in said[0]
    Ledger.open(str(tmp_path), wait=0.5, onWait=said.append).close()
    assert len(said) == 1  # free: nothing said


def test_lock_released_when_holder_killed(tmp_path: Path) -> None:
    code = f"from pyexputils.runner.ledger import Ledger\nimport os,signal\nl=Ledger.open({str(tmp_path)!r})\nos.kill(os.getpid(), signal.SIGKILL)"
    subprocess.run([sys.executable, "-c", code])
    Ledger.open(str(tmp_path), wait=0).close()


def test_a_file_system_without_locks_is_not_called_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def nolock(fd: int, op: int) -> None:
        raise OSError(37, "No locks available")  # ENOLCK: NFS without lockd, Lustre without -o flock

    monkeypatch.setattr(fcntl, "flock", nolock)
    with pytest.raises(LedgerError, match="cannot lock files") as e:
        Ledger.open(str(tmp_path), wait=0)
    assert not isinstance(e.value, LedgerBusy) and "ledger.lock" in str(e.value)


def test_adopt_from_manifest(tmp_path: Path) -> None:
    m = Manifest(tag="x-1", experiment="/e.json", project="/p", command="true", tasks=[[3, 4], [5]], attempt=2)
    path = StateDir(str(tmp_path)).manifest("x-1")
    m.write(path)
    with Ledger.open(str(tmp_path)) as led:
        s = led.adopt(m, path, "77", "slurm")
        assert s.adopted and led.byTag("x-1") == s
        assert led.tasksOf("x-1") == ("/e.json", {0: [3, 4], 1: [5]}) and led.latest("/e.json")[5].job_id == "77"


V0 = """
CREATE TABLE submissions (tag TEXT PRIMARY KEY, job_id TEXT NOT NULL, backend TEXT NOT NULL, experiment TEXT NOT NULL,
  array_size INTEGER NOT NULL, resources TEXT NOT NULL, attempt INTEGER NOT NULL, time REAL NOT NULL,
  manifest TEXT NOT NULL, adopted INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE attempts (experiment TEXT NOT NULL, idx INTEGER NOT NULL, tag TEXT NOT NULL, task INTEGER NOT NULL,
  attempt INTEGER NOT NULL, PRIMARY KEY (experiment, idx, attempt));
CREATE TABLE verdicts (experiment TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL, cause TEXT NOT NULL,
  started INTEGER NOT NULL, exit INTEGER, time REAL NOT NULL, PRIMARY KEY (experiment, idx, attempt));
CREATE TABLE run_resources (tag TEXT PRIMARY KEY, minutes INTEGER, mem_mb INTEGER, mem_key TEXT NOT NULL);
INSERT INTO submissions VALUES ('t-1', '5', 'slurm', '/e.json', 1, '{}', 1, 1.0, '/m.json', 0, 0);
INSERT INTO attempts VALUES ('/e.json', 0, 't-1', 0, 1);
INSERT INTO verdicts VALUES ('/e.json', 0, 1, 'TIMEOUT', 1, NULL, 2.0);
"""


def oldLedger(tmp_path: Path, script: str) -> StateDir:
    """A state folder whose ledger was written by an older pyexputils (``script``: its SQL)."""
    state = StateDir(str(tmp_path))
    state.make()
    db = sqlite3.connect(state.ledger)
    db.executescript(script)
    db.close()
    return state


def test_a_version_0_ledger_is_read_and_migrated(tmp_path: Path) -> None:
    state = oldLedger(tmp_path, V0)
    reader = Ledger.read(state)  # read-only: old tables as they are, new ones empty
    assert reader is not None and reader.version == 0
    with reader:
        assert reader.runs("/e.json") is None and reader.resets("/e.json") == {}
        assert reader.byTag("t-1") is not None and reader.byTag("t-1").provenance == {}  # type: ignore[union-attr]
    with Ledger.open(state) as led:  # the writer migrates
        assert led.version == SCHEMA_VERSION
        assert led.verdicts("/e.json") == {0: {1: Verdict(Cause.TIMEOUT, True)}}
        led.setRuns("/e.json", 2)
        led.record(sub("t-2", "6", attempt=2), [[0]])
    assert sqlite3.connect(state.ledger).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_and_corrupt_ledgers_are_one_line_errors(tmp_path: Path) -> None:
    state = StateDir(str(tmp_path / "a"))
    state.make()
    db = sqlite3.connect(state.ledger)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match=f"written by a newer pyexputils .ledger schema {SCHEMA_VERSION + 1}"):
        Ledger.open(state)
    with pytest.raises(LedgerError, match="newer"):
        Ledger.read(state)
    bad = StateDir(str(tmp_path / "b"))
    bad.make()
    Path(bad.ledger).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match=r"ledger\.sqlite: not a usable ledger .*move it aside") as e:
        Ledger.open(bad)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/dev/shm").exists(), reason="needs root to mount a tiny tmpfs")
def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with Ledger.open(str(mnt)) as led:
            with pytest.raises(LedgerError, match=r"ledger\.sqlite: .*(full|space)"):
                for k in range(2000):
                    led.record(sub(f"t-{k}", str(k)), [list(range(k * 50, k * 50 + 50))])
    finally:
        subprocess.run(["umount", str(mnt)])


TABLES_2_3 = """
CREATE TABLE submissions (tag TEXT PRIMARY KEY, job_id TEXT NOT NULL, backend TEXT NOT NULL, experiment TEXT NOT NULL,
    array_size INTEGER NOT NULL, resources TEXT NOT NULL, attempt INTEGER NOT NULL, time REAL NOT NULL,
    manifest TEXT NOT NULL, adopted INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
    provenance TEXT NOT NULL DEFAULT '{}');
CREATE TABLE run_resources (tag TEXT PRIMARY KEY, minutes INTEGER, mem_mb INTEGER, mem_key TEXT NOT NULL);
CREATE TABLE sweeps (experiment TEXT PRIMARY KEY, runs INTEGER NOT NULL, time REAL NOT NULL);
CREATE TABLE resets (experiment TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL, time REAL NOT NULL,
    PRIMARY KEY (experiment, idx));
"""  # the tables schemas 2 and 3 share

V2 = TABLES_2_3 + """
PRAGMA user_version = 2;
CREATE TABLE attempts (experiment TEXT NOT NULL, idx INTEGER NOT NULL, tag TEXT NOT NULL, task INTEGER NOT NULL,
    attempt INTEGER NOT NULL, PRIMARY KEY (experiment, idx, attempt));
CREATE TABLE verdicts (experiment TEXT NOT NULL, idx INTEGER NOT NULL, attempt INTEGER NOT NULL, cause TEXT NOT NULL,
    started INTEGER NOT NULL, exit INTEGER, time REAL NOT NULL, PRIMARY KEY (experiment, idx, attempt));
INSERT INTO submissions VALUES ('a', '5', 'slurm', '/e.json', 3, '{}', 1, 1.0, '/m/a.json', 0, 0, '{}');
INSERT INTO submissions VALUES ('b', '6', 'slurm', '/e.json', 1, '{}', 2, 2.0, '/m/b.json', 0, 0, '{}');
INSERT INTO attempts VALUES ('/e.json', 0, 'a', 0, 1), ('/e.json', 1, 'a', 0, 1), ('/e.json', 2, 'a', 1, 1),
    ('/e.json', 3, 'a', 1, 1), ('/e.json', 7, 'a', 2, 1), ('/e.json', 2, 'b', 0, 2);
INSERT INTO verdicts VALUES ('/e.json', 0, 1, 'COMPLETED', 1, 0, 3.0), ('/e.json', 1, 1, 'COMPLETED', 1, 0, 3.0),
    ('/e.json', 2, 1, 'TIMEOUT', 1, NULL, 3.0), ('/e.json', 3, 1, 'COMPLETED', 1, 0, 3.0);
INSERT INTO sweeps VALUES ('/e.json', 1, 1.0);
INSERT INTO resets VALUES ('/e.json', 7, 1, 4.0);
"""


def test_a_version_2_ledger_is_read_as_it_is_and_migrated_to_ranges(tmp_path: Path) -> None:
    state = oldLedger(tmp_path, V2)

    def check(led: Ledger) -> None:
        assert led.tasksOf("a") == ("/e.json", {0: [0, 1], 1: [2, 3], 2: [7]})
        assert {i: (a.tag, a.task, a.attempt) for i, a in led.latest("/e.json").items()} == {
            0: ("a", 0, 1), 1: ("a", 0, 1), 2: ("b", 0, 2), 3: ("a", 1, 1), 7: ("a", 2, 1)}  # fmt: skip
        assert led.verdicts("/e.json") == {0: {1: Verdict(Cause.COMPLETED, True, 0)}, 1: {1: Verdict(Cause.COMPLETED, True, 0)},
                                           2: {1: Verdict(Cause.TIMEOUT, True)}, 3: {1: Verdict(Cause.COMPLETED, True, 0)}}  # fmt: skip
        assert led.unresolvedJobs() == ["5", "6"] and led.causeCounts() == {"COMPLETED": 3, "TIMEOUT": 1}
        assert led.nextAttempts("/e.json", [2, 3, 9]) == {2: 3, 3: 2, 9: 1}
        assert led.resets("/e.json") == {7: 1} and led.runs("/e.json") == 1

    with readThenMigrate(state, 2, check) as led:
        assert led.db.execute("SELECT COUNT(*) FROM attempt_ranges").fetchone()[0] == 3  # a: 0-3 (2 per task), 7; b: 2
    tables = {r[0] for r in sqlite3.connect(state.ledger).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "attempts" not in tables and "verdicts" not in tables


V3 = TABLES_2_3 + """
PRAGMA user_version = 3;
CREATE TABLE attempt_ranges (experiment TEXT NOT NULL, tag TEXT NOT NULL, lo INTEGER NOT NULL, n INTEGER NOT NULL,
    task INTEGER NOT NULL, per INTEGER NOT NULL, attempt INTEGER NOT NULL);
CREATE TABLE verdict_ranges (experiment TEXT NOT NULL, lo INTEGER NOT NULL, n INTEGER NOT NULL, attempt INTEGER NOT NULL,
    cause TEXT NOT NULL, started INTEGER NOT NULL, exit INTEGER, time REAL NOT NULL);
INSERT INTO submissions VALUES ('a', '5', 'slurm', '/e.json', 2, '{}', 1, 1.0, '/m/a.json', 0, 0, '{}');
INSERT INTO submissions VALUES ('b', '6', 'slurm', '/e.json', 1, '{}', 1, 2.0, '/m/b.json', 0, 0, '{}');
-- a fitted plan's two classes as schema 3 wrote them: a row per run of contiguous indices
-- a: every other index from 0 (0 2 | 4 6), two per task; b: 1 3 5 7 in one task
INSERT INTO attempt_ranges VALUES ('/e.json', 'a', 0, 1, 0, 1, 1), ('/e.json', 'a', 2, 1, 0, 1, 1),
    ('/e.json', 'a', 4, 1, 1, 1, 1), ('/e.json', 'a', 6, 1, 1, 1, 1), ('/e.json', 'b', 1, 1, 0, 1, 1),
    ('/e.json', 'b', 3, 1, 0, 1, 1), ('/e.json', 'b', 5, 1, 0, 1, 1), ('/e.json', 'b', 7, 1, 0, 1, 1);
INSERT INTO verdict_ranges VALUES ('/e.json', 0, 1, 1, 'COMPLETED', 1, 0, 3.0), ('/e.json', 2, 1, 1, 'TIMEOUT', 1, NULL, 3.0);
INSERT INTO sweeps VALUES ('/e.json', 1, 1.0);
-- c: a bigger class, every other index from 100 in tasks of 5: 20 rows of one
INSERT INTO submissions VALUES ('c', '7', 'slurm', '/e.json', 4, '{}', 1, 3.0, '/m/c.json', 0, 0, '{}');
INSERT INTO attempt_ranges VALUES """ + ", ".join(f"('/e.json', 'c', {100 + 2 * k}, 1, {k // 5}, 1, 1)" for k in range(20)) + ";\n"


def test_a_version_3_ledger_is_read_as_it_is_and_migrated_to_packed_rows(tmp_path: Path) -> None:
    """Schema 3 to 4: read as it is (a reader), migrated in place (a writer) with every row kept; what is
    recorded afterwards packs a fitted class's scattered indices into one row."""
    state = oldLedger(tmp_path, V3)

    def check(led: Ledger) -> None:
        assert led.tasksOf("a") == ("/e.json", {0: [0, 2], 1: [4, 6]}) and led.tasksOf("b") == ("/e.json", {0: [1, 3, 5, 7]})
        assert {i: (a.tag, a.task) for i, a in led.latest("/e.json").items() if i < 100} == {
            0: ("a", 0), 2: ("a", 0), 4: ("a", 1), 6: ("a", 1), 1: ("b", 0), 3: ("b", 0), 5: ("b", 0), 7: ("b", 0)}  # fmt: skip
        assert led.tasksOf("c") == ("/e.json", {t: list(range(100 + 10 * t, 110 + 10 * t, 2)) for t in range(4)})
        assert led.latest("/e.json")[136].task == 3
        assert led.verdicts("/e.json") == {0: {1: Verdict(Cause.COMPLETED, True, 0)}, 2: {1: Verdict(Cause.TIMEOUT, True)}}
        assert led.unresolvedJobs() == ["5", "6", "7"] and led.nextAttempts("/e.json", [0, 1, 9, 102]) == {0: 2, 1: 2, 9: 1, 102: 2}

    with readThenMigrate(state, 3, check) as led:
        count = "SELECT COUNT(*) FROM attempt_ranges WHERE tag = ?"
        assert [led.db.execute(count, (t,)).fetchone()[0] for t in "abc"] == [4, 4, 1]  # c: a plan's tasks, packed
        cls = Bundles.of(range(1001, 3001, 2), 100)  # every other index: 1,000 ranges of one
        led.record(sub("x", "8"), cls)
        assert led.db.execute(count, ("x",)).fetchone()[0] == 1
        assert led.tasksOf("x") == ("/e.json", {t: list(range(1001 + 200 * t, 1001 + 200 * (t + 1), 2)) for t in range(10)})
        assert led.nextAttempts("/e.json", [1, 3, 1001, 2999, 3001]) == {1: 2, 3: 2, 1001: 2, 2999: 2, 3001: 1}
        led.record(sub("d", "9"), Bundles.of(range(1, 2001, 2), 100))  # a retry of some: those get attempt 2
        assert led.nextAttempts("/e.json", [1, 7, 9, 1001, 1999, 2001]) == {1: 3, 7: 3, 9: 2, 1001: 3, 1999: 3, 2001: 2}
    assert sqlite3.connect(state.ledger).execute("PRAGMA user_version").fetchone()[0] == 4
    reader = Ledger.read(state)
    assert reader is not None and reader.version == 4
    with reader:
        assert reader.latest("/e.json")[2999].task == 9 and reader.latest("/e.json")[1999].tag == "d"


@given(st.lists(st.lists(st.integers(0, 40), max_size=6), max_size=8), st.dictionaries(st.integers(0, 40), st.integers(1, 3)))
def test_task_ranges_give_back_every_task(tasks: list[list[int]], attempts: dict[int, int]) -> None:
    tasks = [sorted(set(t)) for t in tasks]
    seen: dict[tuple[int, int], int] = {}
    for lo, n, task, per, attempt in taskRanges(tasks, attempts):
        for k in range(n):
            seen[(task + k // per, lo + k)] = attempt
    assert seen == {(t, i): attempts.get(i, 1) for t, bundle in enumerate(tasks) for i in bundle}


def test_an_array_of_a_million_one_run_tasks_is_one_row(tmp_path: Path) -> None:
    with Ledger.open(str(tmp_path)) as led:
        led.record(sub("a", "10"), [[i] for i in range(1_000_000)], {})
        led.addVerdicts("/e.json", [(i, 1, Verdict(Cause.COMPLETED, True, 0)) for i in range(0, 1_000_000, 2)]
                        + [(i, 1, Verdict(Cause.COMPLETED, True, 0)) for i in range(1, 1_000_000, 2)])  # fmt: skip
        assert led.db.execute("SELECT COUNT(*) FROM attempt_ranges").fetchone()[0] == 1
        assert led.db.execute("SELECT COUNT(*) FROM verdict_ranges").fetchone()[0] == 1
        assert led.unresolvedJobs() == [] and led.causeCounts() == {"COMPLETED": 1_000_000}
        v = led.view("/e.json", 1_000_000)
        assert int(v.attempt.min()) == 1 and v.taskOf(999_999) == 999_999 and v.table[int(v.recorded[5])].cause is Cause.COMPLETED
    assert os.path.getsize(StateDir(str(tmp_path)).ledger) < 100_000


def readThenMigrate(state: StateDir, version: int, check: Callable[[Ledger], None]) -> Ledger:
    """``check`` an old ledger read as it is (still ``version``), then opened by a writer (migrated): the writer."""
    reader = Ledger.read(state)
    assert reader is not None and reader.version == version
    with reader:
        check(reader)
    led = Ledger.open(state)
    assert led.version == SCHEMA_VERSION == 4
    check(led)
    return led
