"""Okta user statuses and which lifecycle action each allows: the one table the IT planner,
the Okta verifiers and the sandbox's Okta emulation all read (no imports, so the sandbox,
which imports nothing from `app`, can use it too).

Per Okta's Users API: `reset_password` is how an admin recovers an activated account
(ACTIVE, RECOVERY, LOCKED_OUT, PASSWORD_EXPIRED; the user goes to RECOVERY, and a reset
also recovers a LOCKED_OUT account, so opsgate needs no unlock tool); STAGED and
PROVISIONED users must be activated instead, SUSPENDED and DEPROVISIONED ones cannot be
reset. `suspend` is only for ACTIVE users. Group membership may change for any user Okta
has not deprovisioned, but the access policy asks for an active user: "active" means
ACTIVATED below, for every action.
"""

from __future__ import annotations

# Every user status Okta reports, in lifecycle order.
STATUSES = (
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "LOCKED_OUT",
    "PASSWORD_EXPIRED",
    "SUSPENDED",
    "DEPROVISIONED",
)

# The statuses of an activated account: what the access policy calls "active".
ACTIVATED = frozenset({"ACTIVE", "RECOVERY", "LOCKED_OUT", "PASSWORD_EXPIRED"})

# Catalog tool -> the user statuses it may act on.
ALLOWED_STATUSES: dict[str, frozenset[str]] = {
    "okta.reset_password": ACTIVATED,
    "okta.add_to_group": ACTIVATED,
    "okta.suspend_user": frozenset({"ACTIVE"}),
}

# The status a lifecycle operation leaves the user in.
RESULT_STATUS = {"okta.reset_password": "RECOVERY", "okta.suspend_user": "SUSPENDED"}


def allows(tool: str, status: str | None) -> bool:
    """Whether `tool` may act on a user in `status`."""
    return status in ALLOWED_STATUSES.get(tool, frozenset())
