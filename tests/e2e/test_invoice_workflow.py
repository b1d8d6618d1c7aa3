"""invoice_exception end to end: Salesforce Outbound Messages (and POST /v1/jobs) through a real
API process, real workers, PostgreSQL, Redis and the sandbox's Salesforce, every path to its
end: holds, approvals, rejections, duplicates, planner and verifier stops, lost writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import pytest

from app.jobs import lifecycle
from tests.support.deliveries import ORG_15, Note, outbound_message
from tests.support.env import ROOT, reset_process_state
from tests.support.fleet import SETTLED, ApiFleet
from tests.support.processes import Proc, wait_for
from tests.support.sandbox import Sandbox
from tools.salesforce import client as salesforce_api
from tools.sandbox.seed import INVOICE_IDS, PURCHASE_ORDER_IDS

pytestmark = pytest.mark.e2e

KEYS = (
    "erp:requester:erp-key-0001,finance:reviewer:fin-key-0002,"
    "controller:reviewer:ctl-key-0003,ops:admin:ops-key-0004"
)
ERP = {"Authorization": "Bearer erp-key-0001"}
FINANCE = {"Authorization": "Bearer fin-key-0002"}
OPS = {"Authorization": "Bearer ops-key-0004"}
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}

INVOICE = "Invoice__c"


def notification_id(label: str, delivery: int = 0) -> str:
    """A Salesforce notification id per invoice (and delivery attempt of a new event)."""
    return f"04lDn00000{label[-4:]}{delivery:04d}"


@dataclass
class Fleet(ApiFleet):
    """The running system, with this workflow's submissions."""

    reviewer: ClassVar[dict[str, str]] = FINANCE

    def deliver(self, *labels: str, delivery: int = 0) -> list[str]:
        """Send one Outbound Message about the seeded invoices; returns their job ids."""
        notes = [
            Note(
                id=notification_id(label, delivery),
                record_id=INVOICE_IDS[label],
                fields={"Name": label, "Status__c": "Exception"},
            )
            for label in labels
        ]
        resp = httpx.post(
            f"{self.api}/webhooks/salesforce", content=outbound_message(notes), headers=SOAP
        )
        assert resp.status_code == 200, resp.text
        assert "<Ack>true</Ack>" in resp.text
        return [self.job_for(INVOICE_IDS[label]) for label in labels]

    def submit(self, label: str, requester: str = "ap-clerk@corp.example") -> str:
        """Start a job for a seeded invoice through POST /v1/jobs; returns its id."""
        body = {
            "workflow": "invoice_exception",
            "external_id": f"AP-{label}",
            "requester": requester,
            "input": {"invoice_id": INVOICE_IDS[label]},
        }
        resp = httpx.post(f"{self.api}/v1/jobs", json=body, headers=ERP)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["job_id"])

    def jobs_about(self, record_id: str) -> list[dict[str, Any]]:
        """The jobs about one Salesforce record, as GET /v1/jobs lists them."""
        resp = httpx.get(
            f"{self.api}/v1/jobs", params={"workflow": "invoice_exception"}, headers=FINANCE
        )
        resp.raise_for_status()
        return [j for j in resp.json() if j["external_id"] == record_id]

    def job_for(self, record_id: str) -> str:
        [job] = self.jobs_about(record_id)
        return str(job["id"])

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        """The Salesforce writes that changed state: (record id, fields), oldest first."""
        return [
            (w["path"].rsplit("/", 1)[1], w["body"]) for w in self.sandbox.applied("salesforce")
        ]


def invoice(label: str) -> dict[str, Any]:
    """The invoice as Salesforce (the sandbox) holds it now, read through the REST adapter."""
    return salesforce_api.get_record(INVOICE, INVOICE_IDS[label])


def untouched(label: str) -> None:
    record = invoice(label)
    assert (record["Status__c"], record["Hold_Reason__c"]) == ("Exception", None), record


def step_statuses(detail: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["step_id"], s["tool"], s["status"]) for s in detail["steps"]]


@pytest.fixture
def fleet(
    pg_env: dict[str, str],
    sandbox: Sandbox,
    start_worker: Callable[..., Proc],
    start_api: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> Fleet:
    """API, one worker and the sandbox, with the finance keys and the Salesforce org id."""
    monkeypatch.setenv("OPSGATE_API_KEYS", KEYS)
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", ORG_15)
    reset_process_state()
    start_worker()
    return Fleet(start_api(), sandbox)


def approve_inv_1001(fleet: Fleet) -> str:
    """INV-1001 delivered, escalated for approval, approved, completed; returns its job id."""
    [job_id] = fleet.deliver("INV-1001")
    escalation = fleet.escalated(job_id, "approval_required")
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 200
    assert fleet.settle(job_id)["status"] == lifecycle.COMPLETED
    return job_id


# --- completed on their own: holds ----------------------------------------------------------


def test_mismatches_are_put_on_hold_with_the_reason_and_nothing_else(fleet: Fleet) -> None:
    # Given INV-1002 (880 against an 800 order) and INV-1006 (its order is Closed) in one
    # Outbound Message, and INV-1005 (vendor not allowlisted) from the ERP over the jobs API
    mismatch, closed = fleet.deliver("INV-1002", "INV-1006")
    vendor = fleet.submit("INV-1005")

    # Then each job completes on its own with one hold written to its own invoice
    for job_id in (mismatch, closed, vendor):
        detail = fleet.settle(job_id)
        assert detail["status"] == lifecycle.COMPLETED, detail["escalation"]
        assert step_statuses(detail) == [("s1", "salesforce.update_invoice", "succeeded")]
        assert detail["escalation"] is None and not detail["incident"]
    held = {
        label: invoice(label)["Hold_Reason__c"] for label in ("INV-1002", "INV-1005", "INV-1006")
    }
    assert all(invoice(label)["Status__c"] == "On Hold" for label in held)
    assert held["INV-1002"].startswith("Invoice amount 880.00 USD differs from purchase order")
    assert "PO-5002" in held["INV-1002"] and "800.00 USD" in held["INV-1002"]
    assert held["INV-1005"] == "Vendor Umbrella Corp is not on the approved vendor list"
    assert held["INV-1006"] == "Purchase order PO-5004 is Closed, not Open"
    assert sorted(fleet.writes(), key=lambda w: w[0]) == sorted(
        (
            (INVOICE_IDS[label], {"Status__c": "On Hold", "Hold_Reason__c": reason})
            for label, reason in held.items()
        ),
        key=lambda w: w[0],
    )
    # And the purchase order links are as they were
    assert all(
        invoice(label)["Purchase_Order__c"] == before
        for label, before in (
            ("INV-1002", PURCHASE_ORDER_IDS["PO-5002"]),
            ("INV-1005", None),
            ("INV-1006", PURCHASE_ORDER_IDS["PO-5004"]),
        )
    )


def test_a_redelivered_message_creates_nothing_new(fleet: Fleet) -> None:
    # Given INV-1002's Outbound Message, delivered and held
    [job_id] = fleet.deliver("INV-1002")
    assert fleet.settle(job_id)["status"] == lifecycle.COMPLETED

    # When Salesforce delivers the same notification again (it retries until it sees an Ack)
    [again] = fleet.deliver("INV-1002")

    # Then it is acknowledged, names the same job, and nothing more is written
    assert again == job_id
    assert len(fleet.jobs_about(INVOICE_IDS["INV-1002"])) == 1
    assert fleet.job(job_id)["status"] == lifecycle.COMPLETED
    assert len(fleet.writes()) == 1
    assert [w["outcome"] for w in fleet.sandbox.ledger(system="salesforce")] == ["applied"]


# --- approval_required, then the reviewer decides -------------------------------------------


def test_approval_required_then_approved_runs_the_approval_exactly_once(fleet: Fleet) -> None:
    # Given INV-1001, which matches its open order PO-5001
    [job_id] = fleet.deliver("INV-1001")

    # Then approving the payment waits for a person, with the evidence, and nothing is written
    escalation = fleet.escalated(job_id, "approval_required")
    evidence = escalation["evidence"]
    assert (evidence["tool"], evidence["step_id"]) == ("salesforce.approve_payment", "s1")
    assert evidence["rule"] == "irreversible_needs_approval" and evidence["policy_version"]
    assert fleet.writes() == []
    untouched("INV-1001")

    # When a finance reviewer approves
    resp = fleet.decide(escalation, {"decision": "approve", "note": "matches PO-5001"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["approvers"] == ["key:finance"]

    # Then the approval runs once, under the token, and the invoice reads Approved
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.COMPLETED and not detail["incident"]
    assert step_statuses(detail) == [("s1", "salesforce.approve_payment", "succeeded")]
    assert fleet.writes() == [(INVOICE_IDS["INV-1001"], {"Status__c": "Approved"})]
    record = invoice("INV-1001")
    assert record["Status__c"] == "Approved" and Decimal(str(record["Amount__c"])) == 1200
    # And the escalation is closed: a second decision is refused
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 409
    assert len(fleet.writes()) == 1


def test_rejected_approval_ends_the_job_and_writes_nothing(fleet: Fleet) -> None:
    # Given INV-1001 waiting for approval
    [job_id] = fleet.deliver("INV-1001")
    escalation = fleet.escalated(job_id, "approval_required")

    # When the reviewer rejects it (a reason code is required)
    assert fleet.decide(escalation, {"decision": "reject"}).status_code == 422
    resp = fleet.decide(
        escalation,
        {"decision": "reject", "reason_code": "wrong_action", "note": "vendor asked to hold"},
    )

    # Then the job is rejected, and Salesforce received no write at all
    assert resp.status_code == 200 and resp.json()["job_status"] == lifecycle.REJECTED
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.REJECTED
    assert detail["escalation"]["decision"] == "reject"
    assert detail["escalation"]["decided_by"] == "key:finance"
    assert fleet.sandbox.ledger(system="salesforce") == []
    untouched("INV-1001")


def test_missing_order_is_linked_then_the_approved_payment_runs(fleet: Fleet) -> None:
    # Given INV-1003: no purchase order, and PO-5003 is its vendor's only matching open order
    [job_id] = fleet.deliver("INV-1003")

    # Then the two-step plan (link PO-5003, approve) waits for approval before any step runs
    escalation = fleet.escalated(job_id, "approval_required")
    assert escalation["evidence"]["step_id"] == "s2"
    assert escalation["evidence"]["tool"] == "salesforce.approve_payment"
    detail = fleet.job(job_id)
    assert step_statuses(detail) == [
        ("s1", "salesforce.update_invoice", "pending"),
        ("s2", "salesforce.approve_payment", "pending"),
    ]
    assert detail["steps"][0]["args"]["fields"] == {
        "Purchase_Order__c": PURCHASE_ORDER_IDS["PO-5003"]
    }
    assert fleet.writes() == []

    # When the reviewer approves
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 200

    # Then the order is linked, then the payment approved, each once, in that order
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.COMPLETED, detail["escalation"]
    assert fleet.writes() == [
        (INVOICE_IDS["INV-1003"], {"Purchase_Order__c": PURCHASE_ORDER_IDS["PO-5003"]}),
        (INVOICE_IDS["INV-1003"], {"Status__c": "Approved"}),
    ]
    record = invoice("INV-1003")
    assert record["Purchase_Order__c"] == PURCHASE_ORDER_IDS["PO-5003"]
    assert record["Status__c"] == "Approved"


def test_duplicate_number_is_held_once_the_first_invoice_is_approved(fleet: Fleet) -> None:
    # Given INV-1001 approved and paid out
    approve_inv_1001(fleet)

    # When INV-1004, a second record numbered INV-1001, is flagged
    [job_id] = fleet.deliver("INV-1004")

    # Then it is put on hold as a duplicate, naming the approved record, never approved
    detail = fleet.settle(job_id)
    assert detail["status"] == lifecycle.COMPLETED, detail["escalation"]
    assert step_statuses(detail) == [("s1", "salesforce.update_invoice", "succeeded")]
    record = invoice("INV-1004")
    assert record["Status__c"] == "On Hold"
    assert record["Hold_Reason__c"] == (
        f"Duplicate of invoice INV-1001 already Approved ({INVOICE_IDS['INV-1001']})"
    )
    assert fleet.writes() == [
        (INVOICE_IDS["INV-1001"], {"Status__c": "Approved"}),
        (
            INVOICE_IDS["INV-1004"],
            {"Status__c": "On Hold", "Hold_Reason__c": record["Hold_Reason__c"]},
        ),
    ]


# --- stops before any write -----------------------------------------------------------------


def test_an_already_paid_invoice_goes_to_a_person_as_planner_requested(fleet: Fleet) -> None:
    # Given INV-1007, already Paid
    [job_id] = fleet.deliver("INV-1007")

    # Then the planner itself asks for a person, and nothing is written
    escalation = fleet.escalated(job_id, "planner_requested")
    assert escalation["detail"] == "invoice is already Paid: nothing to do"
    assert escalation["stage"] == "plan"
    assert fleet.job(job_id)["steps"] == []
    assert fleet.sandbox.ledger(system="salesforce") == []
    assert invoice("INV-1007")["Status__c"] == "Paid"


def test_an_edit_to_a_wrong_amount_fails_verification(fleet: Fleet) -> None:
    # Given INV-1001 (1200.00) waiting for approval
    [job_id] = fleet.deliver("INV-1001")
    escalation = fleet.escalated(job_id, "approval_required")

    # When the reviewer edits the approval to 1100.00 and approves that
    edited = {"invoice_id": INVOICE_IDS["INV-1001"], "amount": "1100.00"}
    resp = fleet.decide(escalation, {"decision": "edit", "args": edited})
    assert resp.status_code == 200, resp.text

    # Then the edited step is verified again against the invoice, and refused
    failed = fleet.escalated(job_id, "verification_failed")
    evidence = failed["evidence"]
    assert evidence["rule"] == "amount_matches_invoice"
    assert (evidence["amount"], Decimal(evidence["invoice_amount"])) == ("1100.00", 1200)
    detail = fleet.job(job_id)
    assert detail["steps"][0]["revision"] == 2 and detail["steps"][0]["status"] == "pending"
    assert fleet.sandbox.ledger(system="salesforce") == []
    untouched("INV-1001")


def test_a_record_that_changed_after_planning_fails_verification(fleet: Fleet) -> None:
    # Given INV-1001 and INV-1004 (same number) both planned for approval
    first, duplicate = fleet.deliver("INV-1001", "INV-1004")
    first_escalation = fleet.escalated(first, "approval_required")
    duplicate_escalation = fleet.escalated(duplicate, "approval_required")

    # When INV-1001 is approved and paid, then a reviewer approves INV-1004's plan too
    assert fleet.decide(first_escalation, {"decision": "approve"}).status_code == 200
    assert fleet.settle(first)["status"] == lifecycle.COMPLETED
    assert fleet.decide(duplicate_escalation, {"decision": "approve"}).status_code == 200

    # Then the re-check against the records refuses to pay the same number twice
    failed = fleet.escalated(duplicate, "verification_failed")
    evidence = failed["evidence"]
    assert evidence["rule"] == "invoice_number_unpaid"
    assert (evidence["other_invoice_id"], evidence["other_status"]) == (
        INVOICE_IDS["INV-1001"],
        "Approved",
    )
    assert fleet.writes() == [(INVOICE_IDS["INV-1001"], {"Status__c": "Approved"})]
    untouched("INV-1004")


# --- a write Salesforce acknowledged but did not keep -----------------------------------------


def incidents_from_the_cli() -> list[dict[str, Any]]:
    """`opsgate jobs list --incidents --json`, run as an operator would."""
    out = subprocess.run(
        [sys.executable, "-m", "app", "jobs", "list", "--incidents", "--json"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(out.stdout))


def test_a_lost_hold_is_an_outcome_mismatch_and_an_incident(fleet: Fleet) -> None:
    # Given Salesforce acknowledges every write without keeping it
    fleet.faults(system="salesforce", lost_write_rate=1.0)

    # When INV-1002 is flagged (a hold: no approval needed)
    [job_id] = fleet.deliver("INV-1002")

    # Then the read-back after the write catches it: outcome_mismatch, and an incident
    escalation = fleet.escalated(job_id, "outcome_mismatch")
    evidence = escalation["evidence"]
    assert (evidence["tool"], evidence["rule"]) == (
        "salesforce.update_invoice",
        "invoice_fields_match",
    )
    assert evidence["differ"]["Status__c"] == {"wanted": "On Hold", "found": "Exception"}
    assert escalation["stage"] == "verify_outcome"
    assert fleet.job(job_id)["incident"] is True
    # And the sandbox's ledger tells the truth: one write received, none applied
    [write] = fleet.sandbox.ledger(system="salesforce")
    assert (write["outcome"], write["fault"], write["status_code"]) == ("noop", "lost_write", 204)
    assert fleet.writes() == []
    untouched("INV-1002")
    # And ops find it among the incidents, over the API and on the command line
    listed = httpx.get(f"{fleet.api}/v1/jobs", params={"incident": "true"}, headers=OPS).json()
    assert [j["id"] for j in listed] == [job_id]
    assert [(j["id"], j["escalation_reason"]) for j in incidents_from_the_cli()] == [
        (job_id, "outcome_mismatch")
    ]


def test_a_lost_second_write_after_a_kept_first_one_is_partial(fleet: Fleet) -> None:
    # Given INV-1003's two-step plan approved while approvals are switched off, so the job
    # stops between its two writes
    [job_id] = fleet.deliver("INV-1003")
    escalation = fleet.escalated(job_id, "approval_required")
    switch = {"engaged": True, "tool": "salesforce.approve_payment", "reason": "drill"}
    assert httpx.post(f"{fleet.api}/v1/killswitch", json=switch, headers=OPS).status_code == 200
    assert fleet.decide(escalation, {"decision": "approve"}).status_code == 200

    def parked_or_settled() -> dict[str, Any] | None:
        detail = fleet.job(job_id)
        return detail if detail["status"] in SETTLED | {lifecycle.PAUSED} else None

    detail = wait_for(parked_or_settled, timeout=90, what="the job to park before its second write")
    assert detail["status"] == lifecycle.PAUSED, detail["escalation"]
    assert fleet.writes() == [
        (INVOICE_IDS["INV-1003"], {"Purchase_Order__c": PURCHASE_ORDER_IDS["PO-5003"]})
    ]

    # When Salesforce starts losing writes and the switch is released
    fleet.faults(system="salesforce", lost_write_rate=1.0)
    release = dict(switch, engaged=False)
    assert httpx.post(f"{fleet.api}/v1/killswitch", json=release, headers=OPS).status_code == 200

    # Then the job stops as partial, naming the kept step and the original reason
    stopped = fleet.escalated(job_id, "partial")
    evidence = stopped["evidence"]
    assert evidence["original_reason"] == "outcome_mismatch"
    assert [s["step"] for s in evidence["completed_steps"]] == ["s1"]
    assert evidence["rule"] == "invoice_approved"
    assert fleet.job(job_id)["incident"] is True
    record = invoice("INV-1003")
    assert record["Purchase_Order__c"] == PURCHASE_ORDER_IDS["PO-5003"]
    assert record["Status__c"] == "Exception"
    assert [(w["outcome"], w["fault"]) for w in fleet.sandbox.ledger(system="salesforce")] == [
        ("applied", None),
        ("noop", "lost_write"),
    ]
