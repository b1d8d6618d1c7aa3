"""Salesforce record ids: the 15-character case-sensitive form and the 18-character form with
its case checksum. Pure functions at the bottom of the layers: settings checks an org id with
them and intake matches the ids a message carries."""

from __future__ import annotations

_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def to_18(id15: str) -> str:
    """The 18-character form of a 15-character Salesforce id (a case checksum appended)."""
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _CHECKSUM[bits]
    return id15 + suffix


def canonical_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character id; None if it is neither or corrupt.

    A 15-character id is case-sensitive. The 18-character form is case-safe: its suffix
    says which of the first 15 characters are capitals, so a copy whose case was lost (all
    lower or all upper) is restored from it; a mixed-case one must match its suffix."""
    if not (value.isascii() and value.isalnum()) or len(value) not in (15, 18):
        return None
    if len(value) == 15:
        return to_18(value)
    suffix = value[15:].upper()
    if value[:15] not in (value[:15].lower(), value[:15].upper()):
        full = to_18(value[:15])
        return full if full == value[:15] + suffix else None
    chars = []
    for n, code in enumerate(suffix):
        bits = _CHECKSUM.find(code)
        for i, ch in enumerate(value[5 * n : 5 * n + 5]):
            capital = bool(bits >> i & 1)
            if capital and not ch.isalpha():
                return None  # the suffix marks a digit as a capital: corrupt
            chars.append(ch.upper() if capital else ch.lower())
    full = "".join(chars) + suffix
    return full if to_18(full[:15]) == full else None
