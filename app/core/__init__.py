"""The bottom of opsgate: database, broker, embedded redis-server, config files,
money, time specs, redaction and the escalation taxonomy. Imports only settings, errors
and models."""
