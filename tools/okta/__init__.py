"""Okta: the HTTP client, its error mapping and the user lifecycle states."""
