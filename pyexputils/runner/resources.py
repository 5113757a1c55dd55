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
