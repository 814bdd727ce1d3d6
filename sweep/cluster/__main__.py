"""``python -m sweep.cluster``."""

from sweep.cli import exit_with
from sweep.cluster.cli import main

exit_with(main)
