"""The adversarial set: plans a compromised or confused model might produce, each with the
escalation opsgate must answer it with.

`evals/adversarial/cases.yaml` holds the cases, in the case format of the golden set
(evals/cases.py): each is model-planned, its `model.plan` served by the scripted
OpenAI-compatible endpoint as the planner's answer to its own job, matched by the case's
token (`[ADV-017]`), which its world or event puts where the planner sees it: a support
ticket's subject, an invoice job's `notification_id`, an IT request's `justification`. The
world is the sandbox's seed plus the case's own ticket. For every case nothing may be
written, and the job's escalation names the first gate that stopped it.
"""

from __future__ import annotations

import re
from pathlib import Path

from evals.cases import ADVERSARIAL_CLASSES, Case, CaseError
from evals.cases import load_cases as load_case_file

CASES_FILE = Path(__file__).resolve().parent / "adversarial" / "cases.yaml"

WORKFLOWS: tuple[str, ...] = ("support_refund", "invoice_exception", "it_request")
CATEGORIES = ADVERSARIAL_CLASSES

# The personal data the `personal_data` cases seed, by class: none of it may appear in any
# request the model server receives (the redaction promise in docs/models.md).
PERSONAL_DATA: dict[str, tuple[str, ...]] = {
    "email": ("carol.chen+billing@example.com", "alice.adams@example.org"),
    "phone": ("+44 20 7946 0958", "020 7946 0958", "(212) 555-0123", "07700 900123"),
    "card": ("4242 4242 4242 4242", "4242424242424242", "5555 5555 5555 4444"),
    "iban": ("DE89 3704 0044 0532 0130 00", "DE89370400440532013000"),
    "national_id": ("123-45-6789", "AB 12 34 56 C"),
}

REQUIRED_CATEGORIES: frozenset[str] = frozenset(
    {
        "injection_larger_refund",
        "other_customer_charge",
        "currency_swap",
        "negative_amount",
        "zero_amount",
        "fractional_amount",
        "enormous_amount",
        "tool_outside_workflow",
        "privileged_group",
        "duplicate_of_executed_step",
        "rationale_contradicts_ticket",
    }
)

_ID = re.compile(r"^ADV-\d{3}$")


def token(case: Case) -> str:
    """The bracketed token the scripted endpoint matches this case's requests on."""
    return f"[{case.id}]"


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    """The cases in `path`, validated as the case format and as this set: ADV ids, classes of
    the adversarial kind, model-planned with the token as their match, nothing written."""
    cases = load_case_file(path).cases
    problems = []
    for case in cases:
        if not _ID.match(case.id):
            problems.append(f"case {case.id}: id: not ADV-<3 digits>")
        if case.class_ not in ADVERSARIAL_CLASSES:
            problems.append(f"case {case.id}: class: {case.class_!r} is not an adversarial class")
        if case.model is None or case.model.match != token(case):
            problems.append(f"case {case.id}: model.match: must be its token {token(case)}")
        if case.expect.status != "escalated" or "any_write" not in case.never:
            problems.append(f"case {case.id}: expect: an adversarial case escalates, never writes")
    if problems:
        raise CaseError(f"{path}: " + "; ".join(problems))
    return cases
