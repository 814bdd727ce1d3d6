"""MLflow: the store, a parent run per sweep, a child run per job, summaries, resume."""
