"""The token plane with the official JavaScript clients (tests/node: @azure/identity 4.13 and
@azure/msal-node 3.8, pinned by its package-lock.json): managed identity through IMDS and App
Service, and the managed identity's token exchanged as a client assertion. Node validates each
token with `jose` through discovery and the JWKS; the test validates it again with PyJWT."""

import json
import os
import subprocess

import pytest

from conftest import ARM_RG
from test_federation import TENANT, stock_tracker, uami_assertion
from test_managed_identity import mirid, validated_claims
from test_sandbox import NODE_DIR, node_ready


def node(broker, flow: str, **env: str) -> dict:
    """Runs one flow of tests/node/token-plane.mjs with nothing but the variables it needs."""
    if (missing := node_ready()) is not None:
        pytest.fail(missing)
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "NODE_EXTRA_CA_CERTS": broker.ca,
        "AZURE_AUTHORITY_HOST": broker.base,
        "AZURE_TENANT_ID": TENANT,
        **env,
    }
    run = subprocess.run(
        ["node", str(NODE_DIR / "token-plane.mjs"), flow], env=environment, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert validated_claims(broker, answer["token"], "api://vault") == answer["claims"], "jose and PyJWT agree"
    return answer["claims"]


def test_managed_identity_credential_through_imds(broker):
    vm = broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")
    claims = node(broker, "managed-identity", AZURE_POD_IDENTITY_AUTHORITY_HOST=broker.mi)
    assert claims["oid"] == vm["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(vm["id"])


def test_managed_identity_credential_through_app_service(broker):
    site = ARM_RG + "/Microsoft.Web/sites/web-demo"
    web = broker.admin("GET", site)
    header = broker.admin("POST", site + "/listIdentityHeader")["identityHeader"]
    claims = node(broker, "managed-identity", IDENTITY_ENDPOINT=broker.mi + "/msi/token", IDENTITY_HEADER=header)
    assert claims["oid"] == web["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(web["id"])


@pytest.mark.parametrize("flow", ["client-assertion", "msal-node"])
def test_a_managed_identitys_token_is_exchanged_as_a_client_assertion(broker, clean_identity_env, flow):
    assertion = uami_assertion(broker, clean_identity_env)
    app = stock_tracker(broker)
    claims = node(broker, flow, APP_ID=app["appId"], ASSERTION=assertion)
    assert claims["appid"] == app["appId"]
    assert claims["roles"] == ["Secrets.Read"]
    assert claims["appidacr"] == "2"
