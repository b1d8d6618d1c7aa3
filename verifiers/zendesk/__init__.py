"""Checks against Zendesk: tickets and the ticket thread."""
