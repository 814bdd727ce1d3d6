"""``python -m sweep.doctor``."""

from sweep.cli import exit_with
from sweep.doctor.cli import main

exit_with(main)
