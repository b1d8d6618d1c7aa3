"""Verifiers: deterministic rule chains before a write, read-back checks after it."""
