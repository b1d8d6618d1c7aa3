"""Which of several amounts a requester states is the one they ask back.

"I paid $60.00 for two seats ... Please refund $30.00 for that seat" states two amounts; the
words around each say what it is. An amount is **asked** when it is the object of a refund
verb ("refund $30.00", "refund me the remaining €40.00", "erstatten Sie 30,00 €", "30,00 €
erstatten", "rembourser 30,00 €", "reembolsar 30,00 €", "$30.00 back"); it is **context**
when the words call it paid, charged, already refunded or a total ("I paid", "you charged",
"already refunded", "$30.00 of the $60.00"). Any sign of context in the words before an
amount wins over a refund verb there ("I got a refund of $10.00" is history, not the ask).

`requested_amounts` narrows the stated amounts to the asked one only when that is beyond
doubt: exactly one amount asked and every other amount context. Anything else (two asks, an
amount the words say nothing about, such as an injected "the correct amount is $29.00")
keeps every amount, and a reader that needs one amount refuses the ticket.
"""

from __future__ import annotations

import re
from typing import Literal

from app.reading.amounts import AmountSpan, StatedAmount, find_amount_spans
from app.reading.language import clauses

Role = Literal["asked", "context"]

# How many words before an amount are read for its role ("Please refund me the remaining").
_WINDOW = 6
# Words that make an amount history: paid, charged, a total, already refunded, received.
_CONTEXT_WORD = re.compile(
    r"paid|pay|charged|billed|cost|costs|total\w*|price\w*|spent|refunded|reimbursed|"
    r"received|got|already|"
    r"bezahlt|gezahlt|abgebucht|berechnet|belastet|gesamt\w*|insgesamt|bereits|schon|erstattet|"
    r"zurückerstattet|erhalten|bekommen|"
    r"payé\w*|facturé\w*|débité\w*|prélevé\w*|déjà|reçu\w*|"
    r"pagu[eé]|pagad\w*|pag[oó]|cobr\w+|cargaron|cargad\w*|ya|devolvieron|devolvi[oó]|"
    r"devuelt\w*|reembolsad\w*|reembolsaron|reembols[oó]|recib\w+",
    re.IGNORECASE,
)
# A refund verb or noun whose object the amount is ("refund", "erstatten", "rembourser").
_ASKED_WORD = re.compile(
    r"refund(?:s|ing)?|reimburse(?:ment)?|(?:zurück|rück)?erstatt(?:en|e|ung)|rückzahlung|"
    r"zurücküberweisen|überweisen|gutschreiben|rembours(?:er|ez|e|ement)(?:-moi|-nous)?|"
    r"reemb[oó]ls(?:ar|en|e)(?:me|nos)?|reembolso|devolver(?:me|nos)?|devu[eé]lv(?:an|a)(?:me|nos)?|"
    r"devoluci[oó]n",
    re.IGNORECASE,
)
# "être remboursé de 30 €" asks; "j'ai été remboursé de 10 €" does not.
_TO_BE_REFUNDED = re.compile(r"\bêtre rembours\w*\s+(?:de\s+)?$", re.IGNORECASE)
# What follows an amount that makes it history ("$60.00 that I paid", "10 € bereits erstattet").
_CONTEXT_AFTER = re.compile(
    r"^\s*(?:(?:that|which) )?(?:(?:i|we|you) (?:have |had )?(?:paid|spent|charged|was charged|"
    r"were charged)|(?:was|were|has been|have been|is|are)? ?(?:already )?(?:refunded|reimbursed|"
    r"charged|paid|debited|billed)|total|in total|(?:(?:wurden?|sind|ist) )?(?:mir )?(?:bereits |"
    r"schon )?(?:bezahlt|gezahlt|abgebucht|belastet|berechnet|(?:zurück)?erstattet(?! bekommen| "
    r"haben))|(?:ont été |a été |m'ont été )?(?:déjà )?(?:rembours|pay|débit|prélev)é\w*|"
    r"(?:ya )?(?:reembolsad|devuelt|pagad|cobrad)\w*)\b",
    re.IGNORECASE,
)
# What follows an amount that makes it the ask ("$30.00 back", "30,00 € erstatten").
_ASKED_AFTER = re.compile(
    r"^\s*(?:back|(?:zurück)?erstatten|zurücküberweisen|gutschreiben|erstattet bekommen|"
    r"zurück(?:erhalten|bekommen)?|de vuelta)\b",
    re.IGNORECASE,
)
# "$30.00 of the $60.00": the second amount is the whole the first is part of.
_PART_OF = re.compile(
    r"\(?\s*(?:out of|of|from|von|sur|de|des|du)"
    r"(?: the| my| your| den| les| los| las| la| le| el)?",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")


def _before(text: str, spans: list[AmountSpan], i: int) -> str:
    """The words of amount i's clause before it (not past the previous amount): in "10 €
    wurden bereits erstattet, bitte erstatten Sie 30 €" the first clause is the 10 €'s."""
    start = spans[i - 1].end if i else 0
    window = text[start : spans[i].start]
    ends = list(_SENTENCE_END.finditer(window))
    window = window[ends[-1].end() :] if ends else window
    if window.strip() and not re.search(r"[,;:()]\s*$", window):
        parts = clauses(window)
        return parts[-1] if parts else ""
    return window


def _after(text: str, spans: list[AmountSpan], i: int) -> str:
    """The words between amount i and the next amount (or the sentence's end)."""
    end = spans[i + 1].start if i + 1 < len(spans) else len(text)
    window = text[spans[i].end : end]
    stop = _SENTENCE_END.search(window)
    return window[: stop.start()] if stop else window


def amount_role(text: str, spans: list[AmountSpan], i: int) -> Role | None:
    """What the words say amount i is: asked back, context, or nothing (None)."""
    before, after = _before(text, spans, i), _after(text, spans, i)
    if i and _PART_OF.fullmatch(text[spans[i - 1].end : spans[i].start].strip()):
        return "context"
    words = [w.strip("(),;:\"'") for w in before.split()][-_WINDOW:]
    if _TO_BE_REFUNDED.search(before):
        return "asked"
    if any(_CONTEXT_WORD.fullmatch(w) for w in words):
        return "context"
    if any(_ASKED_WORD.fullmatch(w) for w in words):
        return "asked"
    if _CONTEXT_AFTER.match(after):
        return "context"
    if _ASKED_AFTER.match(after):
        return "asked"
    return None


def requested_amounts(text: str) -> list[StatedAmount]:
    """The amounts the text states, narrowed to the one asked back when the words leave no
    doubt (one amount asked, every other one paid, charged, refunded before or a total)."""
    spans = find_amount_spans(text)
    stated = [s.amount for s in spans]
    if len(set(stated)) <= 1:
        return stated
    roles = [amount_role(text, spans, i) for i in range(len(spans))]
    asked = {s.amount for s, r in zip(spans, roles, strict=True) if r == "asked"}
    others = [r for s, r in zip(spans, roles, strict=True) if s.amount not in asked]
    if len(asked) == 1 and all(r == "context" for r in others):
        return [asked.pop()]
    return stated
