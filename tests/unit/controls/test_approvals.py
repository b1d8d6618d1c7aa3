"""app/controls/approvals.py: tokens bind one exact action, are signed by the first key, verify
under any listed key, expire, and are refused with the reason when any of that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.controls import approvals
from app.errors import TokenRefused
from app.jobs.steps import ApprovalToken, StoredStep
from app.settings import get_settings

STEP = StoredStep(
    pk=1,
    step_id="s1",
    revision=1,
    tool="stripe.refund",
    args={"charge_id": "ch_1001", "amount": 9000, "currency": "usd", "reason": "duplicate"},
    args_hash="0" * 64,
    idempotency_key="job-1:s1",
)
ACTION = approvals.action_hash("job-1", STEP, "policy-v1")


@pytest.fixture
def keys(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "new:0123456789abcdef-new,old:0123456789abcdef-old")
    get_settings.cache_clear()


def test_a_token_verifies_for_its_action_and_names_key_and_approvers(keys: None) -> None:
    token, kid, _ = approvals.issue("ap-1", ACTION, ["rita", "sam"], ttl=60)
    assert kid == "new"  # the first listed key signs
    ok = approvals.verify(token, ACTION)
    assert (ok.approval_id, ok.approvers, ok.key_id) == ("ap-1", ["rita", "sam"], "new")


def test_a_rotated_out_signing_key_still_verifies_while_listed(
    keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "old:0123456789abcdef-old")
    get_settings.cache_clear()
    token, _, _ = approvals.issue("ap-1", ACTION, ["rita"], ttl=60)
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "new:0123456789abcdef-new,old:0123456789abcdef-old")
    get_settings.cache_clear()
    assert approvals.verify(token, ACTION).key_id == "old"
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", "new:0123456789abcdef-new")
    get_settings.cache_clear()
    with pytest.raises(TokenRefused, match="unknown signing key 'old'"):
        approvals.verify(token, ACTION)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"args": dict(STEP.args, amount=9001)}, "issued for another action"),
        ({"revision": 2}, "issued for another action"),
        ({"step_id": "s2"}, "issued for another action"),
    ],
)
def test_a_token_holds_for_no_other_action(
    keys: None, change: dict[str, object], problem: str
) -> None:
    token, _, _ = approvals.issue("ap-1", ACTION, ["rita"], ttl=60)
    other = {**STEP.__dict__, **change}
    with pytest.raises(TokenRefused, match=problem):
        approvals.verify(token, approvals.action_hash("job-1", StoredStep(**other), "policy-v1"))
    with pytest.raises(TokenRefused, match=problem):
        approvals.verify(token, approvals.action_hash("job-1", STEP, "policy-v2"))


def test_an_altered_expired_or_malformed_token_is_refused(keys: None) -> None:
    token, _, _ = approvals.issue("ap-1", ACTION, ["rita"], ttl=60)
    payload, signature = token.split(".")
    with pytest.raises(TokenRefused, match="bad signature"):
        approvals.verify(f"{payload}.{signature[:-2]}AA", ACTION)
    expired, _, _ = approvals.issue("ap-1", ACTION, ["rita"], ttl=-1)
    with pytest.raises(TokenRefused, match="expired"):
        approvals.verify(expired, ACTION)
    with pytest.raises(TokenRefused, match="malformed"):
        approvals.verify("not-a-token", ACTION)


def test_authorize_refuses_a_missing_or_spent_token(keys: None) -> None:
    token, _, _ = approvals.issue("ap-1", ACTION, ["rita"], ttl=60)
    assert approvals.authorize(ApprovalToken("ap-1", token, used=False), ACTION).approvers == [
        "rita"
    ]
    with pytest.raises(TokenRefused, match="already used"):
        approvals.authorize(ApprovalToken("ap-1", token, used=True), ACTION)
    with pytest.raises(TokenRefused, match="no approval token"):
        approvals.authorize(None, ACTION)
