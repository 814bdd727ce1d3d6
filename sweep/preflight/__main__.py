"""``python -m sweep.preflight``."""

import sys

from sweep.preflight.cli import main

sys.exit(int(main()))
