"""Plumbing that knows nothing of sweeps: docker-py, processes, ports, files, the device."""
