#!/bin/bash
#SBATCH --array               0-9
#SBATCH --comment             pyx:t-1
#SBATCH --cpus-per-task       1
#SBATCH --job-name            pyx-t-1
#SBATCH --no-requeue
#SBATCH --output              .logs/t-1/%A_%a.out
#SBATCH --signal              B:USR1@30
#SBATCH --time                0:01:00

# pyexputils submission t-1
# experiment: e
# 10 array tasks of up to 1 runs each, 1 at a time.
# This file is a template (pyexputils/templates/sbatch.sh); a project can use its own: templates/sbatch.sh
# in the project root, or slurm.template in config.json. Keep the exec: the runner must receive Slurm's
# signals itself (USR1 before the time limit, TERM on cancel).
# Slurm may send the USR1 warning right after the start (on a 1-minute job: at its first 30 s check), before
# the runner has installed its handler: ignored until then (the runner's handler replaces the ignore).
trap '' USR1
cd '/my project' || exit 1
exec /venv/bin/python -m pyexputils.runner.task '/my project/m.json'
