"""``python -m sweep.preflight``: will a sweep with these settings run on this host?"""
