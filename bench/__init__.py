"""Benchmarks: ratios measured in one run against a bare Celery chain on the same Redis."""
