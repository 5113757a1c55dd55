"""What each setting folder held when it was last listed, known again from one ``stat`` while the folder is
unchanged (git's untracked cache, for save folders).

From a cold cache, listing a setting folder costs a read of its own block from the disk; a ``stat`` reads
only its inode, and the file system reads inodes ahead many at a time (on this machine's disk, ``stat`` of
10^5 setting folders took 1.1-1.9 s cold against 10-23 s for listing them). So a walk keeps, per setting,
the folder's *signature* (a hash of its device, inode, mtime and ctime) and, for the whole sweep, which
indices were done, in one file under the state folder (``listings/<hash>.npz``). Next time a setting folder
whose signature is the same is not listed: its indices are what they were.

Why that is safe: any change to a folder's entries (a run folder made, removed or renamed) sets its mtime and
ctime to the time of the change, and ctime cannot be set back (``touch -d``, rsync set mtime only). A
signature is kept only when the folder had not changed for :data:`SETTLED_S` seconds when it was read, by the
file system's own clock (read from the mtime of the file the walk is about to write), so that a change in
the same clock tick as the listing still makes a different signature. The file is a cache: when it is absent,
damaged, of another sweep or cannot be written, the walk lists every folder, as without it.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import sys
import time
import zipfile

import numpy as np
import numpy.typing as npt

SETTLED_S = 10.0  # a folder changed less than this long before it was read is listed every time
# file systems known to set a folder's mtime and ctime whenever its entries change (Linux ``fstype`` names);
# on others (FUSE mounts of object stores, SMB, FAT, overlays) every folder is listed
KEEPS_TIMES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "jfs", "tmpfs", "nfs", "nfs4",
                         "lustre", "gpfs", "beegfs", "ceph", "wekafs", "panfs"})  # fmt: skip
DISABLE = "PYEXPUTILS_LISTING_CACHE"  # set to 0: no listing cache (every folder listed)
VERSION = 1
HASHES = f"{VERSION}/{sys.implementation.cache_tag}/{sys.hash_info.algorithm}"  # what the signatures depend on
_MASK64 = (1 << 64) - 1


def signature(st: os.stat_result) -> int:
    """The folder's signature: Python's hash of its device, inode, mtime and ctime (an int's hash is not salted
    by PYTHONHASHSEED; :data:`HASHES` names the interpreter whose hash it is, so another one does not trust it)."""
    return (hash((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)) & _MASK64) or 1


def settled(st: os.stat_result, nowNs: int) -> bool:
    """Whether the folder had not changed for :data:`SETTLED_S` at ``nowNs`` (the file system's clock)."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < nowNs - int(SETTLED_S * 1e9)


_clock = time.time_ns  # this machine's clock


class ListingCache:
    """The signatures of one walk's setting folders (``count`` settings × ``runs`` runs, index ``run·count +
    setting``) and the done indices as they were; ``what`` names everything that maps indices to folders."""

    def __init__(self, path: str, what: str, count: int, runs: int) -> None:
        self.path, self.what, self.count, self.runs = path, what, count, runs
        self.sig: npt.NDArray[np.uint64] | None = None  # per setting; None: none trusted yet (made on the first)
        self.bits: npt.NDArray[np.uint8] | None = None  # np.packbits of the done mask as it was; None: none known
        self._seen: npt.NDArray[np.bool_] | None = None  # the settings recorded in this walk (with ``sig``)
        self._changed = False
        self._tmp: str | None = None  # the file this walk writes, made when it began (its mtime: the clock)
        self._behind = 0  # how far the file system's clock is behind this machine's (ns, >= 0)

    @classmethod
    def open(cls, path: str, what: str, count: int, runs: int) -> "ListingCache":
        """The cache at ``path`` if it is one of this sweep (``what``); else an empty one (nothing known)."""
        cache = cls(path, what, count, runs)
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["what"]) == what and z["sig"].shape == (count,) and z["bits"].shape == ((count * runs + 7) // 8,):
                    cache.sig = z["sig"].astype(np.uint64, copy=False)  # read once, not copied (8 bytes a setting)
                    cache.bits = z["bits"].astype(np.uint8, copy=False)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            pass  # absent or damaged: nothing known
        return cache

    def begin(self, root: str) -> None:
        """Make the file this walk will write (a temporary name beside the cache) and read the clock of the
        file system of ``root`` (the folders walked) from its mtime: a folder is settled by that clock, not
        this machine's (a file server whose clock is behind would make folders changed just now look
        settled). When it cannot be made (a read-only folder), or is on another file system than ``root``
        (another clock), no new signature is trusted and nothing is written; the cache is still read."""
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(self.path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
            before = _clock()  # before it is made: a wait after it (a busy machine) is not taken for the clocks' gap
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # as any file the user makes (umask)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            same = st.st_dev == os.stat(root).st_dev
        except OSError:
            same = False
        finally:
            os.close(fd)
        if not same:
            self._tmp = tmp
            self.close()
            return
        self._tmp, self._behind = tmp, max(0, before - st.st_mtime_ns)

    def settled(self, st: os.stat_result) -> bool:
        """Whether a signature of the folder ``st`` may be kept: it had not changed for :data:`SETTLED_S` by
        the file system's clock (False when that clock could not be read: nothing would be written)."""
        return self._tmp is not None and settled(st, _clock() - self._behind)

    def known(self, setting: int, sig: int) -> bool:
        """Whether the folder of ``setting``, now of signature ``sig``, holds what it held when last listed."""
        return sig != 0 and self.bits is not None and self.sig is not None and int(self.sig[setting]) == sig

    def record(self, setting: int, sig: int) -> None:
        """The folder of ``setting`` was seen now, of signature ``sig`` (taken before it was listed)."""
        if self.sig is None:
            if sig == 0:
                return  # nothing trusted, nothing known: nothing to keep (no array a setting for a fresh sweep)
            self.sig = np.zeros(self.count, dtype=np.uint64)
        if self._seen is None:
            self._seen = np.zeros(self.count, dtype=bool)
        self._seen[setting] = True
        if int(self.sig[setting]) != sig:
            self.sig[setting] = sig
            self._changed = True

    def fill(self, mask: npt.NDArray[np.bool_], settings: list[int]) -> None:
        """Set ``mask`` at the indices of ``settings`` (folders :meth:`known`) as they were."""
        if not settings or self.bits is None:
            return
        index = (np.array(settings, dtype=np.int64)[:, None] + np.arange(self.runs, dtype=np.int64) * self.count).ravel()
        mask[index] = (self.bits[index >> 3] >> (7 - (index & 7)).astype(np.uint8)) & 1

    def save(self, mask: npt.NDArray[np.bool_]) -> None:
        """Keep the signatures seen and ``mask`` for the next walk (nothing is written when nothing changed
        or nothing is trusted); a folder not seen this time is forgotten. Failures to write are ignored."""
        if self.sig is None or self._tmp is None:
            return  # nothing trusted, or nowhere to write: nothing to keep (a file of an earlier walk stays)
        unseen = self.sig != 0
        if self._seen is not None:
            unseen &= ~self._seen
        if unseen.any():
            self.sig[unseen] = 0
            self._changed = True
        bits = np.packbits(mask)
        if not self._changed and self.bits is not None and np.array_equal(bits, self.bits):
            return
        try:
            with open(self._tmp, "wb") as f:
                np.savez(f, what=np.array(self.what), sig=self.sig, bits=bits)
            os.replace(self._tmp, self.path)
        except OSError:
            return  # a full results folder: the next walk lists every folder (close() removes the file)
        self._tmp = None
        _removeStale(os.path.dirname(self.path), _clock() - self._behind)
        self.bits, self._changed = bits, False

    def close(self) -> None:
        """Remove this walk's file if it was not written (nothing to keep, or the walk failed)."""
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


STALE_S = 3600  # a walk's file older than this (its process was killed before it removed it) is removed


def _removeStale(folder: str, nowNs: int) -> None:
    """Remove the files of walks killed before they removed them (``.*.tmp`` older than :data:`STALE_S`)."""
    try:
        with os.scandir(folder) as entries:
            stale = [e.path for e in entries if e.name.startswith(".") and e.name.endswith(".tmp")
                     and e.stat().st_mtime_ns < nowNs - STALE_S * 10**9]  # fmt: skip
        for path in stale:
            os.unlink(path)
    except OSError:
        pass


def cacheName(root: str, levels: str) -> str:
    """The file name of the cache of the walk of ``root`` by ``levels``: one file per save path, so that a
    sweep whose settings change replaces its file instead of adding one."""
    return hashlib.sha1(f"{os.path.abspath(root)}\0{levels}".encode("utf-8", "surrogateescape")).hexdigest()[:16] + ".npz"


def usable(path: str) -> bool:
    """Whether a listing cache may be kept for folders under ``path``: not turned off (:data:`DISABLE`), and the
    file system holding it is one of :data:`KEEPS_TIMES` (read from ``/proc/self/mountinfo``; without it, no)."""
    if os.environ.get(DISABLE, "").strip() == "0":
        return False
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            mounts = f.read()
    except OSError:
        return False
    return fileSystem(os.path.realpath(path), mounts) in KEEPS_TIMES


def fileSystem(path: str, mountinfo: str) -> str:
    """The type of the file system that holds the absolute ``path``, by the longest mount point above it in
    ``mountinfo`` (the text of ``/proc/self/mountinfo``); '' when none is."""
    best, kind = -1, ""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
        under = path == point or path.startswith(point.rstrip("/") + "/")
        if under and len(point) >= best:  # the same point mounted over again: the last one counts
            best, kind = len(point), right.split()[0]
    return kind

