//! The in-memory directory snapshot is kept current change by change, from the registry's change
//! log: after every kind of write (cascades included) it equals a view built from a full load of
//! the same registry (SQLite and PostgreSQL), and it falls back to a full load when the log was
//! pruned. On PostgreSQL, a write by another replica wakes the snapshot at once (LISTEN/NOTIFY).

use ficus::domain::directory::DirectoryView;
use ficus::domain::federated_credential::CredentialOwner;
use ficus::domain::resource::{IdentityType, ResourceId};
use ficus::domain::tenant::TenantRef;
use ficus::service::admin::{AppRoleInput, ApplicationInput, Caller, CredentialInput, ResourceSpec};

use crate::helpers::TestApp;

const SUB: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

fn caller(app: &TestApp) -> Caller {
    let tenant = app.directory.view().tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
    Caller {
        tenant,
        actor: ficus::domain::activity::Actor {
            id: "11111111-2222-3333-4444-555555555555".into(),
            display_name: "test admin".into(),
        },
    }
}

fn fic(name: &str, subject: &str) -> CredentialInput {
    CredentialInput {
        name: name.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: Some(subject.into()),
        expression: None,
        audiences: None,
        description: Some("from the snapshot test".into()),
    }
}

fn arm(kind: &str, name: &str) -> ResourceId {
    ResourceId::parse(&format!("/subscriptions/{SUB}/resourceGroups/rg-snap/providers/{kind}/{name}")).unwrap()
}

/// The view the request paths read equals one built from scratch from the registry.
async fn assert_view_is_current(app: &TestApp, after: &str) {
    let fresh = DirectoryView::new(app.registry.load_directory().await.unwrap());
    assert!(*app.directory.view() == fresh, "after {after}: the incremental view differs from a full load");
}

#[tokio::test]
async fn the_snapshot_applies_every_kind_of_change_and_equals_a_full_load_after_each() {
    every_kind_of_change_is_applied(TestApp::spawn().await).await;
}

#[tokio::test]
async fn on_postgres_the_snapshot_applies_every_kind_of_change_and_equals_a_full_load_after_each() {
    if let Some(app) = TestApp::spawn_on_postgres("").await {
        every_kind_of_change_is_applied(app).await;
    }
}

async fn every_kind_of_change_is_applied(app: TestApp) {
    let admin = app.admin.clone();
    let who = caller(&app);
    assert_view_is_current(&app, "start-up").await;

    let role = AppRoleInput { value: "Data.Read".into(), display_name: "read".into(), ..Default::default() };
    let input = ApplicationInput {
        display_name: "snap-api".into(),
        identifier_uris: vec!["api://snap".into()],
        app_roles: vec![role],
        rate_limit: Some("50/s".into()),
    };
    let api = admin.create_application(&who, input).await.unwrap();
    assert_view_is_current(&app, "creating an application with a URI and a role").await;
    let client = admin
        .create_application(&who, ApplicationInput { display_name: "snap-client".into(), ..Default::default() })
        .await
        .unwrap();
    admin.reset_client_secret(&who, &client).await.unwrap();
    assert_view_is_current(&app, "setting a client secret").await;
    admin.set_rate_limit(&who, &client.object_id.to_string(), false, Some("5/min")).await.unwrap();
    assert_view_is_current(&app, "setting an application's rate limit").await;

    let owner = CredentialOwner::Application(client.object_id);
    admin.add_credential(&who, owner, fic("one", "repo:o/a:ref:refs/heads/main")).await.unwrap();
    admin.add_credential(&who, owner, fic("two", "repo:o/a:environment:prod")).await.unwrap();
    assert!(app.directory.view().is_trusted_issuer("https://token.actions.githubusercontent.com"));
    assert_view_is_current(&app, "adding credentials").await;
    admin.update_credential(&who, owner, "one", fic("one", "repo:o/a:ref:refs/heads/release")).await.unwrap();
    assert_view_is_current(&app, "updating a credential").await;
    admin.delete_credential(&who, owner, "two").await.unwrap();
    assert_eq!(app.directory.view().credentials(owner).len(), 1, "the deleted credential is gone from the view");
    assert_view_is_current(&app, "deleting a credential").await;

    let grant = admin.assign_role(&who, client.service_principal_id, api.service_principal_id, api.app_roles[0].id);
    let grant = grant.await.unwrap();
    assert_eq!(app.directory.view().role_values(client.service_principal_id, &api), vec!["Data.Read"]);
    assert_view_is_current(&app, "assigning a role").await;

    let uami = arm("Microsoft.ManagedIdentity/userAssignedIdentities", "snap-ua");
    let identity = admin.put_user_identity(&who, &uami, None).await.unwrap();
    let ua_owner = CredentialOwner::Identity(identity.principal_id);
    admin.add_credential(&who, ua_owner, fic("k8s", "system:serviceaccount:ns:sa")).await.unwrap();
    admin.assign_role(&who, identity.principal_id, api.service_principal_id, api.app_roles[0].id).await.unwrap();
    assert_view_is_current(&app, "a user-assigned identity with a credential and a role").await;

    let vm = arm("Microsoft.Compute/virtualMachines", "snap-vm");
    let mut spec = ResourceSpec::new(IdentityType::SystemAndUserAssigned, vec![uami.clone()]);
    spec.addresses = Some(vec!["10.9.0.0/16".parse().unwrap(), "10.9.8.7/32".parse().unwrap()]);
    admin.put_resource(&who, &vm, spec).await.unwrap();
    let site = arm("Microsoft.Web/sites", "snap-site");
    admin.put_resource(&who, &site, ResourceSpec::new(IdentityType::SystemAssigned, vec![])).await.unwrap();
    assert_view_is_current(&app, "resources with identities and addresses").await;
    let view = app.directory.view();
    assert_eq!(view.resource_for_address("10.9.8.7".parse().unwrap()).unwrap().id, vm);
    assert_eq!(view.resource_for_address("10.9.1.1".parse().unwrap()).unwrap().id, vm);
    assert!(view.resource_for_address("10.10.0.1".parse().unwrap()).is_none());

    admin.regenerate_identity_header(&who, &site).await.unwrap();
    let mut spec = ResourceSpec::new(IdentityType::UserAssigned, vec![uami.clone()]);
    spec.addresses = Some(vec!["10.9.0.0/16".parse().unwrap()]);
    admin.put_resource(&who, &vm, spec).await.unwrap();
    assert_view_is_current(&app, "a regenerated header, a dropped system identity and address").await;
    assert_eq!(app.directory.view().resource_for_address("10.9.8.7".parse().unwrap()).unwrap().id, vm);

    admin.remove_role_assignment(&who, grant.id).await.unwrap();
    assert!(app.directory.view().role_values(client.service_principal_id, &api).is_empty());
    assert_view_is_current(&app, "removing a role assignment").await;

    admin.delete_resource(&who, &site).await.unwrap();
    admin.delete_user_identity(&who, &uami).await.unwrap();
    assert!(app.directory.view().credentials(ua_owner).is_empty(), "the identity's credentials went with it");
    assert_view_is_current(&app, "deleting a resource and an identity (cascades)").await;
    admin.delete_application(&who, &api.object_id.to_string(), false).await.unwrap();
    admin.delete_application(&who, &client.object_id.to_string(), false).await.unwrap();
    let view = app.directory.view();
    assert!(view.resource_application(who.tenant, "api://snap").is_none());
    assert!(view.credentials(owner).is_empty());
    assert!(!view.is_trusted_issuer("https://token.actions.githubusercontent.com"));
    assert_view_is_current(&app, "deleting applications (cascades)").await;
}

#[tokio::test]
async fn a_snapshot_behind_a_pruned_change_log_reloads_everything() {
    a_pruned_log_means_a_full_reload(TestApp::spawn().await).await;
}

#[tokio::test]
async fn on_postgres_a_snapshot_behind_a_pruned_change_log_reloads_everything() {
    if let Some(app) = TestApp::spawn_on_postgres("").await {
        a_pruned_log_means_a_full_reload(app).await;
    }
}

async fn a_pruned_log_means_a_full_reload(app: TestApp) {
    let admin = app.admin.clone();
    let who = caller(&app);
    let (_, cursor) = app.registry.load_directory_at().await.unwrap();
    let input = ApplicationInput { display_name: "written-behind".into(), ..Default::default() };
    let created = admin.create_application(&who, input).await.unwrap();
    // Another reader pruned past everything, including the change this snapshot just applied.
    app.registry.prune_changes(cursor + 1_000).await.unwrap();
    assert!(app.registry.load_changes(cursor).await.unwrap().is_none(), "the log no longer reaches back");
    let input = ApplicationInput { display_name: "written-after".into(), ..Default::default() };
    let after = admin.create_application(&who, input).await.unwrap();
    let view = app.directory.view();
    assert!(view.application(who.tenant, created.object_id).is_some());
    assert!(view.application(who.tenant, after.object_id).is_some(), "seen through a full reload");
    assert_view_is_current(&app, "a full reload").await;
}

#[tokio::test]
async fn a_write_committed_by_another_process_reaches_the_view_within_the_refresh_interval() {
    use ficus::domain::application::{Application, DisplayName};
    use ficus::domain::ids::{ClientId, ObjectId};
    use ficus::domain::ports::Registry;

    let app = TestApp::spawn_with("[storage]\nrefresh_interval = \"50ms\"").await;
    let tenant = caller(&app).tenant;
    // A second writer on the same database file: another broker, or a tool.
    let other = ficus::store::sqlite::SqliteRegistry::open(&app.dir.join("data/ficus.db")).await.unwrap();
    let written = Application {
        object_id: ObjectId::random(),
        app_id: ClientId::random(),
        service_principal_id: ObjectId::random(),
        tenant_id: tenant,
        display_name: DisplayName::parse("written-elsewhere").unwrap(),
        identifier_uris: vec![],
        app_roles: vec![],
        rate_limit: None,
    };
    other.create_application(&written).await.unwrap();
    app.eventually("the other process's write is in the view", || async {
        app.directory.view().application(tenant, written.object_id).is_some()
    })
    .await;
    assert_view_is_current(&app, "following another writer").await;
}

#[tokio::test]
async fn on_postgres_another_replicas_write_wakes_the_view_without_waiting_for_the_poll() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    // Polling once an hour: only the notification can bring the change in time.
    let quiet = "[storage]\nrefresh_interval = \"1h\"";
    let a = TestApp::spawn_on_database(&url, quiet).await;
    let b = TestApp::spawn_on_database(&url, quiet).await;
    let who = caller(&a);
    let input = ApplicationInput { display_name: "written-on-a".into(), ..Default::default() };
    let written = a.admin.create_application(&who, input).await.unwrap();
    b.eventually("replica B sees replica A's write", || async {
        b.directory.view().application(who.tenant, written.object_id).is_some()
    })
    .await;
    assert_view_is_current(&b, "following replica A").await;
}
