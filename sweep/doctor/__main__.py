"""``python -m sweep.doctor``."""

import sys

from sweep.doctor.cli import main

sys.exit(main())
