#!/bin/bash
#SBATCH --account             def-me
#SBATCH --array               0-99
#SBATCH --comment             pyx:sarsa-20240101120000ab12-0
#SBATCH --cpus-per-task       1
#SBATCH --job-name            pyx-sarsa-20240101120000ab12-0
#SBATCH --mem-per-cpu         2G
#SBATCH --no-requeue
#SBATCH --output              /p/.logs/sarsa-20240101120000ab12-0/%A_%a.out
#SBATCH --signal              B:USR1@300
#SBATCH --time                3:00:00

# pyexputils submission sarsa-20240101120000ab12-0
# experiment: /p/experiments/sarsa.json
# 100 array tasks of up to 1 runs each, 1 at a time.
# This file is a template (pyexputils/templates/sbatch.sh); a project can use its own: templates/sbatch.sh
# in the project root, or slurm.template in config.json. Keep the exec: the runner must receive Slurm's
# signals itself (USR1 before the time limit, TERM on cancel).
# Slurm may send the USR1 warning right after the start (on a 1-minute job: at its first 30 s check), before
# the runner has installed its handler: ignored until then (the runner's handler replaces the ignore).
trap '' USR1
cd /p || exit 1
exec /venv/bin/python -m pyexputils.runner.task /p/results/.pyexputils/manifests/sarsa-20240101120000ab12-0.json
