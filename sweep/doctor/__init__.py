"""``python -m sweep.doctor``: why a served pipeline and the in-process reference disagree."""
