"""Thin Celery tasks, one module per stage: ids in, one call into app/, errors mapped."""
