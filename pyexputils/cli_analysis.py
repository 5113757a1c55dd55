"""Analysis commands of the command line (``plot``, ``table``): registered by :mod:`pyexputils.cli`."""
from __future__ import annotations

import argparse
from typing import Any, Callable

Handler = Callable[[argparse.Namespace], int]


def register(sub: Any) -> dict[str, Handler]:
    """Add the analysis sub-commands to ``sub`` (argparse sub-parsers); returns their handlers by name."""
    return {}
