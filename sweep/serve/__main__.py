"""``python -m sweep.serve``."""

from sweep.cli import exit_with
from sweep.serve.cli import main

exit_with(main)
