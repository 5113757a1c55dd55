"""pyexputils: experiment sweeps on Slurm clusters.

Layers, one way: ``models`` (index <-> parameters <-> save path) -> ``results`` (missing runs, lazy
analysis) -> ``runner`` (plan, backends, in-job task runner, ledger, watch) -> ``cli``.
"""
from pyexputils.errors import ConfigError, ExperimentError, PyExpUtilsError

__version__ = "0.1.0"
__all__ = ["ConfigError", "ExperimentError", "PyExpUtilsError", "__version__"]
