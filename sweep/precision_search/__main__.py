"""``python -m sweep.precision_search``."""

from sweep.precision_search.cli import entry

entry()
