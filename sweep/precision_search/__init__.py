"""``python -m sweep.precision_search``: which nodes must stay FP32 under a WER budget."""
