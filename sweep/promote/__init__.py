"""``python -m sweep.promote``: pick the best engine of a sweep, register it, install it."""
