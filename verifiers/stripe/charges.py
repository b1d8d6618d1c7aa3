"""What a refund's verifiers and the refunds planner both need to know about Stripe charges:
their age, their twins (a double charge) and whether a ticket says it was charged twice."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from verifiers import config

# "I was charged twice" and its kin in English, German, French and Spanish.
_DOUBLE_CHARGE = re.compile(
    r"|".join(
        (
            # en
            r"\b(?:charged|billed|debited)\s+(?:me\s+)?(?:twice|two times|double)\b",
            r"\bdouble[- ]?(?:charged|billed|charge|payment)\b",
            r"\bduplicate(?:d)?\s+(?:charge|payment|transaction)s?\b",
            r"\btwo\s+(?:identical\s+)?charges\b",
            # de
            r"\b(?:doppelt|zweimal|zwei\s?mal)\s+(?:\w+\s+)?(?:belastet|abgebucht|berechnet|bezahlt)",
            r"\bdoppelte\s+(?:abbuchung|belastung|zahlung|rechnung)",
            # fr
            r"\b(?:débité|facturé|prélevé|payé)e?s?\s+deux\s+fois\b",
            r"\bdouble\s+(?:prélèvement|débit|facturation|paiement)\b",
            r"\bdeux\s+(?:prélèvements|débits)\b",
            # es
            r"\b(?:cobrado|cobraron|cobró|cargado|cargaron)\s+(?:\w+\s+)?(?:dos\s+veces|doble)\b",
            r"\b(?:cargo|cobro|pago)\s+duplicado\b",
            r"\bdoble\s+(?:cargo|cobro|pago)\b",
        )
    ),
    re.IGNORECASE,
)
DAY = 86_400


def claims_double_charge(text: str) -> bool:
    """Whether the text says the customer was charged twice (EN, DE, FR, ES)."""
    return bool(_DOUBLE_CHARGE.search(text or ""))


def ticket_text(ticket: dict[str, Any] | None) -> str:
    """The requester's words on a ticket: subject and description."""
    ticket = ticket or {}
    return f"{ticket.get('subject') or ''}\n{ticket.get('description') or ''}"


def created_at(charge: dict[str, Any]) -> datetime | None:
    """The charge's creation time (Stripe's `created`, unix seconds) in UTC."""
    created = charge.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        return None
    return datetime.fromtimestamp(created, UTC)


def age_days(charge: dict[str, Any], now: datetime | None = None) -> float | None:
    """How many days ago the charge was made (None when Stripe gave no `created`)."""
    created = created_at(charge)
    if created is None:
        return None
    return ((now or datetime.now(UTC)) - created).total_seconds() / DAY


def twins(charge: dict[str, Any], others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The customer's other charges with the same amount and currency, made within the
    double-charge window of this one (config/verifiers.yaml refund.duplicate_within_days)."""
    window = config.current().refund.duplicate_within_days * DAY
    created = charge.get("created")
    if not isinstance(created, int) or not charge.get("customer"):
        return []
    return [
        c
        for c in others
        if c.get("id") != charge.get("id")
        and c.get("customer") == charge.get("customer")
        and c.get("amount") == charge.get("amount")
        and str(c.get("currency")).lower() == str(charge.get("currency")).lower()
        and isinstance(c.get("created"), int)
        and abs(c["created"] - created) <= window
    ]


def expected_reason(text: str, charge: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """`duplicate` when the ticket says charged twice and the charges show it, else
    `requested_by_customer` (`fraudulent` is never the agent's: suspected fraud escalates)."""
    if claims_double_charge(text) and twins(charge, others):
        return "duplicate"
    return "requested_by_customer"
