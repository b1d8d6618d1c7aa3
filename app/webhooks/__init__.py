"""Parsing and authenticating inbound deliveries (pure functions; the API wires them up)."""
