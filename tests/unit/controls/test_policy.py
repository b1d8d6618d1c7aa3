"""app/controls/policy.py: decisions from the repository's config/policy.yaml, versioning, bad
files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.controls import policy
from app.errors import PermanentError
from app.settings import PROJECT_ROOT, get_settings

REPO_POLICY = PROJECT_ROOT / "config" / "policy.yaml"


def refund(
    amount: Any = 2500, currency: str = "usd", reason: str = "requested_by_customer"
) -> dict[str, Any]:
    return {"charge_id": "ch_1001", "amount": amount, "currency": currency, "reason": reason}


@pytest.fixture
def repo_policy(clean_env: Path) -> None:
    """Decide with the repository's own config/ (no OPSGATE_CONFIG_DIR)."""
    assert get_settings().config_dir.resolve() == REPO_POLICY.parent.resolve()


@pytest.fixture
def config_dir(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a policy.yaml (the repository's, edited by a function) into a fresh config dir."""
    made = 0

    def write(
        edit: Callable[[dict[str, Any]], None] | None = None, text: str | None = None
    ) -> Path:
        nonlocal made
        made += 1
        folder = clean_env / f"config-{made}"
        folder.mkdir()
        if text is None:
            data = yaml.safe_load(REPO_POLICY.read_text())
            if edit is not None:
                edit(data)
            text = yaml.safe_dump(data)
        (folder / "policy.yaml").write_text(text)
        monkeypatch.setenv("OPSGATE_CONFIG_DIR", str(folder))
        get_settings.cache_clear()
        return folder

    return write


def test_refund_at_the_cap_is_allowed_by_the_grant(repo_policy: None) -> None:
    decision = policy.decide("support_refund", "stripe.refund", refund(5000, "usd"))

    assert (decision.outcome, decision.rule) == ("allow", "autonomy_grant")
    assert decision.grant == {"tool": "stripe.refund", "max_amount": 5000, "currency": "usd"}
    assert decision.policy_version == policy.workflow_policy("support_refund")[1]


def test_refund_over_the_cap_needs_approval(repo_policy: None) -> None:
    decision = policy.decide("support_refund", "stripe.refund", refund(5001, "usd"))

    assert (decision.outcome, decision.rule) == ("approval_required", "autonomy_cap")
    assert decision.grant is None
    assert decision.evidence == {"amount": 5001, "currency": "usd", "cap": 5000}


def test_caps_are_per_currency(repo_policy: None) -> None:
    assert policy.decide("support_refund", "stripe.refund", refund(4000, "gbp")).outcome == "allow"
    assert (
        policy.decide("support_refund", "stripe.refund", refund(4001, "gbp")).rule == "autonomy_cap"
    )


def test_currency_without_a_cap_needs_approval(repo_policy: None) -> None:
    decision = policy.decide("support_refund", "stripe.refund", refund(100, "jpy"))

    assert (decision.outcome, decision.rule) == ("approval_required", "irreversible_needs_approval")
    assert decision.grant is None


def test_non_integer_amount_is_not_granted(repo_policy: None) -> None:
    decision = policy.decide("support_refund", "stripe.refund", refund("100", "usd"))

    assert decision.outcome == "approval_required"


def test_reason_off_the_allowlist_is_blocked(repo_policy: None) -> None:
    decision = policy.decide(
        "support_refund", "stripe.refund", refund(100, "usd", reason="fraudulent")
    )

    assert (decision.outcome, decision.rule) == ("block", "allowed_reasons")
    assert decision.evidence["reason"] == "fraudulent"


def test_public_comment_needs_approval_internal_note_is_allowed(repo_policy: None) -> None:
    public = policy.decide(
        "support_refund",
        "zendesk.add_comment",
        {"ticket_id": 4821, "body": "Refunded.", "public": True},
    )
    internal = policy.decide(
        "support_refund",
        "zendesk.add_comment",
        {"ticket_id": 4821, "body": "Refunded.", "public": False},
    )

    assert (public.outcome, public.rule) == ("approval_required", "public_requires_approval")
    assert (internal.outcome, internal.rule) == ("allow", "risk_class")


def test_read_tools_are_allowed(repo_policy: None) -> None:
    decision = policy.decide("support_refund", "stripe.get_charge", {"charge_id": "ch_1001"})

    assert (decision.outcome, decision.rule) == ("allow", "risk_class")


def test_unknown_workflow_and_unknown_tool_are_permanent_errors(repo_policy: None) -> None:
    with pytest.raises(PermanentError, match="no policy for workflow 'payroll'"):
        policy.decide("payroll", "stripe.refund", refund())
    with pytest.raises(PermanentError, match="unknown tool 'stripe.payout'"):
        policy.decide("support_refund", "stripe.payout", {})


def test_tool_not_in_allowed_tools_is_blocked(config_dir: Callable[..., Path]) -> None:
    # Given a policy where the workflow may read charges but not refund them
    def no_refunds(data: dict[str, Any]) -> None:
        data["workflows"]["support_refund"]["allowed_tools"].remove("stripe.refund")

    config_dir(no_refunds)

    # When a refund is decided, even one the autonomy grant would cover
    decision = policy.decide("support_refund", "stripe.refund", refund(100, "usd"))

    # Then it is blocked by the allowlist
    assert (decision.outcome, decision.rule) == ("block", "allowed_tools")


def test_policy_version_is_stable_for_the_same_content(
    repo_policy: None, config_dir: Callable[..., Path]
) -> None:
    first = policy.workflow_policy("support_refund")[1]
    assert policy.workflow_policy("support_refund")[1] == first

    # The same content at another path (and re-serialized) has the same version.
    config_dir()
    assert policy.workflow_policy("support_refund")[1] == first
    assert len(first) == 16


def test_policy_version_changes_with_the_workflow_section(config_dir: Callable[..., Path]) -> None:
    config_dir()
    before = policy.workflow_policy("support_refund")[1]

    def raise_cap(data: dict[str, Any]) -> None:
        data["workflows"]["support_refund"]["tools"]["stripe.refund"]["autonomy"]["max_amount"][
            "usd"
        ] = 6000

    config_dir(raise_cap)
    after = policy.workflow_policy("support_refund")[1]

    assert after != before
    decision = policy.decide("support_refund", "stripe.refund", refund(6000, "usd"))
    assert decision.outcome == "allow" and decision.policy_version == after


def test_other_workflows_do_not_change_a_workflows_version(config_dir: Callable[..., Path]) -> None:
    config_dir()
    before = policy.workflow_policy("support_refund")[1]

    def add_workflow(data: dict[str, Any]) -> None:
        data["workflows"]["it_access"] = {"allowed_tools": ["zendesk.get_ticket"]}

    config_dir(add_workflow)

    assert policy.workflow_policy("support_refund")[1] == before
    assert policy.workflow_policy("it_access")[1] != before


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda d: d["workflows"]["support_refund"]["tools"]["stripe.refund"]["autonomy"][
                "max_amount"
            ].update(usd="lots"),
            "workflows.support_refund.tools.stripe.refund.autonomy.max_amount.usd",
        ),
        (
            lambda d: d["workflows"]["support_refund"].update(stage="yolo"),
            "workflows.support_refund.stage",
        ),
        (
            lambda d: d["workflows"]["support_refund"].update(allowed_toolz=[]),
            "workflows.support_refund.allowed_toolz",
        ),
        (
            lambda d: d["workflows"]["support_refund"].pop("allowed_tools"),
            "workflows.support_refund.allowed_tools",
        ),
    ],
)
def test_invalid_policy_file_names_the_file_and_the_key(
    config_dir: Callable[..., Path], edit: Callable[[dict[str, Any]], None], key: str
) -> None:
    folder = config_dir(edit)

    with pytest.raises(PermanentError) as caught:
        policy.decide("support_refund", "stripe.refund", refund())
    message = str(caught.value)
    assert str(folder / "policy.yaml") in message
    assert key in message


def test_unparseable_policy_file_names_the_file(config_dir: Callable[..., Path]) -> None:
    folder = config_dir(text="workflows: [unclosed\n")

    with pytest.raises(PermanentError, match="config file") as caught:
        policy.workflow_policy("support_refund")
    assert str(folder / "policy.yaml") in str(caught.value)


def test_missing_policy_file_is_a_permanent_error(config_dir: Callable[..., Path]) -> None:
    folder = config_dir()
    (folder / "policy.yaml").unlink()

    with pytest.raises(PermanentError, match="policy.yaml"):
        policy.workflow_policy("support_refund")


def test_an_argument_allowlist_blocks_values_off_the_list(config_dir: Callable[..., Path]) -> None:
    def allow_groups(data: dict[str, Any]) -> None:
        data["workflows"]["it_request"] = {
            "stage": "live",
            "allowed_tools": ["okta.add_to_group"],
            "tools": {"okta.add_to_group": {"allowed_values": {"group_id": ["00gSELFSERVICE01"]}}},
        }

    config_dir(allow_groups)
    args = {"user_id": "00u1234567890abcdefg", "group_id": "00gADMINISTRATORS1"}
    decision = policy.decide("it_request", "okta.add_to_group", args)
    assert (decision.outcome, decision.rule) == ("block", "allowed_values")
    assert decision.evidence["allowed"] == ["00gSELFSERVICE01"]
    ok = policy.decide("it_request", "okta.add_to_group", {**args, "group_id": "00gSELFSERVICE01"})
    assert ok.outcome != "block"


def test_a_write_over_the_approval_threshold_needs_approval(
    config_dir: Callable[..., Path],
) -> None:
    def threshold(data: dict[str, Any]) -> None:
        refund = data["workflows"]["support_refund"]["tools"]["stripe.refund"]
        refund["approval_above"] = {"usd": 1000}

    config_dir(threshold)
    over = policy.decide("support_refund", "stripe.refund", refund(1500, "usd"))
    assert (over.outcome, over.rule) == ("approval_required", "approval_threshold")
    under = policy.decide("support_refund", "stripe.refund", refund(900, "usd"))
    assert (under.outcome, under.rule) == ("allow", "autonomy_grant")


def test_a_bad_policy_file_names_the_line_and_the_key(config_dir: Callable[..., Path]) -> None:
    text = (
        "workflows:\n"
        "  support_refund:\n"
        "    stage: live\n"
        "    allowed_tools: [stripe.refund]\n"
        "    tools:\n"
        "      stripe.refund:\n"
        "        autonomy:\n"
        "          max_amount: {usd: lots}\n"
        "        unknown_rule: true\n"
    )
    config_dir(text=text)
    with pytest.raises(PermanentError) as caught:
        policy.current_policy()
    message = str(caught.value)
    assert "line 8: workflows.support_refund.tools.stripe.refund.autonomy.max_amount.usd" in message
    assert "line 9: workflows.support_refund.tools.stripe.refund.unknown_rule" in message
