"""Each adapter maps its vendor's "no such record" to one NotFound error (Stripe
`resource_missing`, Okta `E0000007`, Salesforce `NOT_FOUND`, Zendesk's 404), against a real
sandbox speaking each vendor's wire format; other 4xx answers stay PermanentError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.errors import NotFound, PermanentError
from tests.support.sandbox import Sandbox
from tools.base import raise_for_http
from tools.okta import client as okta_api
from tools.salesforce import client as salesforce_api
from tools.stripe import client as stripe_api
from tools.zendesk import client as zendesk_api

pytestmark = pytest.mark.integration

MISSING: list[tuple[str, Callable[[], Any]]] = [
    ("stripe charge", lambda: stripe_api.get_charge("ch_doesnotexist")),
    ("okta user", lambda: okta_api.get_user("nobody@corp.example")),
    ("okta group", lambda: okta_api.get_group("00gnosuchgroup0000h7")),
    ("salesforce invoice", lambda: salesforce_api.get_record("Invoice__c", "a01Dn00000Zzzzzzzz")),
    ("zendesk ticket", lambda: zendesk_api.get_ticket(987654321)),
    ("zendesk user", lambda: zendesk_api.get_user(987654321)),
]


@pytest.mark.parametrize("what,read", MISSING, ids=[m[0] for m in MISSING])
def test_a_missing_record_is_not_found(
    clean_env: Any, sandbox: Sandbox, what: str, read: Any
) -> None:
    with pytest.raises(NotFound):
        read()


def test_other_client_errors_stay_permanent_not_not_found() -> None:
    def answer(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, json=body, request=httpx.Request("GET", "http://x"))

    okta_missing = okta_api._not_found  # noqa: SLF001 (the adapter's own test)
    gone = answer(404, {"errorCode": "E0000007", "errorSummary": "Not found: Resource not found"})
    with pytest.raises(NotFound):
        raise_for_http("okta", gone, okta_missing)
    invalid = answer(400, {"errorCode": "E0000001", "errorSummary": "Api validation failed"})
    with pytest.raises(PermanentError) as err:
        raise_for_http("okta", invalid, okta_missing)
    assert not isinstance(err.value, NotFound)
    # A 404 without Salesforce's NOT_FOUND code (a wrong API version path) is no record's absence
    wrong_path = answer(404, [{"errorCode": "NOT_FOUND_VERSION", "message": "bad version"}])
    with pytest.raises(PermanentError) as err:
        raise_for_http("salesforce", wrong_path, salesforce_api._not_found)  # noqa: SLF001
    assert not isinstance(err.value, NotFound)
