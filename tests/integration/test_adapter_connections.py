"""The adapters' HTTP client against a real `opsgate sandbox`: one kept-alive connection per
system and process, however many calls (tools/http.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support.sandbox import Sandbox
from tools.catalog import get_tool
from tools.okta import client as okta_api
from tools.salesforce import client as salesforce_api
from tools.sandbox import seed
from tools.stripe import client as stripe_api
from tools.zendesk import client as zendesk_api

pytestmark = pytest.mark.integration

READS = [
    ("stripe.get_charge", {"charge_id": "ch_1001"}),
    ("zendesk.get_ticket", {"ticket_id": 4821}),
    ("salesforce.get_invoice", {"invoice_id": seed.INVOICE_IDS["INV-1001"]}),
    ("okta.get_user", {"login": "alice@example.com"}),
]
CALLS = 10


def established_to(port: int) -> int:
    """This process's open TCP connections to `port`, as the kernel lists them."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_each_system_reuses_one_connection_for_every_call(clean_env: Any, sandbox: Sandbox) -> None:
    # When each adapter reads its system ten times, one call after the other
    for _ in range(CALLS):
        for tool, args in READS:
            spec = get_tool(tool)
            spec.invoke(spec.parse_args(args), None)

    # Then each opened one connection and sent every request on it
    port = urlsplit(sandbox.url).port
    assert port is not None
    pools = {
        "stripe": stripe_api.client()._requestor._client,  # noqa: SLF001 (the SDK's transport)
        "zendesk": zendesk_api.client(),
        "salesforce": salesforce_api.client(),
        "okta": okta_api.client(),
    }
    for system, client in pools.items():
        pool = client._pool.connection_from_url(sandbox.url)  # noqa: SLF001
        assert (system, pool.num_connections, pool.num_requests) == (system, 1, CALLS)
    # and the kernel agrees: four connections, still open for the next call
    assert established_to(port) == len(READS)
