"""The model side's parts on their own: schema, router, prompt versions, retrieval,
placeholders, prices (the budget: tests/unit/controls/test_budget.py)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from openai.lib._pydantic import to_strict_json_schema

from app.core.redaction import Placeholders
from app.llm import prompts, retrieval
from app.llm.config import ModelsConfig, models_config
from app.llm.router import features, request_text, route
from app.llm.schema import plan_model, to_plan


def _walk_objects(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            found.append((path, node))
        for key, value in node.items():
            found += _walk_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk_objects(value, f"{path}[{i}]")
    return found


def test_the_plan_schema_is_in_the_form_strict_structured_outputs_accept() -> None:
    schema = to_strict_json_schema(plan_model())
    objects = _walk_objects(schema)
    assert len(objects) > 20  # the plan, 12 step models, their args, invoice fields
    for path, obj in objects:
        assert obj.get("additionalProperties") is False, path
        assert sorted(obj["required"]) == sorted(obj["properties"]), path
    text = json.dumps(schema)
    for keyword in ('"default"', '"minLength"', '"maxLength"', '"const"', '"minProperties"'):
        assert keyword not in text
    # Every catalog tool is a branch, each tied to its own argument model
    step_defs = [name for name in schema["$defs"] if name.endswith("Step")]
    assert len(step_defs) == 12
    refund = schema["$defs"]["StripeRefundStep"]
    assert refund["properties"]["tool"]["enum"] == ["stripe.refund"]


def test_the_models_answer_becomes_a_domain_plan_with_nulls_dropped() -> None:
    parsed = plan_model().model_validate(
        {
            "workflow": "support_refund",
            "summary": "refund",
            "confidence": 0.8,
            "steps": [
                {
                    "tool": "zendesk.update_ticket",
                    "args": {
                        "ticket_id": 5,
                        "status": "solved",
                        "priority": None,
                        "tags": None,
                        "group_id": None,
                    },
                    "rationale": "close it",
                    "evidence": ["ticket:5"],
                }
            ],
            "escalate": None,
        }
    )
    plan = to_plan(parsed)
    assert plan.steps[0].args == {"ticket_id": 5, "status": "solved"}
    assert plan.escalate is None


def test_a_step_whose_args_belong_to_another_tool_does_not_parse() -> None:
    with pytest.raises(ValueError):
        plan_model().model_validate(
            {
                "workflow": "support_refund",
                "summary": "x",
                "confidence": 0.5,
                "steps": [
                    {
                        "tool": "stripe.refund",
                        "args": {"ticket_id": 1},
                        "rationale": "",
                        "evidence": [],
                    }
                ],
                "escalate": None,
            }
        )


def _cfg(**router: Any) -> ModelsConfig:
    base = models_config().model_dump(mode="json")
    base["router"].update(router)
    return ModelsConfig.model_validate(base)


def test_router_starts_at_the_workflows_tier_and_says_why() -> None:
    cfg = _cfg()
    decision = route("support_refund", features("Where is my parcel?", 0, cfg), cfg)
    assert decision.tiers == ["small", "large"]
    assert decision.reasons == ["workflow support_refund starts at small"]


@pytest.mark.parametrize(
    ("text", "attachments", "why"),
    [
        ("x" * 7000, 0, "input is 7000 chars"),
        ("Верните мне деньги за заказ, пожалуйста", 0, "not Latin"),
        ("see the attached screenshot", 2, "2 attachment(s)"),
        ("my lawyer says this is a chargeback matter", 0, "keywords: chargeback, lawyer"),
        ("please suspend the account of the leaver", 0, "likely okta.suspend_user (irreversible)"),
    ],
)
def test_router_sends_long_foreign_attached_sensitive_or_risky_work_to_large(
    text: str, attachments: int, why: str
) -> None:
    cfg = _cfg()
    decision = route("it_request", features(text, attachments, cfg), cfg)
    assert decision.tiers == ["large"]
    assert any(why in reason for reason in decision.reasons), decision.reasons


def test_request_text_collects_every_string_of_the_input() -> None:
    assert request_text({"a": "one", "b": [{"c": "two"}, 3], "d": None}) == "one\ntwo\n"


def test_a_prompts_version_is_the_hash_of_its_content() -> None:
    a = prompts.Prompt("planner", "Plan {workflow}.")
    b = prompts.Prompt("planner", "Plan {workflow}!")
    assert a.version.startswith("planner@") and len(a.version) == len("planner@") + 12
    assert a.version != b.version
    assert a.render(workflow="support_refund") == "Plan support_refund."
    assert prompts.load("planner").version == prompts.load("planner").version


def test_retrieval_finds_the_policy_passages_a_request_is_about() -> None:
    ids = [p.id for p in retrieval.retrieve("I was charged twice, refund the duplicate")]
    assert "policy:refunds#reasons" in ids
    assert [p.id for p in retrieval.retrieve("reset my password")][0] == (
        "policy:access#password-resets"
    )
    assert retrieval.retrieve("zzzz qqqq") == []


def test_retrieval_splits_documents_at_second_level_headings() -> None:
    passages = retrieval.split_passages("doc", "# Title\nintro\n## First part\nA.\n## Second\nB.")
    assert [(p.id, p.text) for p in passages] == [
        ("policy:doc#first-part", "A."),
        ("policy:doc#second", "B."),
    ]


def test_placeholders_are_stable_per_value_and_map_back() -> None:
    ph = Placeholders()
    text = ph.redact("Mail ann@example.com or ann@example.com; call +44 20 7946 0958.")
    assert text == "Mail [email_1] or [email_1]; call [phone_1]."
    assert ph.redact("bob@example.org") == "[email_2]"
    assert ph.restore({"body": "Wrote to [email_1] and [email_2]", "n": 3}) == {
        "body": "Wrote to ann@example.com and bob@example.org",
        "n": 3,
    }


def test_placeholders_cover_cards_ibans_and_national_ids() -> None:
    ph = Placeholders()
    text = ph.redact(
        "card 4242 4242 4242 4242, IBAN DE89 3704 0044 0532 0130 00, SSN 123-45-6789, "
        "NI AB 12 34 56 C, order 4242424242424241"
    )
    assert "[card_1]" in text and "[iban_1]" in text
    assert "[national_id_1]" in text and "[national_id_2]" in text
    assert "4242424242424241" in text  # not Luhn-valid: an order number, left alone


def test_prices_turn_tokens_into_dollars() -> None:
    small = models_config().tiers["small"].models[0]
    assert small.cost(1_000_000, 0) == small.input_per_million
    assert small.cost(2000, 1000) == (
        2000 * small.input_per_million + 1000 * small.output_per_million
    ) / Decimal(1_000_000)


def _with_judge_tier(**judge: Any) -> dict[str, Any]:
    base = models_config().model_dump(mode="json")
    base["tiers"]["judge"] = {
        "timeout_seconds": 10,
        "max_output_tokens": 300,
        "models": [{"name": "j", "input_per_million": 1, "output_per_million": 1}],
        **judge,
    }
    base["soft_check"] = {"tier": "judge"}
    return base


def test_a_tier_may_name_its_own_endpoint_and_key_variable() -> None:
    cfg = ModelsConfig.model_validate(
        _with_judge_tier(base_url="https://judge.example/v1", api_key_env="OPSGATE_JUDGE_KEY")
    )
    assert cfg.tiers["judge"].base_url == "https://judge.example/v1"
    # A tier of another name is the judge's only: the planner's router never climbs to it
    assert cfg.tiers_from("small") == ["small", "large"]


@pytest.mark.parametrize(
    "judge, error",
    [
        ({"api_key_env": "sk-live-abc123"}, "must name an environment variable"),
        ({"base_url": "judge.example/v1"}, r"is not an http\(s\) URL"),
        ({"base_url": "ftp://judge.example"}, r"is not an http\(s\) URL"),
    ],
)
def test_a_key_in_yaml_or_a_bad_url_is_refused(judge: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ModelsConfig.model_validate(_with_judge_tier(**judge))


def test_the_judge_must_name_a_configured_tier() -> None:
    base = models_config().model_dump(mode="json")
    base["soft_check"] = {"tier": "judge"}
    with pytest.raises(ValueError, match="no tier 'judge'"):
        ModelsConfig.model_validate(base)
