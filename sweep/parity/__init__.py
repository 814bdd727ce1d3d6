"""Parity between a served pipeline and the in-process reference (``python -m sweep.doctor``)."""
