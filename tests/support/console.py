"""Driving the reviewer console over HTTP as a browser would: its forms, cookies and tokens."""

from __future__ import annotations

import re
from typing import Any

import httpx

# The keys the `console` fixture (tests/conftest.py) gives the API.
KEYS = (
    "rev:reviewer:rev-key-0001,rev2:reviewer:rev-key-0002,"
    "alice@example.com:reviewer:alice-key-0003,req:requester:req-key-0004,"
    "ops:admin:ops-key-0005"
)

_HIDDEN = re.compile(r'name="(csrf_token|signin_token)" value="([^"]+)"')


def hidden(page: str, name: str) -> str:
    """The value of a hidden form field on a page."""
    for field, value in _HIDDEN.findall(page):
        if field == name:
            return str(value)
    raise AssertionError(f"no hidden field {name!r} on the page")


def sign_in(client: httpx.Client | Any, key: str) -> httpx.Response:
    """Open the sign-in form and post the key, as the form would; returns the answer."""
    form = client.get("/ui/sign-in")
    assert form.status_code == 200, form.text
    return client.post(
        "/ui/sign-in",
        data={"api_key": key, "signin_token": hidden(form.text, "signin_token"), "next": ""},
        follow_redirects=False,
    )


def signed_in(client: httpx.Client | Any, key: str) -> str:
    """Sign in and return the session's CSRF token (read off the queue page's forms)."""
    answer = sign_in(client, key)
    assert answer.status_code == 303, answer.text
    return hidden(client.get("/ui/escalations").text, "csrf_token")


def statements_for(client: Any, path: str) -> int:
    """How many SQL statements the database received while the page at `path` was served."""
    from sqlalchemy import event

    from app.core.db import get_engine

    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)
    return len(seen)
