#!/bin/bash
{{sbatch}}

# pyexputils submission {{tag}}
# experiment: {{experiment}}
# {{tasks}} array tasks of up to {{runs_per_task}} runs each, {{parallel}} at a time.
# This file is a template (pyexputils/templates/sbatch.sh); a project can use its own: templates/sbatch.sh
# in the project root, or slurm.template in config.json. Keep the exec: the runner must receive Slurm's
# signals itself (USR1 before the time limit, TERM on cancel).
# Slurm may send the USR1 warning right after the start (on a 1-minute job: at its first 30 s check), before
# the runner has installed its handler: ignored until then (the runner's handler replaces the ignore).
trap '' USR1
cd {{project}} || exit 1
exec {{python}} -m pyexputils.runner.task {{manifest}}
