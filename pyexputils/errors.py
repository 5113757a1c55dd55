"""Errors that pyexputils reports to the user as one line (the CLI exits 2 on them)."""
from __future__ import annotations


class PyExpUtilsError(ValueError):
    """Bad input: the message names the file, the key and what was expected."""


class ExperimentError(PyExpUtilsError):
    """An experiment description (file or dict) that cannot be used."""


class ConfigError(PyExpUtilsError):
    """A config.json / config.yaml that cannot be used."""
