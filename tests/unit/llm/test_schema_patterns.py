"""The plan schema's string patterns are ones a constrained-decoding grammar compiles: one
anchored pattern each, no anchor inside (llama.cpp's JSON-schema-to-grammar converter cannot
compile `^a$|^b$` and then accepts any string for the field, e.g. a redacted login placeholder
as an Okta user id)."""

from __future__ import annotations

import json
import re
from typing import Any

from app.llm.schema import plan_model


def patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for v in node.values() for p in patterns(v)]
    if isinstance(node, list):
        return [p for v in node for p in patterns(v)]
    return []


def test_every_pattern_in_the_plan_schema_has_its_anchors_only_at_the_ends() -> None:
    schema = plan_model().model_json_schema()
    found = patterns(schema)
    assert found, "the plan schema constrains ids with patterns"
    inner = [p for p in found if re.search(r"(?<!\\)\$.|.(?<!\\)\^", p.removeprefix("^"))]
    assert inner == [], json.dumps(inner)
