"""``python -m sweep.promote``."""

import sys

from sweep.promote.cli import main

sys.exit(main())
