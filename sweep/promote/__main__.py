"""``python -m sweep.promote``."""

from sweep.cli import exit_with
from sweep.promote.cli import main

exit_with(main)
