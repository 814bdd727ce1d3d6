"""``python -m sweep.cluster``: several hosts rehearsed on one machine (docs/scaling.md)."""
