"""app/workflows: what each workflow's module declares holds together, and the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.controls import policy
from app.errors import InputError, PermanentError
from app.settings import PROJECT_ROOT, get_settings
from app.workflows import registry
from app.workflows.base import Workflow
from tools.base import Risk
from tools.catalog import CATALOG
from verifiers.chains import CHAINS
from verifiers.soft import SIGNALS


def test_the_built_in_workflows_are_registered_by_name() -> None:
    assert list(registry.workflows()) == ["support_refund", "invoice_exception", "it_request"]
    assert {w.name for w in registry.BUILT_IN} == set(policy.current_policy().workflows)


@pytest.mark.parametrize("workflow", registry.BUILT_IN, ids=lambda w: w.name)
def test_what_a_workflow_declares_exists(workflow: Workflow) -> None:
    specific = {s.name for s in SIGNALS if not s.general}
    assert workflow.signals <= specific, workflow.signals - specific
    assert (PROJECT_ROOT / "config" / "policies" / f"{workflow.policy_doc}.md").is_file()
    allowed = policy.current_policy().workflows[workflow.name].allowed_tools
    for tool in workflow.writes:
        assert CATALOG[tool].risk is not Risk.READ
        assert tool in CHAINS, f"{tool} has no verifier chain"
        assert tool in allowed, f"{tool} is not in {workflow.name}'s allowed_tools"
    # Every write its policy allows is one it declares (so none runs unchecked by design).
    writes = {t for t in allowed if CATALOG[t].risk is not Risk.READ}
    assert writes == set(workflow.writes)


def test_every_specific_signal_belongs_to_some_workflow() -> None:
    claimed = set().union(*(w.signals for w in registry.BUILT_IN))
    assert claimed == {s.name for s in SIGNALS if not s.general}


def test_where_workflows_start() -> None:
    assert registry.zendesk_default() == "support_refund"
    assert registry.from_zendesk("support_refund")
    assert not registry.from_zendesk("it_request") and not registry.from_zendesk("nope")
    found = registry.for_salesforce("Invoice__c")
    assert found is not None and found.name == "invoice_exception"
    assert registry.for_salesforce("Account") is None


def test_an_unknown_workflow_is_refused_by_name(clean_env: Path) -> None:
    with pytest.raises(InputError, match="unknown workflow 'nope'; known: invoice_exception"):
        registry.submittable("nope")
    with pytest.raises(PermanentError, match="unknown workflow 'nope'"):
        registry.get("nope")
    assert registry.plan("nope", {}) is None


def test_workflow_modules_are_loaded_from_the_setting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_WORKFLOW_MODULES", "tests.integration.ticket_triage_workflow")
    get_settings.cache_clear()
    assert list(registry.workflows())[-1] == "ticket_triage"
    assert registry.get("ticket_triage").writes == ("zendesk.add_comment",)


@pytest.mark.parametrize(
    ("modules", "problem"),
    [
        ("tests.integration.no_such_module", "cannot import"),
        ("app.workflows.base", "has no WORKFLOW"),
        ("app.workflows.support_refund", "declares 'support_refund' a second time"),
    ],
)
def test_a_bad_workflow_module_is_named(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, modules: str, problem: str
) -> None:
    monkeypatch.setenv("OPSGATE_WORKFLOW_MODULES", modules)
    get_settings.cache_clear()
    with pytest.raises(PermanentError, match=problem):
        registry.workflows()
