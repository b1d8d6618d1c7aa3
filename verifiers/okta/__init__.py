"""Checks against Okta: access requests."""
