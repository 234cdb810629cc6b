"""Fault rules meet the official SDKs' own retry logic: what an application does when IMDS answers
503 or 410, keeps answering 404, or the token endpoint throttles. Each rule is added through the
admin API and removed afterwards; the sign-in log shows every attempt."""

import time

import pytest
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

from conftest import ARM_RG
from test_federation import msal_client, stock_tracker
from test_managed_identity import validated_claims


@pytest.fixture
def faults(broker):
    """Adds fault rules for a test and removes them all afterwards."""
    added = []

    def add(rule: dict) -> dict:
        created = broker.admin("POST", "/ficus/faults", rule)
        added.append(created)
        return created

    yield add
    broker.admin("DELETE", "/ficus/faults")


def sign_ins_of(broker, principal: str) -> list[dict]:
    """vm-demo's sign-in entries, newest first, one per request (identical ones are merged in the log)."""
    entries = broker.admin("GET", f"/v1.0/auditLogs/signIns?principal={principal}&$top=1000")["value"]
    return [e for e in entries for _ in range(e["ficusRequestCount"])]


def vm_principal(broker) -> str:
    return broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")["identity"]["principalId"]


def wait_for(condition, what: str, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def injected_since(broker, principal: str, before: int) -> list[dict]:
    entries = sign_ins_of(broker, principal)
    return [e for e in entries[: len(entries) - before] if e["ficusErrorCode"] == "injected"]


def test_managed_identity_credential_gets_a_token_through_imds_503_twice(broker, clean_identity_env, faults):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    principal = vm_principal(broker)
    before = len(sign_ins_of(broker, principal))
    faults({"endpoint": "imds", "target": {"computeResource": "vm-demo"}, "status": 503, "requests": 2})

    token = ManagedIdentityCredential().get_token("api://vault/.default")

    validated_claims(broker, token.token, "api://vault")
    wait_for(lambda: len(sign_ins_of(broker, principal)) >= before + 3, "the three attempts are logged")
    attempts = sign_ins_of(broker, principal)[: len(sign_ins_of(broker, principal)) - before]
    codes = sorted(e["ficusErrorCode"] for e in attempts)
    assert codes.count("injected") == 2 and codes.count("") >= 1, codes
    assert all("503" in e["status"]["failureReason"] for e in attempts if e["ficusErrorCode"] == "injected")


def test_managed_identity_credential_gets_a_token_through_imds_410_once(broker, clean_identity_env, faults):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    principal = vm_principal(broker)
    before = len(sign_ins_of(broker, principal))
    faults({"endpoint": "imds", "target": {"computeResource": "vm-demo"}, "status": 410, "requests": 1})

    token = ManagedIdentityCredential().get_token("api://vault/.default")

    validated_claims(broker, token.token, "api://vault")
    wait_for(lambda: len(injected_since(broker, principal, before)) == 1, "the 410 is logged")
    assert "410" in injected_since(broker, principal, before)[0]["status"]["failureReason"]


def test_managed_identity_credential_fails_with_its_own_error_while_imds_answers_404(
    broker, clean_identity_env, faults
):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    principal = vm_principal(broker)
    before = len(sign_ins_of(broker, principal))
    faults({"endpoint": "imds", "target": {"computeResource": "vm-demo"}, "status": 404, "seconds": 30})

    with pytest.raises(CredentialUnavailableError) as failure:
        ManagedIdentityCredential().get_token("api://vault/.default")

    # azure-identity retries 404 (IMDS updating) with backoff, then gives up with its own error,
    # carrying IMDS's answer.
    assert "no response from the IMDS endpoint" in str(failure.value), str(failure.value)
    assert "Identity not found" in str(failure.value), str(failure.value)
    wait_for(lambda: len(injected_since(broker, principal, before)) > 1, "the retries are logged")


def test_msal_confidential_client_honours_token_endpoint_429_retry_after_and_then_succeeds(
    broker, clean_identity_env, faults
):
    """msal does not retry a 429 itself: it returns Entra's error and, for Retry-After, answers the
    same request from its throttle cache without sending it. After that, the request goes out and
    succeeds: the application survives by doing what msal's error tells it."""
    app = stock_tracker(broker)
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    assertion = ManagedIdentityCredential(client_id=uami["properties"]["clientId"]).get_token(
        "api://AzureADTokenExchange/.default"
    ).token
    faults({"endpoint": "token", "target": {"application": app["appId"]}, "status": 429, "retryAfter": 1, "requests": 1})
    client = msal_client(broker, clean_identity_env, app, assertion)
    throttled = client.acquire_token_for_client(scopes=["api://vault/.default"])
    assert throttled.get("error") == "temporarily_unavailable", throttled
    held_back = client.acquire_token_for_client(scopes=["api://vault/.default"])
    assert held_back.get("error") == "temporarily_unavailable", "msal answers from its throttle cache"
    time.sleep(1.2)
    result = client.acquire_token_for_client(scopes=["api://vault/.default"])

    assert "access_token" in result, result
    validated_claims(broker, result["access_token"], "api://vault")

    def injected_for_the_app() -> int:
        logged = broker.admin("GET", "/v1.0/auditLogs/signIns?result=failure&$top=1000")["value"]
        mine = [e for e in logged if e["appId"] == app["appId"] and e["ficusErrorCode"] == "injected"]
        return sum(e["ficusRequestCount"] for e in mine)

    wait_for(lambda: injected_for_the_app() > 0, "the 429 is logged")
    assert injected_for_the_app() == 1, "the held-back request never reached the broker"
