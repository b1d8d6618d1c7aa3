"""app/human/decisions.py: the person behind a reviewer's actor, for separation of duties."""

from __future__ import annotations

import pytest

from app.human.decisions import _same_person, person


@pytest.mark.parametrize(
    ("actor", "who"),
    [
        ("key:alice@example.com", "alice@example.com"),
        ("key:Rita", "rita"),
        ("cli:alice@build-host", "alice"),
        ("reviewer:rita", "reviewer:rita"),
    ],
)
def test_the_person_behind_an_actor(actor: str, who: str) -> None:
    assert person(actor) == who


@pytest.mark.parametrize(
    ("actor", "requester", "same"),
    [
        ("key:alice@example.com", "alice@example.com", True),
        ("key:ALICE@example.com", "alice@example.com", True),
        ("cli:alice@laptop", "alice@example.com", True),
        ("key:bob@example.com", "alice@example.com", False),
        ("key:rev", "zendesk-user:101", False),
        ("key:rev", "key:rev", True),
        ("cli:root@host", "zendesk-user:101", False),
    ],
)
def test_a_requester_is_recognized_behind_a_key_or_a_cli_user(
    actor: str, requester: str, same: bool
) -> None:
    assert _same_person(actor, requester) is same
