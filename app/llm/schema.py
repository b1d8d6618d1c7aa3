"""The Plan as the model sees it: a schema that strict structured outputs accept.

Strict mode wants every object closed (`additionalProperties: false`), every property
required (optional ones nullable), no defaults and no open dictionaries. The catalog's
argument models have defaults and one open dict (an invoice's fields), so the model gets
its own mirror of them: one step model per tool, `tool` a literal, `args` that tool's
arguments. What comes back is turned into the domain `Plan` and then validated again by
the catalog's own models, which hold the real rules.
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.jobs.steps import Plan, PlanEscalation, Step
from tools.catalog import CATALOG
from tools.salesforce.args import INVOICE_FIELDS

# Schema keywords strict mode does not take (the domain models still check them).
_UNSUPPORTED = ("default", "minLength", "maxLength", "minProperties", "maxProperties")


def strictify(node: Any) -> Any:
    """Rewrite a JSON schema in place into the form strict structured outputs accept."""
    if isinstance(node, dict):
        for key in _UNSUPPORTED:
            node.pop(key, None)
        if "const" in node:
            node["enum"] = [node.pop("const")]
        if "oneOf" in node:
            # A tagged union (see plan_model): strict mode takes anyOf, and the tag is each
            # branch's one-value `tool` enum already.
            node["anyOf"] = node.pop("oneOf")
            node.pop("discriminator", None)
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        for value in node.values():
            strictify(value)
    elif isinstance(node, list):
        for value in node:
            strictify(value)
    return node


class _ModelFacing(BaseModel):
    # Strict: an amount sent as "20.00" or true is a schema error, never quietly 20 or 1.
    model_config = ConfigDict(extra="forbid", strict=True)


class InvoiceFields(_ModelFacing):
    """The Invoice__c fields an agent may set; null means leave as is."""

    Amount__c: float | None
    Vendor__c: str | None
    Due_Date__c: str | None
    Purchase_Order__c: str | None
    Status__c: str | None
    Hold_Reason__c: str | None
    Exception_Reason__c: str | None


assert set(InvoiceFields.model_fields) == INVOICE_FIELDS, "keep InvoiceFields in step"


def _facing_type(annotation: Any) -> Any:
    if annotation is Decimal:
        return float
    if get_origin(annotation) is dict:
        return InvoiceFields
    return annotation


def _nullable(annotation: Any) -> Any:
    if type(None) in get_args(annotation):
        return annotation
    return annotation | None


@functools.cache
def step_model(tool: str) -> type[BaseModel]:
    """The model-facing step for one catalog tool."""
    args_model = CATALOG[tool].args_model
    fields: dict[str, Any] = {}
    for name, info in args_model.model_fields.items():
        annotation = _facing_type(info.annotation)
        if annotation is info.annotation and info.metadata:
            # Keep the constraints (patterns, bounds): they tell the model what is valid.
            annotation = Annotated[(annotation, *info.metadata)]
        if not info.is_required():
            annotation = _nullable(annotation)
        fields[name] = (annotation, Field(..., description=info.description))
    args = create_model(
        f"{args_model.__name__}ForModel",
        __base__=_ModelFacing,
        __doc__=args_model.__doc__,
        **fields,
    )
    slug = "".join(part.title() for part in tool.replace(".", "_").split("_"))
    model: type[BaseModel] = create_model(
        f"{slug}Step",
        __base__=_ModelFacing,
        tool=(Literal[tool], ...),  # type: ignore[arg-type]
        args=(args, ...),
        rationale=(str, ...),
        evidence=(list[str], ...),
    )
    return model


_schemas: dict[str, str] = {}


class EscalationForModel(_ModelFacing):
    """Why a human should take this job instead."""

    reason: str


@functools.cache
def plan_model(tools: tuple[str, ...] = tuple(CATALOG)) -> type[BaseModel]:
    """The model-facing Plan over `tools` (every catalog tool by default).

    The whole catalog, not only the workflow's tools: a plan that names a tool the workflow
    may not use must parse, so that policy refuses it with a reason a reviewer can read.
    """
    # Tagged by `tool`: pydantic picks the one branch a step names instead of trying all 12
    # (40 us to 3 us per plan), and a bad step's errors are that branch's only, which makes
    # a shorter and clearer repair prompt. The schema sent is the same anyOf (strictify).
    branches = Union[tuple(step_model(t) for t in tools)]  # type: ignore[valid-type]  # noqa: UP007
    steps = Annotated[branches, Field(discriminator="tool")]  # type: ignore[valid-type]

    class PlanForModel(_ModelFacing):
        """A plan: the steps that would resolve the request, or a request for a human."""

        workflow: str
        summary: str
        confidence: float = Field(..., ge=0, le=1)
        steps: list[steps]
        escalate: EscalationForModel | None

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            # Generating this schema takes pydantic ~30 ms and the SDK asks for it on every
            # call; hand out a fresh copy of the one made first (the SDK edits what it gets).
            key = json.dumps([args, sorted(kwargs.items())], default=str)
            if key not in _schemas:
                _schemas[key] = json.dumps(strictify(super().model_json_schema(*args, **kwargs)))
            schema: dict[str, Any] = json.loads(_schemas[key])
            return schema

    return PlanForModel


def to_plan(parsed: BaseModel) -> Plan:
    """The domain Plan from the model's answer (nulls dropped: they meant "not given")."""
    raw = parsed.model_dump(mode="json")
    steps = []
    for step in raw["steps"]:
        args = {k: v for k, v in step["args"].items() if v is not None}
        if isinstance(args.get("fields"), dict):
            args["fields"] = {k: v for k, v in args["fields"].items() if v is not None}
        steps.append(
            Step(
                tool=step["tool"], args=args, rationale=step["rationale"], evidence=step["evidence"]
            )
        )
    escalate = raw.get("escalate")
    return Plan(
        workflow=raw["workflow"],
        summary=raw["summary"],
        confidence=raw["confidence"],
        steps=steps,
        escalate=PlanEscalation(reason=escalate["reason"]) if escalate else None,
    )
