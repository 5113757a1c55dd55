#!/bin/bash
#SBATCH --comment             pyxwatch:20261128120000abcd
#SBATCH --cpus-per-task       1
#SBATCH --dependency          singleton
#SBATCH --job-name            pyxwatch-8b8eabe2ba
#SBATCH --mail-type           FAIL
#SBATCH --mail-user           me@lab.org
#SBATCH --mem                 1G
#SBATCH --no-requeue
#SBATCH --output              /project/results/.pyexputils/service/logs/watcher-%j.log
#SBATCH --partition           short
#SBATCH --time                2:00:00
# pyexputils watcher of /project/results (chain 20261128120000abcd): pyexputils service status|logs|stop
cd /project || exit 1
exec /venv/bin/python -m pyexputils service run --chain 20261128120000abcd
