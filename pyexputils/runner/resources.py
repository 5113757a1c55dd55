"""Resource helpers for the ``slurm`` block: ``hours(3) == '2:59:59'``, ``gigs(4) == '4G'``."""
from __future__ import annotations

import operator
from typing import Any

from pyexputils.errors import PyExpUtilsError


def _count(n: Any, what: str) -> int:
    if isinstance(n, bool):
        raise PyExpUtilsError(f"{what}({n!r}): expected a whole number >= 1")
    try:
        value = operator.index(n)
    except TypeError:
        if isinstance(n, float) and n.is_integer():
            value = int(n)
        else:
            raise PyExpUtilsError(f"{what}({n!r}): expected a whole number >= 1") from None
    if value < 1:
        raise PyExpUtilsError(f"{what}({n!r}): expected a whole number >= 1")
    return value


def hours(n: int) -> str:
    """A time limit of ``n`` hours, one second short so it fits an ``n``-hour partition limit."""
    return f"{_count(n, 'hours') - 1}:59:59"


def gigs(n: int) -> str:
    """``n`` gigabytes of memory, as sbatch writes it."""
    return f"{_count(n, 'gigs')}G"


def parseMinutes(value: Any) -> int | None:
    """A Slurm time limit in whole minutes (seconds round up, as Slurm does); None for UNLIMITED.

    Accepts minutes (int), and the strings ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``.
    """
    if isinstance(value, bool):
        raise PyExpUtilsError(f"time {value!r}: expected minutes or D-HH:MM:SS")
    if isinstance(value, int):
        if value < 1:
            raise PyExpUtilsError(f"time {value!r}: expected at least one minute")
        return value
    if not isinstance(value, str):
        raise PyExpUtilsError(f"time {value!r}: expected minutes or D-HH:MM:SS")
    text = value.strip()
    if text.upper() in ("UNLIMITED", "INFINITE"):
        return None
    try:
        days = 0
        if "-" in text:
            d, text = text.split("-", 1)
            days = int(d)
            parts = [int(p) for p in text.split(":")]
            h, m, s = (parts + [0, 0])[:3]
        else:
            parts = [int(p) for p in text.split(":")]
            if len(parts) == 1:
                h, m, s = 0, parts[0], 0
            elif len(parts) == 2:
                h, m, s = 0, parts[0], parts[1]
            elif len(parts) == 3:
                h, m, s = parts
            else:
                raise ValueError
        if min(days, h, m, s) < 0 or len(parts) > 3:
            raise ValueError
    except ValueError:
        raise PyExpUtilsError(f"time {value!r}: expected minutes or D-HH:MM:SS") from None
    seconds = ((days * 24 + h) * 60 + m) * 60 + s
    if seconds < 1:
        raise PyExpUtilsError(f"time {value!r}: expected at least one second")
    return -(-seconds // 60)


def formatMinutes(minutes: int) -> str:
    """Whole minutes as sbatch writes them: ``H:MM:00``, or ``D-HH:MM:00`` from one day on."""
    days, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    return f"{days}-{h:02d}:{m:02d}:00" if days else f"{h}:{m:02d}:00"


_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def parseMemMB(value: Any) -> int:
    """Memory in MB from sbatch's notation (``4G``, ``500M``, ``1T``; a bare number is MB)."""
    if isinstance(value, bool):
        raise PyExpUtilsError(f"memory {value!r}: expected e.g. 4G or 500M")
    if isinstance(value, int) and value > 0:
        return value
    text = str(value).strip().upper().removesuffix("B")
    unit = text[-1:] if text[-1:] in _MEM_UNITS else "M"
    number = text[:-1] if text[-1:] in _MEM_UNITS else text
    try:
        amount = float(number)
    except ValueError:
        raise PyExpUtilsError(f"memory {value!r}: expected e.g. 4G or 500M") from None
    if amount <= 0:
        raise PyExpUtilsError(f"memory {value!r}: expected a positive amount")
    return max(1, int(-(-amount * _MEM_UNITS[unit] // 1)))
