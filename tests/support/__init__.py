"""Helpers the test suites share (no fixtures: those stay in the conftest.py files).

paths: the repository's folders; models: small ONNX models built on the fly; processes:
this test session's token and the sweep processes it started; sweep: ``python -m sweep``
as a user runs it; tracking: reading the MLflow store a sweep wrote.
"""
