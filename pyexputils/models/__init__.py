"""The experiment model: descriptions, config, save folders."""
from pyexputils.models.config import Config, getConfig, loadConfig, setConfig
from pyexputils.models.context import FileSystemContext
from pyexputils.models.experiment import ExperimentDescription, loadExperiment, loadExperiments
from pyexputils.models.sweep import Sweep

__all__ = [
    "Config",
    "ExperimentDescription",
    "FileSystemContext",
    "Sweep",
    "getConfig",
    "loadConfig",
    "loadExperiment",
    "loadExperiments",
    "setConfig",
]
