"""Checks against Stripe: charges and refunds."""
