"""Step revisions: a reviewer's edit makes the edited step's next revision, and the edit flows
through the plan. Every later pending step whose arguments state a value the edit changed is
restated from the edit (the old amount rewritten to the new one, a changed id replaced), as a
revision of its own with its own idempotency key and arguments hash.

Restating at edit time, rather than filling text in when a step runs, keeps every action
bound to exact arguments: the ones the verifiers check, the approval token covers, the
idempotency key guards and the audit chain records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.audit import chain as audit
from app.audit.chain import canonical_json, sha256_hex
from app.core.money import format_minor, to_minor
from app.errors import InputError, PermanentError
from app.jobs.steps import step_key
from app.models import Job, PlanStep, StepStatus
from app.reading.amounts import StatedAmount, find_amount_spans, find_bare_numbers
from tools.catalog import get_tool

MONEY_KEYS = ("amount", "currency")
# Changed values shorter than this are not looked for in prose: a group id "7" or a priority
# "low" would be found in words that have nothing to do with the edit. They are still
# replaced where they are a whole argument value under the same name.
MIN_VERBATIM = 3
EXECUTED = "Amount as executed: {amount} (edited by reviewer)."

Scalar = str | int


@dataclass(frozen=True)
class Edit:
    """What a reviewer's edit of one step changed: its money, and its other values by name."""

    step_id: str
    revision: int
    # (old, new) when the step carries an integer `amount` with a `currency` and either moved.
    money: tuple[StatedAmount, StatedAmount] | None
    values: dict[str, tuple[Scalar, Scalar]] = field(default_factory=dict)

    @classmethod
    def between(cls, step_id: str, revision: int, old: dict[str, Any], new: dict[str, Any]) -> Edit:
        """The changes from `old` to `new` arguments of step `step_id` (now at `revision`)."""
        before, after = _money(old), _money(new)
        money = (before, after) if before and after and before != after else None
        values: dict[str, tuple[Scalar, Scalar]] = {}
        before_leaves, after_leaves = _leaves(old), _leaves(new)
        for key in before_leaves.keys() & after_leaves.keys():
            if money is not None and key in MONEY_KEYS:
                continue  # restated as money, in any rendering, not as a bare value
            was, now = before_leaves[key], after_leaves[key]
            if was != now:
                values[key] = (was, now)
        return cls(step_id, revision, money, values)

    def __bool__(self) -> bool:
        return self.money is not None or bool(self.values)


@dataclass
class Restated:
    """A later step's arguments restated from an edit, and what was restated."""

    args: dict[str, Any]
    changed: set[str] = field(default_factory=set)
    # The old amount stood in a text without a currency: the executed amount was appended.
    appended: bool = False


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


def _leaves(args: dict[str, Any]) -> dict[str, Scalar]:
    """The string and integer values by name, nested objects included ({fields: {Purchase_Order__c:
    ...}} gives Purchase_Order__c); lists are values of their own, not looked into."""
    found: dict[str, Scalar] = {}
    for key, value in args.items():
        if isinstance(value, dict):
            found.update(_leaves(value))
        elif _scalar(value):
            found[key] = value
    return found


def _money(args: dict[str, Any]) -> StatedAmount | None:
    amount, currency = args.get("amount"), args.get("currency")
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str):
        return StatedAmount(amount, currency.lower())
    return None


def _states(plain: str, old: StatedAmount) -> bool:
    """Whether a number written without a currency is the old amount: in units ("90",
    "90.00") or as the minor amount itself ("9000")."""
    if "." not in plain and int(plain) == old.minor:
        return True
    try:
        return to_minor(plain, old.currency) == old.minor
    except ValueError:
        return False


def _verbatim(old: Scalar) -> re.Pattern[str]:
    # Whole tokens only: ch_1003 is not found inside ch_10031, nor 4821 inside 14821 or 48.21.
    return re.compile(r"(?<![\w.,])" + re.escape(str(old)) + r"(?![\w]|[.,]\d)")


def _restate_text(text: str, edit: Edit) -> tuple[str, set[str], bool]:
    """The text restated, what it restated, and whether it states the old amount bare."""
    changed: set[str] = set()
    bare = False
    if edit.money is not None:
        old, new = edit.money
        spans = find_amount_spans(text)
        bare = any(
            _states(plain, old) and not any(s.start <= start < s.end for s in spans)
            for start, _, plain in find_bare_numbers(text)
        )
        shown = format_minor(new.minor, new.currency)
        for span in reversed(spans):
            if span.amount == old:
                text = text[: span.start] + shown + text[span.end :]
                changed.add("amount")
    for key, (was, now) in edit.values.items():
        if len(str(was)) < MIN_VERBATIM:
            continue
        # A template, not a function: backslashes in the value are doubled to stay literal.
        text, count = _verbatim(was).subn(str(now).replace("\\", "\\\\"), text)
        if count:
            changed.add(key)
    return text, changed, bare


def _walk(value: Any, key: str, fix: Callable[[str, Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, k, fix) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, fix) for v in value]
    return fix(key, value)


def restate(args: dict[str, Any], edit: Edit) -> Restated | None:
    """A later step's arguments restated from `edit`; None if they state nothing it changed.

    In every string (nested ones too) each stated amount equal to the old amount and currency,
    in any rendering `find_amount_spans` recognizes, becomes `format_minor` of the new one; a
    changed id or value is replaced where it appears as a whole token; an argument whose whole
    value is a changed value under the same name takes the new value. A later step's own
    `amount` is its own action, not a statement of this one, and is left alone.
    """
    out = Restated(args={})

    def fix(key: str, value: Any) -> Any:
        if key in edit.values:
            was, now = edit.values[key]
            if type(value) is type(was) and value == was:
                out.changed.add(key)
                return now
        if not isinstance(value, str):
            return value
        text, changed, bare = _restate_text(value, edit)
        out.changed |= changed
        if bare and edit.money is not None:
            if not any(ch.isspace() for ch in text):
                # A token (a tag, an id) cannot take a sentence: refuse, never leave it stale.
                raise InputError(
                    f"argument {key!r} states the old amount without a currency where no "
                    "line can be added; reject the escalation instead"
                )
            new = edit.money[1]
            line = EXECUTED.format(amount=format_minor(new.minor, new.currency))
            text = f"{text.rstrip()}\n\n{line}"
            out.changed.add("amount")
            out.appended = True
        return text

    out.args = _walk(args, "", fix)
    return out if out.changed else None


def new_revision(
    session: Session,
    job: Job,
    step: PlanStep,
    args: dict[str, Any],
    actor: str,
    **why: Any,
) -> None:
    """Make the step's next revision with `args` (already validated by the tool's model): a
    new idempotency key and arguments hash, nothing carried over from the old revision (which
    never ran); one `step_revised` audit event, with `why` (e.g. restated_from) in it."""
    old = {"revision": step.revision, "args_hash": step.args_hash, "key": step.idempotency_key}
    step.revision += 1
    step.args = args
    step.args_hash = sha256_hex(canonical_json(args))
    step.idempotency_key = step_key(job.id, step.step_id, step.revision)
    step.status, step.claim_token, step.claimed_at, step.error = (
        StepStatus.PENDING,
        None,
        None,
        None,
    )
    audit.append(
        session,
        job.id,
        "step_revised",
        actor,
        {
            "step": step.step_id,
            "from": old,
            "to": {
                "revision": step.revision,
                "args_hash": step.args_hash,
                "key": step.idempotency_key,
            },
            **why,
        },
    )
    session.flush()


def restate_later(
    session: Session, job: Job, edited: PlanStep, edit: Edit, actor: str
) -> list[str]:
    """Restate every later pending step of the job from `edit` of `edited`; returns the
    restated step ids. Steps that state nothing the edit changed are left alone.

    Where a later step's text states the old amount without a currency (found as a number,
    equal to the old amount, that no currency marks), the text is not rewritten: a bare
    number may be something else ("within 90 days"), and guessing would corrupt it. Instead
    the line "Amount as executed: 30.00 USD (edited by reviewer)." is appended, so what runs
    states the executed amount and nothing is silently stale. We do not send the job back to
    the reviewer for it: they have just decided the action, and the decision API cannot edit
    another step's text, so a second escalation could only end in a rejection of an approved
    refund. The restated step is verified again with the rest of the plan (the job returns to
    `planned`), and its audit event says `appended_executed_amount`.
    """

    restated: list[str] = []
    if not edit:
        return restated
    for step in job.steps:
        if step.position <= edited.position or step.status != StepStatus.PENDING:
            continue
        try:
            result = restate(dict(step.args), edit)
        except InputError as exc:
            raise InputError(f"step {step.step_id} ({step.tool}): {exc}") from exc
        if result is None:
            continue
        try:
            parsed = get_tool(step.tool).parse_args(result.args).model_dump(mode="json")
        except PermanentError as exc:
            raise InputError(
                f"step {step.step_id} restated from the edit of {edit.step_id} is not valid "
                f"{step.tool} arguments ({exc}); reject the escalation instead"
            ) from exc
        new_revision(
            session,
            job,
            step,
            parsed,
            actor,
            restated_from={"step": edit.step_id, "revision": edit.revision},
            restated=sorted(result.changed),
            appended_executed_amount=result.appended,
        )
        restated.append(step.step_id)
    return restated
