"""The "managed identity as federated credential" flow with the official SDKs, unmodified: a
user-assigned identity's token for api://AzureADTokenExchange is exchanged as stock-tracker for
api://vault, which stock-tracker holds Secrets.Read on; no secret anywhere."""

import msal
import requests
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential, WorkloadIdentityCredential

from conftest import ARM_RG
from test_managed_identity import validated_claims

TENANT = "5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17"


def trusting_session(broker, env) -> requests.Session:
    """msal's HTTP client, trusting the broker's development CA. requests lets REQUESTS_CA_BUNDLE
    override a session's `verify`, so the variable is pointed at the CA too."""
    env.setenv("REQUESTS_CA_BUNDLE", broker.ca)
    session = requests.Session()
    session.verify = broker.ca
    return session


def msal_client(broker, env, app: dict, assertion: str) -> msal.ConfidentialClientApplication:
    """msal's confidential client for `app`, proving itself with `assertion`, pointed at the broker."""
    return msal.ConfidentialClientApplication(
        app["appId"],
        client_credential={"client_assertion": lambda: assertion},
        authority=f"{broker.base}/{TENANT}",
        instance_discovery=False,
        http_client=trusting_session(broker, env),
    )


def stock_tracker(broker) -> dict:
    apps = broker.admin("GET", "/v1.0/applications")["value"]
    return next(a for a in apps if a["displayName"] == "stock-tracker")


def uami_assertion(broker, env) -> str:
    env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    credential = ManagedIdentityCredential(client_id=uami["properties"]["clientId"])
    return credential.get_token("api://AzureADTokenExchange/.default").token


def assert_vault_token(broker, token: str, app: dict):
    claims = validated_claims(broker, token, "api://vault")
    assert claims["roles"] == ["Secrets.Read"]
    assert claims["appid"] == app["appId"]
    assert claims["oid"] == app["servicePrincipalId"]
    assert claims["appidacr"] == "2"


def test_client_assertion_credential_exchanges_the_identity_token(broker, clean_identity_env):
    assertion = uami_assertion(broker, clean_identity_env)
    clean_identity_env.setenv("REQUESTS_CA_BUNDLE", broker.ca)
    app = stock_tracker(broker)
    credential = ClientAssertionCredential(
        TENANT, app["appId"], lambda: assertion, authority=broker.base, disable_instance_discovery=True
    )

    token = credential.get_token("api://vault/.default")

    assert_vault_token(broker, token.token, app)


def test_msal_confidential_client_exchanges_the_identity_token(broker, clean_identity_env):
    assertion = uami_assertion(broker, clean_identity_env)
    app = stock_tracker(broker)
    client = msal_client(broker, clean_identity_env, app, assertion)

    result = client.acquire_token_for_client(scopes=["api://vault/.default"])

    assert "access_token" in result, result
    assert_vault_token(broker, result["access_token"], app)


def test_workload_identity_credential_reads_the_assertion_file(broker, clean_identity_env, tmp_path):
    assertion = uami_assertion(broker, clean_identity_env)
    token_file = tmp_path / "token"
    token_file.write_text(assertion)
    app = stock_tracker(broker)
    clean_identity_env.setenv("REQUESTS_CA_BUNDLE", broker.ca)
    clean_identity_env.setenv("AZURE_AUTHORITY_HOST", broker.base)
    clean_identity_env.setenv("AZURE_TENANT_ID", TENANT)
    clean_identity_env.setenv("AZURE_CLIENT_ID", app["appId"])
    clean_identity_env.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))

    token = WorkloadIdentityCredential(disable_instance_discovery=True).get_token("api://vault/.default")

    assert_vault_token(broker, token.token, app)


def test_an_identity_that_no_credential_trusts_is_refused_with_aadsts700213_for_its_subject(broker, clean_identity_env):
    clean_identity_env.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", broker.mi)
    # vm-demo's system identity is not the subject of stock-tracker's credential.
    assertion = ManagedIdentityCredential().get_token("api://AzureADTokenExchange/.default").token
    app = stock_tracker(broker)
    client = msal_client(broker, clean_identity_env, app, assertion)

    result = client.acquire_token_for_client(scopes=["api://vault/.default"])

    assert result.get("error") == "invalid_client", result
    assert result["error_description"].startswith(
        "AADSTS700213: No matching federated identity record found for presented assertion subject"
    ), result
    assert 700213 in result["error_codes"]


def test_both_credentials_exchange_through_a_flexible_credential(broker, clean_identity_env, tmp_path):
    """An application whose only credential is a claims-matching expression, not a subject."""
    assertion = uami_assertion(broker, clean_identity_env)
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    principal = uami["properties"]["principalId"]
    tracker = stock_tracker(broker)
    issuer = broker.admin("GET", f"/v1.0/applications/{tracker['id']}/federatedIdentityCredentials")["value"][0]["issuer"]
    app = broker.admin("POST", "/v1.0/applications", {"displayName": "flexible-deployer"})
    expression = f"claims['sub'] eq '{principal}' and claims['oid'] matches '{principal[:8]}*'"
    created = broker.admin(
        "POST",
        f"/v1.0/applications/{app['id']}/federatedIdentityCredentials",
        {
            "name": "uami-demo-any",
            "issuer": issuer,
            "audiences": ["api://AzureADTokenExchange"],
            "claimsMatchingExpression": {"value": expression, "languageVersion": 1},
        },
    )
    assert created["subject"] is None and created["claimsMatchingExpression"]["value"] == expression
    try:
        clean_identity_env.setenv("REQUESTS_CA_BUNDLE", broker.ca)
        by_callback = ClientAssertionCredential(
            TENANT, app["appId"], lambda: assertion, authority=broker.base, disable_instance_discovery=True
        ).get_token("api://vault/.default")
        token_file = tmp_path / "token"
        token_file.write_text(assertion)
        clean_identity_env.setenv("AZURE_AUTHORITY_HOST", broker.base)
        clean_identity_env.setenv("AZURE_TENANT_ID", TENANT)
        clean_identity_env.setenv("AZURE_CLIENT_ID", app["appId"])
        clean_identity_env.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
        by_file = WorkloadIdentityCredential(disable_instance_discovery=True).get_token("api://vault/.default")

        for token in (by_callback.token, by_file.token):
            claims = validated_claims(broker, token, "api://vault")
            assert claims["appid"] == app["appId"]
            assert claims["appidacr"] == "2"
    finally:
        broker.admin("DELETE", f"/v1.0/applications/{app['id']}")


def test_workload_identity_credential_signs_in_as_a_user_assigned_identity_through_its_flexible_credential(
    broker, clean_identity_env, tmp_path
):
    """As on AKS: AZURE_CLIENT_ID names a user-assigned identity, whose own federated credential
    accepts the workload's assertion; the token is that identity's."""
    assertion = uami_assertion(broker, clean_identity_env)
    demo = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    tracker = stock_tracker(broker)
    issuer = broker.admin("GET", f"/v1.0/applications/{tracker['id']}/federatedIdentityCredentials")["value"][0]["issuer"]
    path = ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-workload"
    workload = broker.admin("PUT", path, {"location": "westeurope"})
    expression = f"claims['sub'] eq '{demo['properties']['principalId']}'"
    broker.admin(
        "PUT",
        path + "/federatedIdentityCredentials/from-uami-demo",
        {
            "properties": {
                "issuer": issuer,
                "audiences": ["api://AzureADTokenExchange"],
                "claimsMatchingExpression": {"value": expression, "languageVersion": 1},
            }
        },
    )
    try:
        token_file = tmp_path / "token"
        token_file.write_text(assertion)
        clean_identity_env.setenv("REQUESTS_CA_BUNDLE", broker.ca)
        clean_identity_env.setenv("AZURE_AUTHORITY_HOST", broker.base)
        clean_identity_env.setenv("AZURE_TENANT_ID", TENANT)
        clean_identity_env.setenv("AZURE_CLIENT_ID", workload["properties"]["clientId"])
        clean_identity_env.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))

        token = WorkloadIdentityCredential(disable_instance_discovery=True).get_token("api://vault/.default")

        claims = validated_claims(broker, token.token, "api://vault")
        assert claims["appid"] == workload["properties"]["clientId"]
        assert claims["oid"] == workload["properties"]["principalId"]
        assert claims["xms_mirid"].endswith("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/uami-workload")
    finally:
        broker.admin("DELETE", path)
