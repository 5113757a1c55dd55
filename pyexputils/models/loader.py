"""Read a JSON or YAML file (by extension) into a dict; errors name the file and the line."""
from __future__ import annotations

import json
from typing import Any

from pyexputils.errors import PyExpUtilsError

YAML_SUFFIXES = (".yaml", ".yml")


def loadMapping(path: str, error: type[PyExpUtilsError] = PyExpUtilsError) -> dict[str, Any]:
    """The mapping stored in ``path``; raises ``error`` naming the file (and line) when it cannot."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror or e}") from None
    if path.endswith(YAML_SUFFIXES):
        import yaml  # here: JSON projects (and every in-job runner) do without its import time

        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}: line {mark.line + 1} column {mark.column + 1}" if mark is not None else path
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise error(f"{where}: malformed YAML: {problem}") from None
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise error(f"{path}: line {e.lineno} column {e.colno}: malformed JSON: {e.msg}") from None
    if not isinstance(d, dict):
        raise error(f"{path}: expected a mapping of keys at the top level, got {type(d).__name__}")
    return d
