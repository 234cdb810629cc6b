//! The `Registry` port's contract, run against every backend: SQLite in a file and in memory, and
//! PostgreSQL (a fresh database on the server `scripts/test` starts).

use std::sync::Arc;

use ficus::domain::activity::{ActivityEntry, ActivityQuery, Actor, Outcome};
use ficus::domain::application::{AppRole, Application, DisplayName, IdentifierUri, RoleValue};
use ficus::domain::federated_credential::{
    Audience, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy, Subject, SubjectMatch,
};
use ficus::domain::ids::{ClientId, ObjectId};
use ficus::domain::ports::{Conflict, Registry, StoreError};
use ficus::domain::resource::{ComputeResource, IdentityHeader, ManagedIdentity, ResourceId, ResourceKind};
use ficus::domain::role_assignment::{Principal, RoleAssignment};
use ficus::domain::tenant::{Tenant, TenantId, TenantName};
use ficus::store::postgres::PoolSettings;
use ficus::store::{PostgresRegistry, SqliteRegistry};
use time::macros::datetime;

const SUB: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

struct Fixture {
    registry: Arc<dyn Registry>,
    tenant: TenantId,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_file() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let registry = SqliteRegistry::open(&dir.path().join("ficus.db")).await.unwrap();
    seed(Arc::new(registry), Some(dir)).await
}

async fn sqlite_memory() -> Fixture {
    seed(Arc::new(SqliteRegistry::in_memory().await.unwrap()), None).await
}

async fn postgres() -> Option<Fixture> {
    let url = crate::pg::fresh_database().await?;
    let registry = PostgresRegistry::open(&url, PoolSettings::default()).await.unwrap();
    Some(seed(Arc::new(registry), None).await)
}

async fn seed(registry: Arc<dyn Registry>, dir: Option<tempfile::TempDir>) -> Fixture {
    let tenant = Tenant {
        id: TenantId::parse("5e2d1c0a-7f3b-4e8d-9a61-0c4b8f2e9d17").unwrap(),
        name: TenantName::parse("demo").unwrap(),
        display_name: "Demo".into(),
    };
    registry.upsert_tenant(&tenant).await.unwrap();
    registry.upsert_subscription(SUB.parse().unwrap(), tenant.id).await.unwrap();
    Fixture { registry, tenant: tenant.id, _dir: dir }
}

fn application(tenant: TenantId, uri: &str, roles: &[&str]) -> Application {
    Application {
        object_id: ObjectId::random(),
        app_id: ClientId::random(),
        service_principal_id: ObjectId::random(),
        tenant_id: tenant,
        display_name: DisplayName::parse(uri).unwrap(),
        identifier_uris: vec![IdentifierUri::parse(uri).unwrap()],
        app_roles: roles
            .iter()
            .map(|v| AppRole {
                id: ObjectId::random(),
                value: RoleValue::parse(v).unwrap(),
                display_name: v.to_string(),
                description: String::new(),
            })
            .collect(),
        rate_limit: None,
    }
}

fn credential(owner: CredentialOwner, name: &str, subject: &str) -> FederatedCredential {
    FederatedCredential {
        id: ObjectId::random(),
        owner,
        name: CredentialName::parse(name).unwrap(),
        issuer: Issuer::parse("https://issuer.example", IssuerPolicy::default()).unwrap(),
        matching: SubjectMatch::Exact(Subject::parse(subject).unwrap()),
        audience: Audience::parse_list(None).unwrap(),
        description: None,
    }
}

fn resource(kind: ResourceKind, name: &str) -> ResourceId {
    ResourceId::new(kind, SUB.parse().unwrap(), "rg-demo", name).unwrap()
}

fn compute(
    tenant: TenantId,
    id: ResourceId,
    system_identity: Option<ManagedIdentity>,
    user_identities: Vec<ResourceId>,
) -> ComputeResource {
    ComputeResource {
        id,
        tenant_id: tenant,
        system_identity,
        user_identities,
        addresses: vec![],
        identity_header: None,
    }
}

fn identity(tenant: TenantId, id: ResourceId) -> ManagedIdentity {
    ManagedIdentity {
        principal_id: ObjectId::random(),
        client_id: ClientId::random(),
        tenant_id: tenant,
        resource_id: id,
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite_file().await).await; })*
        }
        mod sqlite_memory_backend {
            $(#[tokio::test] async fn $name() { super::$name(super::sqlite_memory().await).await; })*
        }
        mod postgres_backend {
            $(#[tokio::test] async fn $name() {
                if let Some(fixture) = super::postgres().await { super::$name(fixture).await; }
            })*
        }
    };
}

contract!(
    applications_round_trip_with_their_uris_and_roles,
    identifier_uris_are_unique_per_tenant_case_insensitively,
    the_twenty_first_credential_is_refused_and_nothing_changes,
    credential_names_and_issuer_subject_pairs_are_unique_per_owner,
    credential_update_changes_everything_but_the_name,
    deleting_an_application_removes_its_credentials_and_role_assignments,
    system_identity_lives_and_dies_with_its_resource,
    deleting_a_user_assigned_identity_removes_its_assignments,
    a_web_app_takes_its_slots_with_it,
    role_assignments_name_a_role_of_the_resource,
    activity_is_read_newest_first_with_paging_and_filters,
    sign_ins_are_written_in_large_batches_and_read_back_with_filters,
);

async fn applications_round_trip_with_their_uris_and_roles(f: Fixture) {
    let app = application(f.tenant, "api://vault", &["Secrets.Read", "Secrets.Write"]);
    f.registry.create_application(&app).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert_eq!(directory.applications, vec![app]);
}

async fn identifier_uris_are_unique_per_tenant_case_insensitively(f: Fixture) {
    f.registry.create_application(&application(f.tenant, "api://vault", &[])).await.unwrap();
    let clash = f.registry.create_application(&application(f.tenant, "api://VAULT", &[])).await;
    assert!(matches!(clash, Err(StoreError::Conflict(Conflict::IdentifierUri))), "{clash:?}");
    assert_eq!(f.registry.load_directory().await.unwrap().applications.len(), 1, "the failed create left nothing");
}

async fn the_twenty_first_credential_is_refused_and_nothing_changes(f: Fixture) {
    let app = application(f.tenant, "api://app", &[]);
    f.registry.create_application(&app).await.unwrap();
    let owner = CredentialOwner::Application(app.object_id);
    for i in 0..20 {
        f.registry.add_credential(&credential(owner, &format!("fic-{i}"), &format!("sub-{i}"))).await.unwrap();
    }
    let refused = f.registry.add_credential(&credential(owner, "fic-20", "sub-20")).await;
    assert!(matches!(refused, Err(StoreError::Conflict(Conflict::CredentialLimit))), "{refused:?}");
    assert_eq!(f.registry.load_directory().await.unwrap().credentials.len(), 20);
}

async fn credential_names_and_issuer_subject_pairs_are_unique_per_owner(f: Fixture) {
    let (a, b) = (application(f.tenant, "api://a", &[]), application(f.tenant, "api://b", &[]));
    f.registry.create_application(&a).await.unwrap();
    f.registry.create_application(&b).await.unwrap();
    let owner = CredentialOwner::Application(a.object_id);
    f.registry.add_credential(&credential(owner, "main", "repo:x")).await.unwrap();
    let same_name = f.registry.add_credential(&credential(owner, "main", "repo:y")).await;
    assert!(matches!(same_name, Err(StoreError::Conflict(Conflict::CredentialName))), "{same_name:?}");
    let same_pair = f.registry.add_credential(&credential(owner, "other", "repo:x")).await;
    assert!(matches!(same_pair, Err(StoreError::Conflict(Conflict::CredentialIssuerSubject))), "{same_pair:?}");
    // Another owner may reuse both.
    f.registry.add_credential(&credential(CredentialOwner::Application(b.object_id), "main", "repo:x")).await.unwrap();
}

async fn credential_update_changes_everything_but_the_name(f: Fixture) {
    let app = application(f.tenant, "api://app", &[]);
    f.registry.create_application(&app).await.unwrap();
    let mut fic = credential(CredentialOwner::Application(app.object_id), "main", "repo:x");
    f.registry.add_credential(&fic).await.unwrap();
    fic.matching = SubjectMatch::Exact(Subject::parse("repo:y").unwrap());
    f.registry.update_credential(&fic).await.unwrap();
    assert_eq!(f.registry.load_directory().await.unwrap().credentials, vec![fic.clone()]);
    // A flexible credential is stored as its expression and compiled again when loaded.
    fic.matching =
        SubjectMatch::parse(None, Some(("claims['sub'] matches 'repo:*' and claims['env'] eq 'p'", 1))).unwrap();
    f.registry.update_credential(&fic).await.unwrap();
    assert_eq!(f.registry.load_directory().await.unwrap().credentials, vec![fic.clone()]);
    fic.name = CredentialName::parse("renamed").unwrap();
    assert!(matches!(f.registry.update_credential(&fic).await, Err(StoreError::NotFound(_))));
}

async fn deleting_an_application_removes_its_credentials_and_role_assignments(f: Fixture) {
    let vault = application(f.tenant, "api://vault", &["Secrets.Read"]);
    let client = application(f.tenant, "api://client", &[]);
    f.registry.create_application(&vault).await.unwrap();
    f.registry.create_application(&client).await.unwrap();
    f.registry.add_credential(&credential(CredentialOwner::Application(client.object_id), "main", "x")).await.unwrap();
    let assignment = RoleAssignment {
        id: ObjectId::random(),
        tenant_id: f.tenant,
        principal: Principal::Application(client.service_principal_id),
        resource_id: vault.service_principal_id,
        app_role_id: vault.app_roles[0].id,
    };
    f.registry.create_role_assignment(&assignment).await.unwrap();
    f.registry.delete_application(f.tenant, client.object_id).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert!(directory.credentials.is_empty());
    assert!(directory.role_assignments.is_empty());
    assert!(matches!(f.registry.delete_application(f.tenant, client.object_id).await, Err(StoreError::NotFound(_))));
}

async fn system_identity_lives_and_dies_with_its_resource(f: Fixture) {
    let vm = resource(ResourceKind::VirtualMachine, "vm-demo");
    let system = identity(f.tenant, vm.clone());
    let mut machine = compute(f.tenant, vm.clone(), Some(system.clone()), vec![]);
    machine.addresses = vec!["10.0.0.4/32".parse().unwrap()];
    machine.identity_header = Some(IdentityHeader::new("header-secret".into()));
    f.registry.put_resource(&machine).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert_eq!(directory.identities, vec![system.clone()]);
    assert_eq!(directory.resources, vec![machine.clone()], "with its addresses and identity header");

    // Putting it again unchanged keeps the same identity.
    f.registry.put_resource(&machine).await.unwrap();
    assert_eq!(f.registry.load_directory().await.unwrap().identities, vec![system]);

    machine.system_identity = None;
    f.registry.put_resource(&machine).await.unwrap();
    assert!(f.registry.load_directory().await.unwrap().identities.is_empty(), "disabled: identity deleted");

    machine.system_identity = Some(identity(f.tenant, vm.clone()));
    f.registry.put_resource(&machine).await.unwrap();
    f.registry.delete_resource(&vm).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert!(directory.identities.is_empty() && directory.resources.is_empty(), "deleted with its resource");
}

async fn deleting_a_user_assigned_identity_removes_its_assignments(f: Fixture) {
    let uami = identity(f.tenant, resource(ResourceKind::UserAssignedIdentity, "uami-demo"));
    f.registry.create_identity(&uami).await.unwrap();
    f.registry.add_credential(&credential(CredentialOwner::Identity(uami.principal_id), "fic", "s")).await.unwrap();
    for name in ["vm-a", "vm-b"] {
        let vm = compute(f.tenant, resource(ResourceKind::VirtualMachine, name), None, vec![uami.resource_id.clone()]);
        f.registry.put_resource(&vm).await.unwrap();
    }
    let directory = f.registry.load_directory().await.unwrap();
    assert!(directory.resources.iter().all(|r| r.user_identities == vec![uami.resource_id.clone()]));

    f.registry.delete_identity(uami.principal_id).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert_eq!(directory.resources.len(), 2, "the resources stay");
    assert!(directory.resources.iter().all(|r| r.user_identities.is_empty()));
    assert!(directory.credentials.is_empty());
}

async fn a_web_app_takes_its_slots_with_it(f: Fixture) {
    for (kind, name) in [(ResourceKind::WebApp, "web-demo"), (ResourceKind::WebAppSlot, "web-demo/slots/staging")] {
        let id = resource(kind, name);
        let web = compute(f.tenant, id.clone(), Some(identity(f.tenant, id)), vec![]);
        f.registry.put_resource(&web).await.unwrap();
    }
    let other = resource(ResourceKind::WebApp, "web-demo2");
    f.registry.put_resource(&compute(f.tenant, other, None, vec![])).await.unwrap();
    assert_eq!(f.registry.load_directory().await.unwrap().identities.len(), 2, "a slot has its own identity");

    f.registry.delete_resource(&resource(ResourceKind::WebApp, "web-demo")).await.unwrap();
    let directory = f.registry.load_directory().await.unwrap();
    assert_eq!(directory.resources.len(), 1, "only web-demo2 (not a slot of web-demo) remains");
    assert!(directory.identities.is_empty());
}

async fn role_assignments_name_a_role_of_the_resource(f: Fixture) {
    let vault = application(f.tenant, "api://vault", &["Secrets.Read"]);
    let other = application(f.tenant, "api://other", &["Other.Role"]);
    let client = application(f.tenant, "api://client", &[]);
    for app in [&vault, &other, &client] {
        f.registry.create_application(app).await.unwrap();
    }
    let mut assignment = RoleAssignment {
        id: ObjectId::random(),
        tenant_id: f.tenant,
        principal: Principal::Application(client.service_principal_id),
        resource_id: vault.service_principal_id,
        app_role_id: other.app_roles[0].id,
    };
    let wrong_role = f.registry.create_role_assignment(&assignment).await;
    assert!(matches!(wrong_role, Err(StoreError::NotFound(_))), "{wrong_role:?}");
    assignment.app_role_id = vault.app_roles[0].id;
    f.registry.create_role_assignment(&assignment).await.unwrap();
    assignment.id = ObjectId::random();
    let twice = f.registry.create_role_assignment(&assignment).await;
    assert!(matches!(twice, Err(StoreError::Conflict(Conflict::RoleAssignment))), "{twice:?}");
    assignment.principal = Principal::Identity(ObjectId::random());
    let nobody = f.registry.create_role_assignment(&assignment).await;
    assert!(matches!(nobody, Err(StoreError::NotFound(_))), "{nobody:?}");
    assert_eq!(f.registry.load_directory().await.unwrap().role_assignments.len(), 1);
}

async fn activity_is_read_newest_first_with_paging_and_filters(f: Fixture) {
    let t0 = datetime!(2026-01-01 00:00 UTC);
    for i in 0..5i64 {
        let entry = ActivityEntry {
            id: uuid::Uuid::new_v4(),
            time: t0 + time::Duration::minutes(i),
            tenant_id: f.tenant,
            actor: Actor::system(),
            operation: "Add application".into(),
            target_type: "Application",
            target: format!("target-{}", i % 2),
            outcome: if i == 4 { Outcome::Failure } else { Outcome::Success },
            reason: String::new(),
        };
        f.registry.append_activity(&entry).await.unwrap();
    }
    let mut query =
        ActivityQuery { tenant_id: f.tenant, since: None, until: None, target: None, limit: 2, after: None };
    let first = f.registry.query_activity(&query).await.unwrap();
    assert_eq!(first.entries.len(), 2);
    assert_eq!(first.entries[0].outcome, Outcome::Failure, "newest first");
    query.after = first.next;
    let second = f.registry.query_activity(&query).await.unwrap();
    assert_eq!(second.entries[0].time, t0 + time::Duration::minutes(2));

    let by_target = ActivityQuery { target: Some("target-1".into()), limit: 10, ..query.clone() };
    let by_target = ActivityQuery { after: None, ..by_target };
    assert_eq!(f.registry.query_activity(&by_target).await.unwrap().entries.len(), 2);
    let by_time =
        ActivityQuery { since: Some(t0 + time::Duration::minutes(3)), target: None, after: None, limit: 10, ..query };
    assert_eq!(f.registry.query_activity(&by_time).await.unwrap().entries.len(), 2);
}

#[tokio::test]
async fn fifty_concurrent_credential_writes_to_one_file_database_admit_exactly_twenty_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ficus.db");
    let f = seed(Arc::new(SqliteRegistry::open(&path).await.unwrap()), None).await;
    let app = application(f.tenant, "api://app", &[]);
    f.registry.create_application(&app).await.unwrap();
    let owner = CredentialOwner::Application(app.object_id);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let registry = f.registry.clone();
            tokio::spawn(async move {
                registry.add_credential(&credential(owner, &format!("fic-{i}"), &format!("s-{i}"))).await
            })
        })
        .collect();
    let mut admitted = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(StoreError::Conflict(Conflict::CredentialLimit)) => refused += 1,
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!((admitted, refused), (20, 30));
    drop(f);

    let reopened = SqliteRegistry::open(&path).await.unwrap();
    assert_eq!(reopened.load_directory().await.unwrap().credentials.len(), 20);
}

async fn sign_ins_are_written_in_large_batches_and_read_back_with_filters(f: Fixture) {
    use ficus::domain::sign_in::{MsiType, SignIn, SignInKind, SignInPrincipal, SignInQuery};
    let principal = ObjectId::random();
    let batch: Vec<SignIn> = (0..1200u64)
        .map(|i| SignIn {
            id: uuid::Uuid::new_v4(),
            time: datetime!(2026-01-01 00:00 UTC) + time::Duration::seconds(i as i64),
            tenant_id: f.tenant,
            kind: SignInKind::ManagedIdentity,
            principal: SignInPrincipal {
                principal_id: (i % 2 == 0).then_some(principal),
                client_id: Some(format!("client-{i}")),
                name: format!("identity-{i}"),
                msi_type: [None, Some(MsiType::SystemAssigned), Some(MsiType::UserAssigned)][(i % 3) as usize],
            },
            compute_resource: (i % 4 == 0).then(|| {
                format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-{i}")
            }),
            credential_id: (i % 5 == 1).then(ObjectId::random),
            resource: "api://vault".into(),
            caller_address: Some("127.0.0.1".parse().unwrap()),
            outcome: if i % 3 == 0 { Outcome::Failure } else { Outcome::Success },
            status_code: if i % 3 == 0 { 700016 } else { 0 },
            error_code: if i % 3 == 0 { "identity_not_found".into() } else { String::new() },
            reason: String::new(),
            latency: std::time::Duration::from_micros(i),
            cached: i % 5 == 0,
            count: u32::try_from(i % 7 + 1).unwrap(),
        })
        .collect();
    f.registry.append_sign_ins(&batch).await.unwrap();
    let query = SignInQuery {
        tenant_id: f.tenant,
        since: None,
        until: None,
        principal_id: None,
        outcome: None,
        limit: 1000,
        after: None,
    };
    let page = f.registry.query_sign_ins(&query).await.unwrap();
    assert_eq!(page.entries.len(), 1000);
    assert_eq!(page.entries[0], batch[1199], "newest first, every field kept");
    assert_eq!(page.entries[..5], batch[1195..].iter().rev().cloned().collect::<Vec<_>>()[..], "each kind of entry");
    let rest = f.registry.query_sign_ins(&SignInQuery { after: page.next, ..query.clone() }).await.unwrap();
    assert_eq!(rest.entries.len(), 200);
    let mine = SignInQuery { principal_id: Some(principal), outcome: Some(Outcome::Failure), ..query };
    assert_eq!(f.registry.query_sign_ins(&mine).await.unwrap().entries.len(), 200, "even and divisible by 3: 1200/6");
}

#[tokio::test]
async fn on_postgres_a_role_assignment_racing_the_deletion_of_its_resource_never_outlives_it() {
    let Some(url) = crate::pg::fresh_database().await else { return };
    // Two handles with pools of their own: two replicas of one cluster.
    let a = seed(Arc::new(PostgresRegistry::open(&url, PoolSettings::default()).await.unwrap()), None).await;
    let b: Arc<dyn Registry> = Arc::new(PostgresRegistry::open(&url, PoolSettings::default()).await.unwrap());
    let mut assigned = 0;
    for round in 0..20 {
        let resource = application(a.tenant, &format!("api://resource-{round}"), &["Data.Read"]);
        let client = application(a.tenant, &format!("api://client-{round}"), &[]);
        a.registry.create_application(&resource).await.unwrap();
        a.registry.create_application(&client).await.unwrap();
        let assignment = RoleAssignment {
            id: ObjectId::random(),
            tenant_id: a.tenant,
            principal: Principal::Application(client.service_principal_id),
            resource_id: resource.service_principal_id,
            app_role_id: resource.app_roles[0].id,
        };
        let (deleted, created) = tokio::join!(
            a.registry.delete_application(a.tenant, resource.object_id),
            b.create_role_assignment(&assignment)
        );
        deleted.unwrap();
        match created {
            Ok(()) => assigned += 1,
            Err(StoreError::NotFound(_)) => {}
            Err(other) => panic!("round {round}: unexpected error {other:?}"),
        }
    }
    let directory = b.load_directory().await.unwrap();
    let live: std::collections::HashSet<_> = directory.applications.iter().map(|a| a.service_principal_id).collect();
    assert!(
        directory.role_assignments.iter().all(|r| live.contains(&r.resource_id)),
        "no role assignment names a deleted resource ({assigned} of 20 were created before their resource went)"
    );
    assert!(directory.role_assignments.is_empty(), "every resource was deleted, so every assignment went with it");
}
