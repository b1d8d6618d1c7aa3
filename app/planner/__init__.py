"""Planners: the deterministic rules tier now; model tiers plug in beside it."""
