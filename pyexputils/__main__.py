"""``python -m pyexputils``: the command line (see :mod:`pyexputils.cli`)."""
import sys

from pyexputils.cli import main

sys.exit(main())
