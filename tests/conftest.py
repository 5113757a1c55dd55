"""Shared pytest fixtures. Each block below is one topic; add new fixtures in a block of their own."""

from __future__ import annotations

import fcntl
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# === Slurm cluster ===============================================================================
# Tests marked `@pytest.mark.slurm` get the session fixture `slurm_cluster` automatically (and may
# also ask for it by name to read its fields); unmarked tests never start Slurm. Which cluster:
#   - env PYX_SLURM_CONF=path: that cluster's slurm.conf; nothing is started or stopped;
#   - else the project's own (scripts/slurm-cluster) if it is up;
#   - else, as root, it is started (`up --accounting` when PYX_SLURM_ACCOUNTING=1) and stopped at the
#     end by the last test session using it; not root: the slurm tests are skipped, with the reason.
# Starting it as root and failing is an error of every slurm test, never a skip.
# Concurrent test sessions share the cluster: each holds a shared lock on <dir>.users meanwhile.

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-cluster"


@dataclass(frozen=True)
class SlurmCluster:
    conf: Path  # its slurm.conf; os.environ["SLURM_CONF"] points to it during the session
    accounting: bool  # sacct works (slurmdbd); without it, read `jobcomp`
    jobcomp: Path | None  # jobcomp/filetxt file: one line per finished job (None if the cluster has none)
    dir: Path  # the cluster's folder (state, logs: <dir>/log/slurmctld.log ...)


def _cluster_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=900, env={**os.environ, **env}
    )


def _slurm_config() -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if v}


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    lease = -1
    if os.environ.get("PYX_SLURM_CONF"):
        conf = Path(os.environ["PYX_SLURM_CONF"])
        folder = conf.parent
    else:
        printed = _cluster_script("env")
        env = dict(shlex.split(line)[1].split("=", 1) for line in printed.stdout.splitlines())
        if printed.returncode != 0 or "SLURM_CONF" not in env:
            pytest.fail(f"`scripts/slurm-cluster env` failed:\n{printed.stderr}", pytrace=False)
        conf, folder = Path(env["SLURM_CONF"]), Path(env["PYX_SLURM_DIR"])
        lease = os.open(f"{folder}.users", os.O_RDONLY | os.O_CREAT, 0o644)
        fcntl.flock(lease, fcntl.LOCK_SH)
        if _cluster_script("status").returncode != 0:
            up = ["up", "--accounting"] if os.environ.get("PYX_SLURM_ACCOUNTING") == "1" else ["up"]
            if os.geteuid() != 0:
                os.close(lease)
                pytest.skip(f"Slurm is not up and only root can start it: run `sudo {CLUSTER_SCRIPT} up`"
                            " or set PYX_SLURM_CONF")
            started = _cluster_script(*up, PYX_SLURM_AUTO="1")
            if started.returncode != 0:
                os.close(lease)
                pytest.fail(f"`scripts/slurm-cluster {' '.join(up)}` failed:\n{started.stderr}", pytrace=False)
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        config = _slurm_config()
        sacct = subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=60)
        jobcomp = config.get("JobCompLoc") if config.get("JobCompType") == "jobcomp/filetxt" else None
        yield SlurmCluster(conf, sacct.returncode == 0, Path(jobcomp) if jobcomp else None, folder)
    finally:
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        if lease >= 0:
            try:  # the last session out stops a cluster that a test session started (not one started by hand)
                fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if (folder / "auto").exists() and os.geteuid() == 0:
                    # PYX_SLURM_AUTO=1: 'down' must not wait for test sessions: this one holds the exclusive
                    # lease itself (without it, 'down' waits PYX_SLURM_SESSION_WAIT = 600 s for its own caller)
                    _cluster_script("down", PYX_SLURM_AUTO="1")
            except BlockingIOError:
                pass  # another session still uses it
            finally:
                os.close(lease)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test marked `slurm` uses `slurm_cluster`, set up before its other fixtures (so that a module- or
    session-scoped fixture of the test can already submit jobs). One such hook per conftest: extend it."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is not None and "slurm_cluster" not in names and item.get_closest_marker("slurm"):
            names.insert(0, "slurm_cluster")


# === end of Slurm cluster ==========================================================================


# === Listing cache ===============================================================================
# The listing cache (pyexputils.results.listings) keeps a setting folder's signature once the folder has not
# changed for SETTLED_S (10 s), longer than most tests take. Every test runs with 20 ms instead (more than a
# tick of the file system's clock, so a folder changed just before a walk is still listed): the cache is then
# in play in every walk of every test, beside the tests of its own (tests/test_results_listings.py).
@pytest.fixture(autouse=True)
def _listingsSettleSoon(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyexputils.results import listings

    monkeypatch.setattr(listings, "SETTLED_S", 0.02)
