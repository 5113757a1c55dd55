"""The test tree itself: pytest (rootdir imports, no __init__.py) refuses two test modules of the same name."""
from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_test_modules_have_unique_names() -> None:
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
