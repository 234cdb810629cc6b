"""The token plane with the official Rust SDK (tests/azure-sdk-rust: azure_identity 1.0):
ManagedIdentityCredential through App Service, and ClientAssertionCredential with a managed
identity's token as the assertion. The binary validates each token with jsonwebtoken through
discovery and the JWKS; the test validates it again with PyJWT. (Its IMDS path, which cannot be
pointed anywhere but 169.254.169.254, runs in test_sandbox.py.)"""

import json
import os
import subprocess

from conftest import ARM_RG
from test_federation import TENANT, stock_tracker, uami_assertion
from test_managed_identity import mirid, validated_claims
from test_sandbox import RUST_BIN


def rust(broker, flow: str, **env: str) -> dict:
    assert RUST_BIN.is_file(), f"{RUST_BIN} is missing: scripts/test builds the azure-sdk-rust crate"
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "SSL_CERT_FILE": broker.ca,
        "AZURE_AUTHORITY_HOST": broker.base,
        "AZURE_TENANT_ID": TENANT,
        **env,
    }
    run = subprocess.run([str(RUST_BIN), flow], env=environment, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert validated_claims(broker, answer["token"], "api://vault") == answer["claims"], "jsonwebtoken and PyJWT agree"
    return answer["claims"]


def test_managed_identity_credential_through_app_service(broker):
    site = ARM_RG + "/Microsoft.Web/sites/web-demo"
    web = broker.admin("GET", site)
    header = broker.admin("POST", site + "/listIdentityHeader")["identityHeader"]
    claims = rust(broker, "managed-identity", IDENTITY_ENDPOINT=broker.mi + "/msi/token", IDENTITY_HEADER=header)
    assert claims["oid"] == web["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(web["id"])


def test_client_assertion_credential_exchanges_a_managed_identitys_token(broker, clean_identity_env):
    assertion = uami_assertion(broker, clean_identity_env)
    app = stock_tracker(broker)
    claims = rust(broker, "client-assertion", APP_ID=app["appId"], ASSERTION=assertion)
    assert (claims["appid"], claims["roles"], claims["appidacr"]) == (app["appId"], ["Secrets.Read"], "2")
