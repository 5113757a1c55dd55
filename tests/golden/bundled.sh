#!/bin/bash
#SBATCH --array               0-124%5
#SBATCH --comment             pyx:sarsa-20240101120000ab12-0
#SBATCH --cpus-per-task       8
#SBATCH --job-name            pyx-sarsa-20240101120000ab12-0
#SBATCH --mem                 4096M
#SBATCH --no-requeue
#SBATCH --output              /p/.logs/sarsa-20240101120000ab12-0/%A_%a.out
#SBATCH --partition           cpu
#SBATCH --signal              B:USR1@120
#SBATCH --time                0:20:00

# pyexputils submission sarsa-20240101120000ab12-0
# experiment: /p/experiments/sarsa.json
# 125 array tasks of up to 8 runs each, 4 at a time.
# This file is a template (pyexputils/templates/sbatch.sh); a project can use its own: templates/sbatch.sh
# in the project root, or slurm.template in config.json. Keep the exec: the runner must receive Slurm's
# signals itself (USR1 before the time limit, TERM on cancel).
# Slurm may send the USR1 warning right after the start (on a 1-minute job: at its first 30 s check), before
# the runner has installed its handler: ignored until then (the runner's handler replaces the ignore).
trap '' USR1
cd /p || exit 1
exec /venv/bin/python -m pyexputils.runner.task /p/results/.pyexputils/manifests/sarsa-20240101120000ab12-0.json
