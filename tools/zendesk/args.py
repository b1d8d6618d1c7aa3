"""Argument models of the Zendesk tools (validated before any call)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tools.base import ToolArgs


class GetTicketArgs(ToolArgs):
    """zendesk.get_ticket."""

    ticket_id: int = Field(gt=0)


class AddCommentArgs(ToolArgs):
    """zendesk.add_comment (public = customer-facing)."""

    ticket_id: int = Field(gt=0)
    body: str = Field(min_length=1, max_length=10_000)
    public: bool = False


class UpdateTicketArgs(ToolArgs):
    """zendesk.update_ticket: only the fields given change."""

    ticket_id: int = Field(gt=0)
    status: Literal["open", "pending", "hold", "solved"] | None = None
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    tags: list[str] | None = Field(None, max_length=50)
    group_id: int | None = Field(None, gt=0)

    def changes(self) -> dict[str, Any]:
        """The ticket fields this call sets."""
        return self.model_dump(exclude={"ticket_id"}, exclude_none=True)
