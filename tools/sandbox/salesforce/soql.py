"""The SOQL subset the sandbox answers: SELECT fields FROM object [WHERE a = x [AND ...]] [LIMIT n].

Values are 'quoted strings', numbers, dates (2024-05-01, unquoted as in SOQL), true/false and
null; the operators are `=` and `!=`. Anything else is MALFORMED_QUERY, as Salesforce says it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<date>\d{4}-\d\d-\d\d)(?![\w:])
      | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
      | (?P<name>[A-Za-z_][\w.]*)
      | (?P<op>!=|<>|=)
      | (?P<comma>,)
      | (?P<other>\S+)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_KEYWORDS = {"select", "from", "where", "and", "limit"}


class MalformedQuery(Exception):
    """The query does not parse; the message is what Salesforce puts in MALFORMED_QUERY."""


@dataclass(frozen=True)
class Literal:
    """A value in a WHERE condition, with whether it was a quoted string (SOQL cares)."""

    value: Any
    quoted: bool = False


@dataclass(frozen=True)
class Condition:
    """`field op value`."""

    field: str
    op: str
    value: Literal


@dataclass
class Query:
    """A parsed query; field and object names as written (resolved case-insensitively later)."""

    fields: list[str]
    sobject: str
    where: list[Condition] = field(default_factory=list)
    limit: int | None = None


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kind is the matching group's name."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:  # only trailing whitespace is left
            break
        kind = match.lastgroup or "other"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    """A recursive-descent parser over the token list."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise MalformedQuery("unexpected token: <EOF>")
        self.pos += 1
        return token

    def unexpected(self, token: tuple[str, str]) -> MalformedQuery:
        return MalformedQuery(f"unexpected token: '{token[1]}'")

    def keyword(self, word: str) -> bool:
        """Consume the keyword if it is next."""
        token = self.peek()
        if token is not None and token[0] == "name" and token[1].lower() == word:
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            token = self.take()
            raise self.unexpected(token)

    def name(self) -> str:
        token = self.take()
        if token[0] != "name" or token[1].lower() in _KEYWORDS:
            raise self.unexpected(token)
        return token[1]

    def literal(self) -> Literal:
        kind, text = self.take()
        if kind == "string":
            body = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])
            return Literal(body, quoted=True)
        if kind == "number":
            return Literal(float(text) if "." in text else int(text))
        if kind == "date":
            return Literal(text)
        if kind == "name" and text.lower() in ("true", "false", "null"):
            return Literal({"true": True, "false": False, "null": None}[text.lower()])
        raise self.unexpected((kind, text))

    def condition(self) -> Condition:
        name = self.name()
        kind, op = self.take()
        if kind != "op":
            raise self.unexpected((kind, op))
        return Condition(name, "!=" if op == "<>" else op, self.literal())

    def parse(self) -> Query:
        self.expect_keyword("select")
        fields = [self.name()]
        while self.peek() is not None and self.peek() == ("comma", ","):
            self.pos += 1
            fields.append(self.name())
        self.expect_keyword("from")
        query = Query(fields, self.name())
        if self.keyword("where"):
            query.where.append(self.condition())
            while self.keyword("and"):
                query.where.append(self.condition())
        if self.keyword("limit"):
            kind, text = self.take()
            if kind != "number" or not text.isdigit():
                raise self.unexpected((kind, text))
            query.limit = int(text)
        token = self.peek()
        if token is not None:
            raise self.unexpected(token)
        return query


def parse(text: str) -> Query:
    """Parse a query of the supported subset; raises MalformedQuery."""
    if not text.strip():
        raise MalformedQuery("unexpected token: <EOF>")
    return _Parser(text).parse()
