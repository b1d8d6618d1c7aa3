"""Rules every write runs first, before any fact is read for it."""

from __future__ import annotations

from app.errors import PermanentError
from tools.catalog import get_tool
from verifiers.base import Facts, Rule, Verdict


class ArgumentsValid(Rule):
    """The step's arguments validate against the tool's argument model as they are now
    (a reviewer's edit or a stored plan alike)."""

    name = "arguments_valid"

    def check(self, facts: Facts) -> Verdict:
        try:
            get_tool(facts.tool).parse_args(facts.args)
        except PermanentError as exc:
            return self.failed(str(exc), tool=facts.tool)
        return self.passed("arguments validate", tool=facts.tool)


# Run before a tool's own chain (whose fact gathering relies on valid arguments).
COMMON_RULES: list[Rule] = [ArgumentsValid()]
