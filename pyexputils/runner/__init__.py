"""Scheduling: plan, backends (Slurm, local), in-job task runner, ledger, watch."""
from pyexputils.runner.resources import gigs, hours

__all__ = ["gigs", "hours"]
