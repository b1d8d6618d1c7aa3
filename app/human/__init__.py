"""The human queue: escalation, a reviewer's decisions and plan revisions."""
