"""``python -m sweep.serve RUN_ID``: a finished run's repository served on fixed ports."""
