"""The admin plane with Microsoft's own SDKs, unmodified: msgraph-sdk's GraphServiceClient manages
applications and their federated identity credentials and reads both logs into its models;
azure-mgmt-msi's ManagedServiceIdentityClient manages user-assigned identities and theirs. Both
ask for Graph's and ARM's default audiences, as they do against Azure."""

import asyncio
import datetime
import json
import ssl
import uuid

import httpx
import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.identity.aio import ClientSecretCredential as AsyncClientSecretCredential
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.msi.models import FederatedIdentityCredential as ArmCredential
from azure.mgmt.msi.models import Identity
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.audit_logs.sign_ins.sign_ins_request_builder import SignInsRequestBuilder
from msgraph.generated.models.application import Application
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.operation_result import OperationResult
from msgraph.generated.models.sign_in import SignIn
from msgraph_core import GraphClientFactory

from conftest import ARM_RG

SUBSCRIPTION = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9"
EXCHANGE = "api://AzureADTokenExchange"
# Graph beta's signIn properties that v1.0's model has not (yet): they arrive in additional_data.
BETA_SIGN_IN_PROPERTIES = {
    "signInEventTypes",
    "managedServiceIdentity",
    "federatedCredentialId",
    "processingTimeInMilliseconds",
}


def admin_client_credential(broker, credential_type):
    """`credential_type` (azure-identity's sync or async ClientSecretCredential) for the broker's
    admin client, pointed at the broker."""
    secret = json.loads((broker.dir / "keys" / "admin" / "demo.json").read_text())
    return credential_type(
        secret["tenant_id"],
        secret["client_id"],
        secret["client_secret"],
        authority=broker.base,
        connection_verify=broker.ca,
        disable_instance_discovery=True,
    )


def graph_client(broker, credential) -> GraphServiceClient:
    """Graph's client with its base URL set to the broker. Kiota sends tokens only to the hosts it
    is told to trust, so the broker's host is named; the scope is Graph's own."""
    host = broker.base.removeprefix("https://").split(":")[0]
    auth = AzureIdentityAuthenticationProvider(
        credential, scopes=["https://graph.microsoft.com/.default"], allowed_hosts=[host]
    )
    trust = ssl.create_default_context(cafile=broker.ca)
    http = GraphClientFactory.create_with_default_middleware(client=httpx.AsyncClient(verify=trust))
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = f"{broker.base}/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def with_graph(broker, scenario):
    """Runs `scenario(client)` with a Graph client signed in as the admin client."""

    async def run():
        async with admin_client_credential(broker, AsyncClientSecretCredential) as credential:
            return await scenario(graph_client(broker, credential))

    return asyncio.run(run())


def credential(name: str, subject: str) -> FederatedIdentityCredential:
    return FederatedIdentityCredential(
        name=name, issuer="https://token.actions.githubusercontent.com", subject=subject, audiences=[EXCHANGE]
    )


def test_graph_sdk_manages_an_application_and_its_federated_credentials_up_to_the_limit(broker):
    async def scenario(client: GraphServiceClient):
        app = await client.applications.post(Application(display_name=f"graph-sdk-{uuid.uuid4().hex[:8]}"))
        assert app.app_id and app.id
        by_id = await client.applications.by_application_id(app.id).get()
        assert by_id.display_name == app.display_name
        fics = client.applications.by_application_id(app.id).federated_identity_credentials

        created = await fics.post(credential("github-main", "repo:octo/app:ref:refs/heads/main"))
        assert (created.name, created.audiences) == ("github-main", [EXCHANGE])
        assert created.additional_data == {}, "nothing outside Graph v1.0's federatedIdentityCredential"
        listed = await fics.get()
        assert [c.id for c in listed.value] == [created.id]

        await fics.by_federated_identity_credential_id(created.id).patch(
            FederatedIdentityCredential(subject="repo:octo/app:environment:prod")
        )
        updated = await fics.by_federated_identity_credential_id(created.id).get()
        assert (updated.subject, updated.issuer) == ("repo:octo/app:environment:prod", created.issuer)

        for i in range(19):
            await fics.post(credential(f"branch-{i}", f"repo:octo/app:ref:refs/heads/b{i}"))
        with pytest.raises(ODataError) as refused:
            await fics.post(credential("one-too-many", "repo:octo/app:ref:refs/heads/extra"))
        assert refused.value.response_status_code == 400
        assert "limit of 20" in refused.value.error.message, refused.value.error.message
        assert refused.value.error.code, "Graph's error body has a code"

        await fics.by_federated_identity_credential_id(created.id).delete()
        remaining = await fics.get()
        assert len(remaining.value) == 19 and created.id not in {c.id for c in remaining.value}
        await client.applications.by_application_id(app.id).delete()
        with pytest.raises(ODataError) as gone:
            await client.applications.by_application_id(app.id).get()
        assert gone.value.response_status_code == 404
        return app

    app = with_graph(broker, scenario)

    async def audits(client: GraphServiceClient):
        return (await client.audit_logs.directory_audits.get()).value

    entries = with_graph(broker, audits)
    # An addition names what it adds (the display name: the id is not known yet), later writes its id.
    mine = [e for e in entries if any(t.id in (app.id, app.display_name) for t in e.target_resources)]
    operations = [e.activity_display_name for e in mine]
    assert "Add application" in operations and "Delete application" in operations, operations
    assert all(e.result == OperationResult.Success and e.logged_by_service == "Core Directory" for e in mine)
    assert {e.activity_display_name: e.operation_type for e in mine}["Delete application"] == "Delete"
    assert all(e.initiated_by.app.display_name == "ficus-admin" for e in mine)
    assert all(isinstance(e.activity_date_time, datetime.datetime) for e in mine)


def test_graph_sdk_reads_sign_ins_into_its_models_with_graphs_types_and_pages_through_them(broker):
    uami = broker.admin("GET", ARM_RG + "/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")
    imds = f"{broker.mi}/metadata/identity/oauth2/token?api-version=2018-02-01"
    as_uami = f"&client_id={uami['properties']['clientId']}"
    # Two sign-ins as the identity (for two resources: identical requests would be one entry),
    # one as the VM's own identity, one refused.
    for query in [as_uami + "&resource=api://vault", as_uami + f"&resource={EXCHANGE}", "&resource=api://vault",
                  f"&client_id={uuid.uuid4()}&resource=api://vault"]:
        requests.get(imds + query, headers={"Metadata": "true"}, timeout=10)

    async def scenario(client: GraphServiceClient):
        def page(filter: str, top: int = 100):
            query = SignInsRequestBuilder.SignInsRequestBuilderGetQueryParameters(filter=filter, top=top)
            return client.audit_logs.sign_ins.get(RequestConfiguration(query_parameters=query))

        as_uami = f"appId eq '{uami['properties']['clientId']}'"
        for _ in range(50):  # the log is written in the background, within a flush interval
            mine = await page(as_uami)
            failures = await page("status/errorCode ne 0")
            if len(mine.value) >= 2 and any(e.additional_data.get("ficusErrorCode") == "identity_not_found" for e in failures.value):
                break
            await asyncio.sleep(0.1)
        first = await page(as_uami + " and status/errorCode eq 0", top=1)
        following = await client.audit_logs.sign_ins.with_url(first.odata_next_link).get() if first.odata_next_link else None
        return mine.value, failures.value, first, following

    mine, failures, first, following = with_graph(broker, scenario)
    entry: SignIn = mine[0]
    assert entry.app_id == uami["properties"]["clientId"]
    assert (entry.app_display_name, entry.service_principal_name) == ("uami-demo", "uami-demo")
    assert entry.service_principal_id == uami["properties"]["principalId"]
    assert isinstance(entry.created_date_time, datetime.datetime) and entry.created_date_time.tzinfo
    assert (entry.status.error_code, entry.status.additional_data) == (0, {})
    assert entry.is_interactive is False
    assert entry.additional_data["signInEventTypes"] == ["managedIdentity"]
    assert entry.additional_data["managedServiceIdentity"]["msiType"] == "userAssigned"
    assert entry.additional_data["managedServiceIdentity"]["associatedResourceId"].endswith("/virtualMachines/vm-demo")
    assert isinstance(entry.additional_data["processingTimeInMilliseconds"], int)
    for e in mine + failures:
        unknown = {k for k in e.additional_data if k not in BETA_SIGN_IN_PROPERTIES and not k.startswith("ficus")}
        assert not unknown, f"every property is Graph's (v1.0, else beta) or a ficus extension: {unknown}"

    refused = next(e for e in failures if e.additional_data.get("ficusErrorCode") == "identity_not_found")
    assert isinstance(refused.status.error_code, int) and refused.status.error_code == 700016
    assert refused.status.failure_reason == "Identity not found"

    assert len(first.value) == 1 and first.odata_next_link.startswith(broker.base)
    assert following is not None and len(following.value) >= 1
    assert following.value[0].id != first.value[0].id
    assert following.value[0].created_date_time <= first.value[0].created_date_time


def arm_client(broker) -> ManagedServiceIdentityClient:
    """ARM's client with its base URL set to the broker, asking for ARM's own audience (its default)."""
    credential = admin_client_credential(broker, ClientSecretCredential)
    return ManagedServiceIdentityClient(credential, SUBSCRIPTION, base_url=broker.base, connection_verify=broker.ca)


def test_arm_sdk_creates_a_user_assigned_identity_and_its_federated_credentials(broker):
    client = arm_client(broker)
    name = f"uami-arm-{uuid.uuid4().hex[:8]}"
    identity = client.user_assigned_identities.create_or_update("rg-demo", name, Identity(location="westeurope"))
    assert identity.name == name and identity.client_id and identity.principal_id
    assert identity.id.endswith(f"/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
    assert name in [i.name for i in client.user_assigned_identities.list_by_resource_group("rg-demo")]
    assert name in [i.name for i in client.user_assigned_identities.list_by_subscription()]

    body = ArmCredential(issuer="https://kubernetes.example", subject="system:serviceaccount:ns:app", audiences=[EXCHANGE])
    created = client.federated_identity_credentials.create_or_update("rg-demo", name, "k8s-app", body)
    assert (created.name, created.subject, created.audiences) == ("k8s-app", "system:serviceaccount:ns:app", [EXCHANGE])
    body.subject = "system:serviceaccount:ns:other"
    client.federated_identity_credentials.create_or_update("rg-demo", name, "k8s-app", body)
    assert client.federated_identity_credentials.get("rg-demo", name, "k8s-app").subject == body.subject
    for i in range(19):
        extra = ArmCredential(issuer="https://kubernetes.example", subject=f"system:serviceaccount:ns:sa-{i}")
        client.federated_identity_credentials.create_or_update("rg-demo", name, f"k8s-{i}", extra)
    with pytest.raises(HttpResponseError) as refused:
        client.federated_identity_credentials.create_or_update(
            "rg-demo", name, "k8s-20", ArmCredential(issuer="https://kubernetes.example", subject="s")
        )
    assert refused.value.status_code == 400 and "limit of 20" in str(refused.value.message)
    assert len(list(client.federated_identity_credentials.list("rg-demo", name))) == 20

    client.federated_identity_credentials.delete("rg-demo", name, "k8s-app")
    assert len(list(client.federated_identity_credentials.list("rg-demo", name))) == 19
    client.user_assigned_identities.delete("rg-demo", name)
    with pytest.raises(ResourceNotFoundError):
        client.user_assigned_identities.get("rg-demo", name)
