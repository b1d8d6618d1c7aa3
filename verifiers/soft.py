"""The soft check's deterministic scorer: how well the plan's rationale is grounded.

After every deterministic rule has passed, the soft check asks whether the plan is what
the request, the record history and the policy text support. A model judges when one is
configured (app/llm/judge.py), but this scorer always runs and the judge can only lower its
confidence (app/stages/soft_check.py). It starts at 1.0 and subtracts each missing signal's
penalty; a weak signal (no policy passage found) costs a little. A critical signal (a charge
the ticket never names, an amount it does not state, a payer who is not the requester, a
target that is not the job's, a ticket that does not ask for the refund, a request taken
back; an unstated amount passes only as what is left on a charge whose money is asked
back) vetoes the plan on its own, whatever the confidence and whatever a model judge says.

One signal per class, like the rules: adding a signal is adding a class and a line in
SIGNALS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NotRequired, TypedDict

from app.core.money import to_minor
from app.llm import retrieval
from app.reading.amount_roles import requested_amounts
from app.reading.amounts import find_amounts
from app.reading.language import money_back, request_intent, strip_quoted

# Identifiers a rationale might name: charges, Okta users and groups, Salesforce records,
# invoice and order numbers, tickets, e-mail addresses.
_IDS = re.compile(
    r"\b(ch_[A-Za-z0-9_]+|00[ug][A-Za-z0-9]{17}|a0[12][A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?|"
    r"INV-\d+|PO-\d+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)\b"
)


@dataclass(frozen=True)
class HistoryEvent:
    """Something that already happened to the job's subject (another job, a comment)."""

    kind: str
    detail: str
    conflicting: bool


class ProposedStep(TypedDict):
    """A plan step as the soft check weighs it and the judge reads it (sent as JSON)."""

    tool: str
    args: dict[str, Any]
    rationale: NotRequired[str]
    evidence: NotRequired[list[str]]


@dataclass
class SoftEvidence:
    """Everything the soft check judges: the request, the plan, the history, the facts."""

    workflow: str
    job_input: dict[str, Any]
    requester: str
    request_text: str
    context: Mapping[str, Any]
    summary: str
    steps: list[ProposedStep]
    history: list[HistoryEvent] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    # The workflow's policy document (config/policies/<doc>.md) and the signals that apply to
    # its plans beyond the general ones (both declared by its module, app/workflows/).
    policy_doc: str = ""
    signals: frozenset[str] = frozenset()

    def known_text(self) -> str:
        """The request, the records read and the plan's arguments, as one searchable text."""
        args = [s["args"] for s in self.steps]
        return "\n".join(
            [
                self.request_text,
                json.dumps(self.context, default=str),
                json.dumps(self.job_input, default=str),
                json.dumps(args, default=str),
            ]
        )

    def writes(self, tool: str) -> list[dict[str, Any]]:
        """The arguments of every step calling `tool`."""
        return [s["args"] for s in self.steps if s["tool"] == tool]


@dataclass(frozen=True)
class Observation:
    """One signal's finding."""

    signal: str
    ok: bool
    detail: str
    penalty: float
    critical: bool = False


@dataclass(frozen=True)
class Score:
    """The scorer's confidence with the observation behind every point lost."""

    confidence: float
    observations: list[Observation]

    def reasons(self) -> list[str]:
        """What lowered the score, or what held, in words."""
        missing = [o.detail for o in self.observations if not o.ok]
        return missing or ["every signal holds: " + ", ".join(o.signal for o in self.observations)]


class Signal:
    """One piece of grounding; `observe` says whether it holds and why."""

    name = "signal"
    penalty = 0.1
    # A general signal weighs every plan; the others only the plans of a workflow that names
    # them (app/workflows/<name>.py `signals`, carried in SoftEvidence.signals).
    general = True
    # A critical signal that does not hold vetoes the plan alone (no confidence outweighs it).
    critical = False

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        """Whether the signal holds for this plan, and a sentence saying so."""
        raise NotImplementedError


class ChargeNamed(Signal):
    """Every refunded charge is named in the ticket."""

    name, penalty = "charge_named", 0.3
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        missing = [
            a["charge_id"]
            for a in ev.writes("stripe.refund")
            if a["charge_id"] not in ev.request_text
        ]
        if missing:
            return False, f"the ticket does not name charge {', '.join(missing)}"
        return True, "the ticket names the charge"


class AmountStated(Signal):
    """Every refund's amount and currency is one the ticket states: in the requester's own
    words when they state one (quoted or forwarded history is not the ask, as the rules tier
    reads it), else anywhere in the ticket (an offer quoted below a "yes, go ahead"). Of
    several amounts in the requester's words, the one asked back when the words leave no
    doubt ("I paid $60.00 ... please refund $30.00": `app.reading.amount_roles`). When the
    ticket states no amount at all, refunds.md (Amounts) refunds what is left on the charge if
    the requester asks for their money back: that one amount, and no other, is accepted."""

    name, penalty = "amount_stated", 0.2
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        own = requested_amounts(strip_quoted(ev.request_text))
        stated = {(a.minor, a.currency) for a in own or find_amounts(ev.request_text)}
        if not stated and ev.writes("stripe.refund"):
            return _what_is_left_asked_back(ev)
        if len(stated) > 1 and ev.writes("stripe.refund"):
            # Two amounts in one request (or one planted by injected text): which one the
            # customer means is for a person to read, whichever one the plan took.
            return False, f"the ticket states several amounts {sorted(stated)}"
        for args in ev.writes("stripe.refund"):
            if (args["amount"], args["currency"]) not in stated:
                return False, (
                    f"the ticket does not state {args['amount']} {args['currency']} "
                    f"(it states {sorted(stated) or 'no amount'})"
                )
        return True, "the ticket states the amount"


def _what_is_left_asked_back(ev: SoftEvidence) -> tuple[bool, str]:
    """No amount stated: the plan's one refund must be exactly what remains refundable on the
    named charge as read (amount - amount_refunded, in its currency), the charge must be the
    requester's own, and the requester must ask for their money back, or what is left, as a
    whole (`app.reading.language.money_back`: a request, no part of the charge named)."""
    writes = ev.writes("stripe.refund")
    asked = money_back(ev.request_text)
    if asked is None or len(writes) != 1:
        return False, "the ticket states no amount and does not ask for the money back as a whole"
    args, charge = writes[0], ev.facts.get("charge") or {}
    if charge.get("id") != args["charge_id"] or not _requester_paid(ev):
        return False, "the ticket states no amount, and the charge read is not the requester's"
    left = int(charge.get("amount") or 0) - int(charge.get("amount_refunded") or 0)
    currency = str(charge.get("currency") or "").lower()
    if left <= 0 or (args["amount"], str(args["currency"]).lower()) != (left, currency):
        return False, (
            f"the ticket states no amount; {args['amount']} {args['currency']} is not the "
            f"{left} {currency} left on {args['charge_id']}"
        )
    return True, f'the ticket asks for the money back ("{asked[:160]}"): the {left} {currency} left'


def _requester_paid(ev: SoftEvidence) -> bool:
    """Whether the ticket's requester paid the charge read (its receipt or billing e-mail)."""
    charge, requester = ev.facts.get("charge"), ev.facts.get("requester")
    if not charge or not requester:
        return False
    email = (requester.get("email") or "").lower()
    payers = {
        (e or "").lower()
        for e in (charge.get("receipt_email"), (charge.get("billing_details") or {}).get("email"))
    }
    return bool(email) and email in payers


class RequestAsks(Signal):
    """The ticket explicitly and unconditionally asks for the refund, on the same reading as
    the rules tier (`app.reading.language.request_intent`): a question, a condition or a
    complaint is not an ask, whoever planned the refund."""

    name, penalty = "request_asks", 0.3
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        if not ev.writes("stripe.refund"):
            return True, "no refund in the plan"
        intent = request_intent(ev.request_text)
        if not intent.requested:
            said = f': "{intent.sentence[:160]}"' if intent.sentence else ""
            return False, f"the ticket does not ask for a refund (it is a {intent.kind}){said}"
        return True, f'the ticket asks for the refund: "{intent.sentence[:160]}"'


class RequesterIsPayer(Signal):
    """The ticket's requester paid the charge."""

    name, penalty = "requester_is_payer", 0.3
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        if not ev.writes("stripe.refund"):
            return True, "no refund in the plan"
        if not ev.facts.get("charge") or not ev.facts.get("requester"):
            return False, "the charge's payer or the ticket's requester could not be read"
        if not _requester_paid(ev):
            return False, "the ticket's requester is not the charge's payer"
        return True, "the requester paid the charge"


class TargetIsTheJobs(Signal):
    """Every write targets the record or account the job is about."""

    name, penalty = "target_is_the_jobs", 0.4
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        wanted_invoice = str(ev.job_input.get("invoice_id", ""))[:15]
        target = ev.context.get("target") or {}
        for step in ev.steps:
            args = step["args"]
            if "invoice_id" in args and str(args["invoice_id"])[:15] != wanted_invoice:
                return False, f"{step['tool']} targets invoice {args['invoice_id']}, not the job's"
            if "user_id" in args and args["user_id"] != target.get("id"):
                return False, f"{step['tool']} targets user {args['user_id']}, not the job's target"
        return True, "every write targets the job's record"


_REQUEST_TOOLS = {
    "password_reset": "okta.reset_password",
    "group_access": "okta.add_to_group",
    "offboarding": "okta.suspend_user",
}


class ActionMatchesRequest(Signal):
    """The plan does what the service desk asked for, nothing else."""

    name, penalty = "action_matches_request", 0.4
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        asked = _REQUEST_TOOLS.get(str(ev.job_input.get("request_type")))
        tools = {s["tool"] for s in ev.steps if not s["tool"].endswith(("get_user",))}
        if tools != {asked}:
            kind = ev.job_input.get("request_type")
            return False, f"the request is a {kind}; the plan calls {sorted(tools)}"
        group = ev.job_input.get("group_id")
        if any(a.get("group_id") != group for a in ev.writes("okta.add_to_group")):
            return False, f"the plan grants a group other than the requested {group}"
        return True, "the plan does what was asked"


class AmountMatchesInvoice(Signal):
    """A payment approval is for exactly the invoice's amount."""

    name, penalty = "amount_matches_invoice", 0.4
    general = False
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        invoice = ev.context.get("invoice") or {}
        for args in ev.writes("salesforce.approve_payment"):
            try:
                same = Decimal(str(args["amount"])) == Decimal(str(invoice.get("Amount__c")))
            except InvalidOperation:
                same = False
            if not same:
                found = invoice.get("Amount__c")
                return False, f"approval of {args['amount']} differs from the invoice's {found}"
        return True, "amounts match the invoice"


class PolicySupports(Signal):
    """A passage of the workflow's policy speaks for each proposed action: one the step
    cites that exists, or one its rationale retrieves."""

    name, penalty = "policy_supports", 0.1

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        doc = ev.policy_doc
        known = {p.id for p in retrieval.all_passages() if p.id.startswith(f"policy:{doc}#")}
        for step in ev.steps:
            cited = known & set(step.get("evidence") or [])
            found = [p.id for p in retrieval.retrieve(step.get("rationale", "")) if p.id in known]
            if not cited and not found:
                return False, f"no passage of policy:{doc} supports {step['tool']}"
        return True, f"policy:{doc} supports the actions"


class HistoryClear(Signal):
    """Nothing in the subject's history conflicts with the plan (done before, taken back)."""

    name, penalty = "history_clear", 0.4
    critical = True

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        conflicts = [e.detail for e in ev.history if e.conflicting]
        if conflicts:
            return False, "the history conflicts: " + "; ".join(conflicts[:3])
        return True, "no conflicting event in the history"


class RationaleConsistent(Signal):
    """Every identifier and amount the plan's words mention is one the request or records hold."""

    name, penalty = "rationale_consistent", 0.3

    def observe(self, ev: SoftEvidence) -> tuple[bool, str]:
        words = " ".join([ev.summary, *(s.get("rationale", "") for s in ev.steps)])
        known = ev.known_text()
        strangers = sorted({i for i in _IDS.findall(words) if i not in known})
        if strangers:
            return (
                False,
                f"the rationale names {', '.join(strangers)}, found in neither request nor records",
            )
        amounts = _known_amounts(ev, known)
        odd = [a for a in find_amounts(words) if (a.minor, a.currency) not in amounts]
        if odd:
            shown = [(a.minor, a.currency) for a in odd]
            return False, f"the rationale states amounts the request does not: {shown}"
        return True, "the rationale matches the request"


def _known_amounts(ev: SoftEvidence, known: str) -> set[tuple[int, str]]:
    found = {(a.minor, a.currency) for a in find_amounts(known)}
    for step in ev.steps:
        args = step["args"]
        if isinstance(args.get("amount"), int) and args.get("currency"):
            found.add((args["amount"], str(args["currency"]).lower()))
    # The charge as read: what it was, what was refunded before and what is left are amounts
    # the records hold ("20.00 EUR of the 45.00 EUR charge was refunded before").
    charge = ev.context.get("charge") or ev.facts.get("charge") or {}
    if isinstance(charge.get("amount"), int) and charge.get("currency"):
        currency = str(charge["currency"]).lower()
        refunded = int(charge.get("amount_refunded") or 0)
        for held in (charge["amount"], refunded, charge["amount"] - refunded):
            found.add((held, currency))
    for record in (ev.context.get("invoice"), ev.context.get("purchase_order")):
        if record and record.get("Amount__c") is not None:
            currency = str(record.get("CurrencyIsoCode") or "usd").lower()
            try:
                found.add((to_minor(Decimal(str(record["Amount__c"])), currency), currency))
            except ValueError:
                continue  # an amount with more decimals than its currency has: states nothing
    return found


SIGNALS: list[Signal] = [
    ChargeNamed(),
    AmountStated(),
    RequestAsks(),
    RequesterIsPayer(),
    TargetIsTheJobs(),
    ActionMatchesRequest(),
    AmountMatchesInvoice(),
    PolicySupports(),
    HistoryClear(),
    RationaleConsistent(),
]


def score(ev: SoftEvidence) -> Score:
    """The deterministic confidence: 1.0 minus the penalty of every signal that does not hold."""
    observations = []
    for signal in SIGNALS:
        if not signal.general and signal.name not in ev.signals:
            continue
        ok, detail = signal.observe(ev)
        penalty = 0.0 if ok else signal.penalty
        observations.append(Observation(signal.name, ok, detail, penalty, signal.critical))
    confidence = max(0.0, 1.0 - sum(o.penalty for o in observations))
    return Score(round(confidence, 4), observations)
