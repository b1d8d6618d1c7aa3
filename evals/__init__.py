"""Evaluation sets: scripted model outputs and what opsgate must do with each."""
