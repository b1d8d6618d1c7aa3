"""Settings checked at start-up: Salesforce org ids (with the 15 -> 18 checksum), URLs, API
key triples, signing keys; and the one line the CLI prints for a bad setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.cli import settings_error_line
from app.intake.salesforce import same_org
from app.salesforce_ids import canonical_id, to_18
from app.settings import ApiKeyEntry, Settings

# (15-character id, its 18-character form). The first is a real org id; the others were
# computed with our implementation and checked by hand: for each 5-character chunk, add
# 1 << i for a capital at position i, then index "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345":
#   00D5g000004XyZb: "00D5g" D@2 -> 4 -> E; "00000" -> A; "4XyZb" X@1 + Z@3 -> 2 + 8 = 10 -> K
#   00DABCDEFGHIJKL: "00DAB" 4+8+16 = 28 -> 2; "CDEFG" 31 -> 5; "HIJKL" 31 -> 5
#   00Dxx0000001gPF: "00Dxx" 4 -> E; "00000" -> A; "01gPF" P@3 + F@4 = 8 + 16 = 24 -> Y
PAIRS = [
    ("00D000000000062", "00D000000000062EAA"),
    ("00D5g000004XyZb", "00D5g000004XyZbEAK"),
    ("00DABCDEFGHIJKL", "00DABCDEFGHIJKL255"),
    ("00Dxx0000001gPF", "00Dxx0000001gPFEAY"),
]


@pytest.mark.parametrize(("id15", "id18"), PAIRS)
def test_the_checksum_makes_the_18_character_form(id15: str, id18: str) -> None:
    assert to_18(id15) == id18
    assert canonical_id(id15) == id18 == canonical_id(id18)


def test_salesforces_documented_record_id_example() -> None:
    assert to_18("001A0000006Vm9r") == "001A0000006Vm9rIAC"


@pytest.mark.parametrize(("id15", "id18"), PAIRS)
def test_the_18_character_form_is_case_safe(id15: str, id18: str) -> None:
    # The suffix records which characters are capitals: a lowercased copy is the same id.
    assert canonical_id(id18.lower()) == id18
    assert same_org(id15, id18.upper()) and same_org(id18.lower(), id15)


def test_the_15_character_form_is_case_sensitive() -> None:
    assert not same_org("00D5g000004XyZb", "00D5g000004xyzb")


@pytest.mark.parametrize(
    "corrupt",
    [
        "00D000000000062EAB",  # the suffix marks a digit as a capital
        "00D5g000004XyZbEAA",  # a suffix of another case pattern
        "00D5g000004XyZbEA!",
        "00D5g000004XyZbE",
    ],
)
def test_corrupt_ids_have_no_canonical_form(corrupt: str) -> None:
    assert canonical_id(corrupt) is None


@pytest.mark.parametrize("good", ["00D000000000062", "00D000000000062EAA", "00d000000000062eaa"])
def test_settings_accept_an_org_id(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, good: str
) -> None:
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", f" {good} ")

    assert Settings().salesforce_org_id == good


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("001000000000062", "starts with 00D"),
        ("00d000000000062", "case-sensitive"),
        ("00D00000000006", "is not a Salesforce organization id"),
        ("00D000000000062EAB", "not the checksum of its first 15 characters (that is 'EAA')"),
        ("00D-00000000062", "is not a Salesforce organization id"),
    ],
)
def test_settings_refuse_a_bad_org_id_in_one_line_with_the_fix(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, bad: str, says: str
) -> None:
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", bad)

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert line.startswith("opsgate: invalid setting OPSGATE_SALESFORCE_ORG_ID: ")
    assert says in line and "(fix: " in line and "\n" not in line


def test_an_empty_org_id_means_no_salesforce_intake(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", "  ")

    assert Settings().salesforce_org_id is None


URL_VARS = [
    "OPSGATE_STRIPE_API_BASE",
    "OPSGATE_ZENDESK_API_BASE",
    "OPSGATE_SALESFORCE_API_BASE",
    "OPSGATE_OKTA_API_BASE",
    "OPSGATE_API_URL",
    "OPENAI_BASE_URL",
]


@pytest.mark.parametrize("name", URL_VARS)
@pytest.mark.parametrize("bad", ["api.stripe.com", "ftp://files.example.com", "https://", "x"])
def test_urls_must_be_http_with_a_host(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, bad: str
) -> None:
    monkeypatch.setenv(name, bad)

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert line.startswith(f"opsgate: invalid setting {name}: ")
    assert "is not an http(s) URL with a host" in line and "(fix: " in line


@pytest.mark.parametrize("name", URL_VARS)
def test_http_and_https_urls_are_accepted(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "https://acme.example.com:8443/v1")

    Settings()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("crm:boss:k-0123456789", "role 'boss' of 'crm' is not one of requester, reviewer, admin"),
        ("crm:requester:", "entry 1 is not name:role:key with a non-empty key"),
        ("crm:requester:k-0123456789,desk:reviewer", "entry 2 is not name:role:key"),
        ("justakey", "entry 1 is not name:role:key"),
        ("crm:boss/it_request:k-0123456789", "role 'boss' of 'crm' is not one of"),
        ("clerk:reviewer/:k-0123456789", "workflow '' in the scope of 'clerk' is not a name"),
        ("clerk:reviewer/a++b:k-0123456789", "workflow '' in the scope of 'clerk'"),
        ("clerk:reviewer/Invoice:k-0123456789", "workflow 'Invoice' in the scope of 'clerk'"),
        ("clerk:reviewer/it-request:k-0123456789", "workflow 'it-request'"),
        ("clerk:reviewer/a,b:justakey", "entry 1 is not name:role:key"),
    ],
)
def test_api_key_triples_are_checked_without_showing_a_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, raw: str, says: str
) -> None:
    monkeypatch.setenv("OPSGATE_API_KEYS", raw)

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert line.startswith("opsgate: invalid setting OPSGATE_API_KEYS: ") and says in line
    assert "k-0123456789" not in line and "justakey" not in line


def test_good_api_key_triples_load(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSGATE_API_KEYS", "crm:requester:k1, desk:reviewer:k2,ops:admin:k3")

    assert [k.name for k in Settings().env_api_keys()] == ["crm", "desk", "ops"]
    assert all(k.workflows is None for k in Settings().env_api_keys())


def test_a_key_may_be_scoped_to_workflows(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OPSGATE_API_KEYS",
        "clerk:reviewer/invoice_exception:k-1:with:colons,"
        "lead:reviewer/support_refund+it_request:k-2,ops:admin:k-3",
    )

    assert Settings().env_api_keys() == [
        ApiKeyEntry("clerk", "reviewer", "k-1:with:colons", frozenset({"invoice_exception"})),
        ApiKeyEntry("lead", "reviewer", "k-2", frozenset({"support_refund", "it_request"})),
        ApiKeyEntry("ops", "admin", "k-3", None),
    ]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("k1:0123456789abcdef,k1:fedcba9876543210", "key id 'k1' appears twice"),
        ("0123456789abcdef", "must be kid:secret pairs"),
    ],
)
def test_signing_keys_are_pairs_with_distinct_ids(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, raw: str, says: str
) -> None:
    monkeypatch.setenv("OPSGATE_APPROVAL_KEYS", raw)

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert line.startswith("opsgate: invalid setting OPSGATE_APPROVAL_KEYS: ") and says in line
    assert "0123456789abcdef" not in line


def test_several_bad_settings_are_still_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_SALESFORCE_ORG_ID", "nope")
    monkeypatch.setenv("OPSGATE_API_URL", "localhost:8000")
    monkeypatch.setenv("OPSGATE_DB_POOL_SIZE", "many")

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert "\n" not in line
    for name in ("OPSGATE_SALESFORCE_ORG_ID", "OPSGATE_API_URL", "OPSGATE_DB_POOL_SIZE"):
        assert f"invalid setting {name}: " in line


def test_production_refusals_name_the_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSGATE_ENV", "production")

    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error_line(caught.value)

    assert line.startswith("opsgate: invalid settings: production settings need real values")
    for name in ("OPSGATE_STRIPE_API_KEY", "OPSGATE_APPROVAL_KEYS", "OPSGATE_DATABASE_URL"):
        assert name in line
    assert "dev-signing-key" not in line and "sk_test_sandbox" not in line
