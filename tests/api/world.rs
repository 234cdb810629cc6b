//! The declarative world: the demo world as the default configuration applies it, idempotently.

use ficus::domain::activity::ActivityQuery;
use ficus::domain::federated_credential::CredentialOwner;
use ficus::domain::resource::{IdentityType, ResourceId};
use ficus::domain::tenant::TenantRef;

use crate::helpers::{DEMO_TENANT_ID, TestApp};

const SUB: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

fn arm(path: &str) -> ResourceId {
    ResourceId::parse(&format!("/subscriptions/{SUB}/resourceGroups/rg-demo/providers/{path}")).unwrap()
}

#[tokio::test]
async fn the_demo_world_has_the_tours_identities_applications_and_grants() {
    let app = TestApp::spawn().await;
    let view = app.directory.view();
    let tenant = view.tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
    assert_eq!(tenant.to_string(), DEMO_TENANT_ID);

    let uami = view.identity_by_resource(&arm("Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo")).unwrap();
    let vm = view.resource(&arm("Microsoft.Compute/virtualMachines/vm-demo")).unwrap();
    assert_eq!(vm.identity_type(), IdentityType::SystemAndUserAssigned);
    assert_eq!(vm.user_identities, vec![uami.resource_id.clone()]);
    let web = view.resource(&arm("Microsoft.Web/sites/web-demo")).unwrap();
    assert_eq!(web.identity_type(), IdentityType::SystemAssigned);

    let vault = view.resource_application(tenant, "api://vault").unwrap();
    assert_eq!(vault.app_roles[0].value.as_str(), "Secrets.Read");
    let tracker = view.resource_application(tenant, "api://stock-tracker").unwrap();
    let fics = view.credentials(CredentialOwner::Application(tracker.object_id));
    assert_eq!(fics.len(), 1);
    assert_eq!(fics[0].issuer.as_str(), format!("{}/{DEMO_TENANT_ID}/v2.0", app.base));
    assert_eq!(fics[0].matching.subject(), Some(uami.principal_id.to_string().as_str()));
    assert_eq!(fics[0].audience.as_str(), "api://AzureADTokenExchange");

    assert_eq!(view.role_values(tracker.service_principal_id, vault), ["Secrets.Read"]);
    let vm_principal = vm.system_identity.as_ref().unwrap().principal_id;
    assert_eq!(view.role_values(vm_principal, vault), ["Secrets.Read"]);
    assert!(view.role_values(uami.principal_id, vault).is_empty(), "uami-demo itself holds no role");
}

#[tokio::test]
async fn applying_the_world_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A fixed public URL: the credential trusting uami-demo names this broker's issuer, which would
    // (rightly) be updated if the URL changed between starts, as a new port 0 would make it.
    let stable = "[server]\npublic_url = \"https://ficus.test\"";
    let first = TestApp::spawn_in(dir.path(), stable).await;
    let before = first.registry.load_directory().await.unwrap();
    let tenant = before.tenants[0].id;
    let query = ActivityQuery { tenant_id: tenant, since: None, until: None, target: None, limit: 1000, after: None };
    let writes = first.registry.query_activity(&query).await.unwrap().entries.len();
    // The world: uami-demo, vault, stock-tracker, vm-demo, web-demo, one credential, two role
    // assignments; the admin bootstrap: the management API, the admin client, its role, its secret.
    assert_eq!(writes, 12, "the first start recorded each of its writes");
    first.stop().await.unwrap();

    let second = TestApp::spawn_in(dir.path(), stable).await;
    assert_eq!(second.registry.load_directory().await.unwrap(), before);
    assert_eq!(second.registry.query_activity(&query).await.unwrap().entries.len(), writes, "no new writes");
}

#[tokio::test]
async fn demo_ids_are_the_same_on_every_machine() {
    let (a, b) = (TestApp::spawn().await, TestApp::spawn().await);
    let ids = |app: &TestApp| {
        let view = app.directory.view();
        let tenant = view.tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
        let tracker = view.resource_application(tenant, "api://stock-tracker").unwrap().app_id;
        let uami = view
            .identity_by_resource(&arm("Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"))
            .unwrap()
            .client_id;
        (tracker, uami)
    };
    assert_eq!(ids(&a), ids(&b));
}

/// Writes a world file with one tenant (`name`, `id`) and `applications` (TOML tables under it),
/// and returns the settings that load it.
fn world_file(dir: &std::path::Path, (name, id): (&str, &str), applications: &str) -> String {
    let file = dir.join("world.toml");
    let text = format!("[[tenants]]\nname = \"{name}\"\nid = \"{id}\"\ndisplay_name = \"{name}\"\n\n{applications}");
    std::fs::write(&file, text).unwrap();
    format!("[world]\nfile = \"{}\"", file.display())
}

/// The application named `name` in the tenant named `tenant`.
fn application(app: &TestApp, tenant: &str, name: &str) -> std::sync::Arc<ficus::domain::application::Application> {
    let view = app.directory.view();
    let tenant = view.tenant(&TenantRef::parse(tenant).unwrap()).unwrap().id;
    view.applications(tenant).into_iter().find(|a| a.display_name.as_str() == name).unwrap().clone()
}

#[tokio::test]
async fn an_applications_rate_limit_in_the_world_file_is_applied_and_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = ("limits", "7b1c2d3e-4f50-4617-8283-94a5b6c7d8e9");
    let world = |rate: &str| {
        world_file(
            dir.path(),
            tenant,
            &format!("[[tenants.applications]]\nname = \"batch\"\nrate_limit = \"{rate}\"\n"),
        )
    };
    let rate_of = |app: &TestApp| application(app, "limits", "batch").rate_limit.map(|r| r.to_string());
    let first = TestApp::spawn_in(dir.path(), &world("20/min")).await;
    assert_eq!(rate_of(&first).as_deref(), Some("20/min"));
    first.stop().await.unwrap();
    let second = TestApp::spawn_in(dir.path(), &world("5/s")).await;
    assert_eq!(rate_of(&second).as_deref(), Some("5/s"), "a changed file changes the limit");
}

#[tokio::test]
async fn a_flexible_credential_in_the_world_file_is_compiled_and_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = ("ci", "8b1c2d3e-4f50-4617-8283-94a5b6c7d8e9");
    let world = |expression: &str| {
        let applications = format!(
            "[[tenants.applications]]\nname = \"deployer\"\n\n\
             [[tenants.applications.federated_credentials]]\nname = \"gh-envs\"\n\
             issuer = \"https://token.actions.githubusercontent.com\"\nclaims_matching_expression = \"{expression}\"\n"
        );
        world_file(dir.path(), tenant, &applications)
    };
    let expression_of = |app: &TestApp| {
        let deployer = application(app, "ci", "deployer");
        let view = app.directory.view();
        let fics = view.credentials(CredentialOwner::Application(deployer.object_id));
        let expression = fics[0].matching.expression().expect("a flexible credential");
        (expression.text().to_owned(), expression.clauses().len())
    };
    let first = TestApp::spawn_in(dir.path(), &world("claims['sub'] matches 'repo:octo/*'")).await;
    assert_eq!(expression_of(&first), ("claims['sub'] matches 'repo:octo/*'".to_owned(), 1));
    first.stop().await.unwrap();
    let changed = "claims['sub'] matches 'repo:octo/*' and claims['environment'] eq 'prod'";
    let second = TestApp::spawn_in(dir.path(), &world(changed)).await;
    assert_eq!(expression_of(&second), (changed.to_owned(), 2), "a changed expression is applied");
}
