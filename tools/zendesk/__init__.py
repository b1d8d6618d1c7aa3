"""Zendesk: the HTTP client and its error mapping."""
