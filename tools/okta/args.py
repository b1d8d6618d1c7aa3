"""Argument models of the Okta tools (validated before any call)."""

from __future__ import annotations

from pydantic import Field

from tools.base import ToolArgs

# An Okta object id: 20 characters as Okta issues them, 6 to 32 accepted. One anchored pattern
# (no alternation of anchored patterns): llama.cpp's grammar compiler cannot compile an anchor
# inside a pattern and would let any string through, such as a redacted login placeholder.
_OKTA_ID = r"^[A-Za-z0-9]{6,32}$"


class GetUserArgs(ToolArgs):
    """okta.get_user."""

    login: str = Field(min_length=3, max_length=255)


class UserArgs(ToolArgs):
    """okta.reset_password and okta.suspend_user."""

    user_id: str = Field(pattern=_OKTA_ID)


class AddToGroupArgs(ToolArgs):
    """okta.add_to_group."""

    user_id: str = Field(pattern=_OKTA_ID)
    group_id: str = Field(pattern=_OKTA_ID)
