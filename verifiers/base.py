"""The shared shape of every verifier rule: one class, one check, one verdict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, TypeVar

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)
T = TypeVar("T")


class Reader(Protocol):
    """How a verifier reads the systems: a catalog read tool, or another named read. The
    stage's call recorder (app.controls.calls.CallRecorder) is one: it applies the kill
    switch, rate limit and breaker and records every call; verifiers need no more of it."""

    def tool(self, name: str, args: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        """Call the catalog tool `name` (a read) with `args`."""
        ...

    def read(self, name: str, args: dict[str, Any], fn: Callable[[], T]) -> T:
        """Run `fn`, a read that is not a catalog tool, recorded as `name`."""
        ...


class PlannedCall(Protocol):
    """A step of a plan as the plan rules see it: its id, its tool and the arguments (the
    stages' StoredStep is one)."""

    @property
    def step_id(self) -> str: ...

    @property
    def tool(self) -> str: ...

    @property
    def args(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EarlierWrite:
    """A write the plan makes before the step being judged."""

    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """A rule's answer: pass or fail, why, the values it compared, and how sure it is."""

    ok: bool
    rule: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    confidence: float = 1.0


class FactData(TypedDict, total=False):
    """What a chain's `gather` read from the systems, by the system that holds it; a record
    that does not exist is None (a rule then fails on it, never a KeyError)."""

    # Zendesk: the job's ticket, its requester (the user and the reference a rule compares)
    # and the thread.
    ticket: dict[str, Any]
    requester: dict[str, Any] | None
    requester_ref: str | None
    comments: list[dict[str, Any]]
    # Stripe: the charge a refund names and its customer's other charges.
    charge: dict[str, Any] | None
    customer_charges: list[dict[str, Any]]
    # Salesforce: the invoice, its purchase order, other invoices of the same number.
    invoice: dict[str, Any] | None
    purchase_order: dict[str, Any] | None
    same_number: list[dict[str, Any]]
    # Okta: the user acted on, the user a request names, the group and the user's groups.
    user: dict[str, Any] | None
    target: dict[str, Any] | None
    group: dict[str, Any] | None
    user_groups: list[dict[str, Any]] | None


@dataclass
class Facts:
    """What the verify stage read from the systems before judging a step."""

    tool: str
    args: dict[str, Any]
    job_input: dict[str, Any]
    data: FactData = field(default_factory=lambda: FactData())
    workflow: str = ""
    # The human the job is for (a Zendesk user ref, or the login a service desk vouches for).
    requester: str = ""
    # Whether a human's approval token covers this exact step (policy decided it needed one).
    approved: bool = False
    # The plan's earlier write steps: a step is judged against the systems as they will be
    # once those ran (each is confirmed by its read-back before this runs).
    earlier: list[EarlierWrite] = field(default_factory=list)


class Rule:
    """One verification rule; subclasses implement `check` and set `name`."""

    name = "rule"

    def check(self, facts: Facts) -> Verdict:
        """Judge the facts."""
        raise NotImplementedError

    def passed(self, detail: str, **evidence: Any) -> Verdict:
        """A passing verdict from this rule."""
        return Verdict(True, self.name, detail, evidence)

    def failed(self, detail: str, **evidence: Any) -> Verdict:
        """A failing verdict from this rule."""
        return Verdict(False, self.name, detail, evidence)


class Checks(Protocol[S_contra]):
    """Anything that judges a subject: a step's Rule (Facts) or a PlanRule (the steps)."""

    def check(self, subject: S_contra) -> Verdict:
        """Judge the subject."""
        ...


def run_chain(rules: Sequence[Checks[S]], subject: S) -> tuple[Verdict | None, list[Verdict]]:
    """Run rules in order; stop at the first failure, which is returned with all verdicts."""
    verdicts: list[Verdict] = []
    for rule in rules:
        verdict = rule.check(subject)
        verdicts.append(verdict)
        if not verdict.ok:
            return verdict, verdicts
    return None, verdicts
