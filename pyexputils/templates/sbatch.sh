#!/bin/bash
{{sbatch}}

# pyexputils submission {{tag}}
# experiment: {{experiment}}
# {{tasks}} array tasks of up to {{runs_per_task}} runs each, {{parallel}} at a time.
# This file is a template (pyexputils/templates/sbatch.sh); a project can use its own: templates/sbatch.sh
# in the project root, or slurm.template in config.json. Keep the exec: the runner must receive Slurm's
# signals itself (USR1 before the time limit, TERM on cancel).
cd {{project}} || exit 1
exec {{python}} -m pyexputils.runner.task {{manifest}}
