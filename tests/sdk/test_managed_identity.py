"""The official azure-identity (and msal) get managed-identity tokens from ficus unmodified, and
the tokens validate with PyJWT through ficus's discovery document and JWKS."""

import jwt
import msal
import requests
from azure.identity import ManagedIdentityCredential

from conftest import ARM_RG


def validated_claims(broker, token: str, audience: str) -> dict:
    """PyJWT, trusting only what discovery and the JWKS publish."""
    discovery = requests.get(broker.base + "/demo/v2.0/.well-known/openid-configuration", verify=broker.ca, timeout=10).json()
    jwks = requests.get(discovery["jwks_uri"], verify=broker.ca, timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(token, key=key, algorithms=["RS256"], audience=audience, issuer=discovery["issuer"])


def mirid(resource_id: str) -> str:
    return resource_id.replace("/resourceGroups/", "/resourcegroups/")


def test_system_assigned_identity_through_imds(broker, clean_identity_env):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    vm = broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")

    token = ManagedIdentityCredential().get_token("api://vault/.default")

    claims = validated_claims(broker, token.token, "api://vault")
    assert claims["oid"] == vm["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(vm["id"])
    assert claims["roles"] == ["Secrets.Read"]
    assert claims["iss"].endswith("/5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17/v2.0")
    assert token.expires_on > claims["iat"]


def test_user_assigned_identity_through_imds(broker, clean_identity_env):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")

    token = ManagedIdentityCredential(client_id=uami["properties"]["clientId"]).get_token("api://vault/.default")

    claims = validated_claims(broker, token.token, "api://vault")
    assert claims["oid"] == uami["properties"]["principalId"]
    assert claims["appid"] == uami["properties"]["clientId"]
    assert claims["xms_mirid"] == mirid(uami["id"])
    assert "roles" not in claims


def test_system_assigned_identity_through_the_app_service_endpoint(broker, clean_identity_env):
    site = ARM_RG + "/Microsoft.Web/sites/web-demo"
    web = broker.admin("GET", site)
    header = broker.admin("POST", site + "/listIdentityHeader")["identityHeader"]
    clean_identity_env.setenv("IDENTITY_ENDPOINT", broker.mi + "/msi/token")
    clean_identity_env.setenv("IDENTITY_HEADER", header)

    token = ManagedIdentityCredential().get_token("api://vault/.default")

    claims = validated_claims(broker, token.token, "api://vault")
    assert claims["oid"] == web["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(web["id"])
    assert "roles" not in claims


def test_user_assigned_identity_through_the_app_service_endpoint(broker, clean_identity_env):
    site = ARM_RG + "/Microsoft.Web/sites/web-uami"
    uami_id = ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"
    body = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {uami_id: {}}}}
    answer = requests.put(
        broker.base + site, json=body, headers={"Authorization": f"Bearer {broker.admin_token()}"}, verify=broker.ca, timeout=10
    )
    assert answer.status_code in (200, 201), answer.text
    header = broker.admin("POST", site + "/listIdentityHeader")["identityHeader"]
    uami = broker.admin("GET", uami_id)
    clean_identity_env.setenv("IDENTITY_ENDPOINT", broker.mi + "/msi/token")
    clean_identity_env.setenv("IDENTITY_HEADER", header)

    token = ManagedIdentityCredential(client_id=uami["properties"]["clientId"]).get_token("api://vault/.default")

    claims = validated_claims(broker, token.token, "api://vault")
    assert claims["oid"] == uami["properties"]["principalId"]
    assert claims["xms_mirid"] == mirid(uami_id)


def test_msal_managed_identity_client_through_imds(broker, clean_identity_env):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    vm = broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")
    client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())

    result = client.acquire_token_for_client(resource="api://vault")

    assert "access_token" in result, result
    claims = validated_claims(broker, result["access_token"], "api://vault")
    assert claims["oid"] == vm["identity"]["principalId"]


def curl_json(*args: str) -> tuple[int, dict]:
    """curl, as the deprecated extension's documentation calls it: the status and the JSON body."""
    import json
    import subprocess

    run = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, check=True)
    body, status = run.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


def test_the_deprecated_vm_extension_endpoint_answers_curl_as_the_extension_did(broker):
    vm = broker.admin("GET", ARM_RG + "/Microsoft.Compute/virtualMachines/vm-demo")
    url = broker.vm_extension + "/oauth2/token?resource=api://vault"

    status, body = curl_json("-H", "Metadata: true", url)

    assert status == 200, body
    assert sorted(body) == sorted(
        ["access_token", "refresh_token", "expires_in", "expires_on", "not_before", "resource", "token_type"]
    ), "the extension's fields, not IMDS's (no client_id, no ext_expires_in)"
    assert (body["resource"], body["token_type"], body["refresh_token"]) == ("api://vault", "Bearer", "")
    assert all(body[f].isdigit() for f in ("expires_in", "expires_on", "not_before")), "numbers as strings"
    claims = validated_claims(broker, body["access_token"], "api://vault")
    assert claims["oid"] == vm["identity"]["principalId"]
    assert claims["xms_mirid"] == mirid(vm["id"])

    status, body = curl_json(url)
    assert (status, body["error"]) == (400, "bad_request_102"), body
    assert body["error_description"] == "Required metadata header not specified"
    status, body = curl_json("-H", "Metadata: true", broker.vm_extension + "/oauth2/token?resource=api://nowhere")
    assert (status, body["error"]) == (400, "invalid_resource"), body
    assert body["error_description"].startswith("AADSTS50001: "), body
