"""The job: its state machine, plan steps, the outbox, operator actions and read
views."""
