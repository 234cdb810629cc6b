//! Registry administration through the admin use cases, on the running broker's real SQLite
//! registry: invariants refused with their documented errors, nothing written when refused,
//! every attempt in the activity log with its caller.

use std::sync::Arc;

use ficus::domain::activity::{ActivityQuery, Actor, Outcome};
use ficus::domain::federated_credential::CredentialOwner;
use ficus::domain::resource::{IdentityType, ResourceId, ResourceKind};
use ficus::domain::tenant::TenantRef;
use ficus::service::admin::{AdminError, AdminService, ApplicationInput, Caller, CredentialInput, ResourceSpec};

use crate::helpers::TestApp;

const SUB: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";

fn caller(app: &TestApp) -> Caller {
    let tenant = app.directory.view().tenant(&TenantRef::parse("demo").unwrap()).unwrap().id;
    Caller {
        tenant,
        actor: Actor { id: "11111111-2222-3333-4444-555555555555".into(), display_name: "test admin".into() },
    }
}

fn fic(i: usize) -> CredentialInput {
    CredentialInput {
        name: format!("fic-{i}"),
        issuer: "https://token.actions.githubusercontent.com".into(),
        subject: Some(format!("repo:octo/app:environment:env-{i}")),
        expression: None,
        audiences: None,
        description: None,
    }
}

async fn new_app(admin: &AdminService, caller: &Caller, uri: &str) -> CredentialOwner {
    let input =
        ApplicationInput { display_name: uri.into(), identifier_uris: vec![uri.into()], ..ApplicationInput::default() };
    CredentialOwner::Application(admin.create_application(caller, input).await.unwrap().object_id)
}

#[tokio::test]
async fn fifty_concurrent_credential_adds_admit_twenty_and_refuse_thirty_with_the_limit_error() {
    let app = TestApp::spawn().await;
    let (admin, caller) = (app.admin.clone(), caller(&app));
    let owner = new_app(&admin, &caller, "api://many").await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (admin, caller) = (Arc::clone(&admin), caller.clone());
            tokio::spawn(async move { admin.add_credential(&caller, owner, fic(i)).await })
        })
        .collect();
    let (mut admitted, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert_eq!(
                    e.to_string(),
                    "the limit of 20 federated identity credentials per application or identity is reached"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((admitted, refused), (20, 30));
    assert_eq!(admin.credentials(owner).len(), 20);
}

#[tokio::test]
async fn each_credential_rule_is_refused_and_leaves_the_registry_unchanged() {
    let app = TestApp::spawn().await;
    let (admin, caller) = (app.admin.clone(), caller(&app));
    let owner = new_app(&admin, &caller, "api://rules").await;
    admin.add_credential(&caller, owner, fic(0)).await.unwrap();
    let before = app.registry.load_directory().await.unwrap();

    let cases: Vec<(CredentialInput, &str)> = vec![
        (CredentialInput { name: "x".into(), ..fic(1) }, "name 'x' is invalid"),
        (CredentialInput { name: "bad name!".into(), ..fic(1) }, "name 'bad name!' is invalid"),
        (CredentialInput { name: "fic-0".into(), ..fic(1) }, "named 'fic-0' already exists"),
        (CredentialInput { subject: fic(0).subject, ..fic(1) }, "with this issuer and subject already exists"),
        (CredentialInput { issuer: "http://issuer.example".into(), ..fic(1) }, "issuer is invalid: it must use https"),
        (CredentialInput { issuer: "not a url".into(), ..fic(1) }, "issuer is invalid: not a URL"),
        (CredentialInput { subject: Some(String::new()), ..fic(1) }, "subject is invalid"),
        (CredentialInput { subject: Some("s".repeat(601)), ..fic(1) }, "subject is invalid"),
        (CredentialInput { audiences: Some(vec![]), ..fic(1) }, "exactly one value, found 0"),
        (CredentialInput { audiences: Some(vec!["a".into(), "b".into()]), ..fic(1) }, "exactly one value, found 2"),
        (CredentialInput { description: Some("d".repeat(601)), ..fic(1) }, "description is longer than 600"),
    ];
    for (input, expected) in cases {
        let err = admin.add_credential(&caller, owner, input).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err} should contain {expected}");
    }
    let renamed =
        admin.update_credential(&caller, owner, "fic-0", CredentialInput { name: "renamed".into(), ..fic(0) }).await;
    assert!(renamed.unwrap_err().to_string().contains("cannot be changed"));
    assert_eq!(app.registry.load_directory().await.unwrap(), before, "nothing was written");
}

#[tokio::test]
async fn http_issuers_on_loopback_need_the_development_setting() {
    let strict = TestApp::spawn().await;
    let (admin, caller) = (strict.admin.clone(), caller(&strict));
    let owner = new_app(&admin, &caller, "api://loop").await;
    let local = CredentialInput { issuer: "http://127.0.0.1:9000".into(), ..fic(0) };
    assert!(matches!(admin.add_credential(&caller, owner, local.clone()).await, Err(AdminError::Credential(_))));

    let dev = TestApp::spawn_with("[federation]\nallow_http_loopback_issuers = true").await;
    let (admin, caller) = (dev.admin.clone(), self::caller(&dev));
    let owner = new_app(&admin, &caller, "api://loop").await;
    admin.add_credential(&caller, owner, local).await.unwrap();
}

#[tokio::test]
async fn disabling_a_system_identity_deletes_it_and_a_slot_gets_its_own() {
    let app = TestApp::spawn().await;
    let (admin, caller) = (app.admin.clone(), caller(&app));
    let sub = SUB.parse().unwrap();
    let web = ResourceId::new(ResourceKind::WebApp, sub, "rg-demo", "web-demo").unwrap();
    let slot = ResourceId::new(ResourceKind::WebAppSlot, sub, "rg-demo", "web-demo/slots/staging").unwrap();
    let orphan = ResourceId::new(ResourceKind::WebAppSlot, sub, "rg-demo", "nope/slots/staging").unwrap();

    let missing_parent =
        admin.put_resource(&caller, &orphan, ResourceSpec::new(IdentityType::SystemAssigned, vec![])).await;
    assert!(missing_parent.unwrap_err().to_string().contains("web app"));
    let staged =
        admin.put_resource(&caller, &slot, ResourceSpec::new(IdentityType::SystemAssigned, vec![])).await.unwrap();
    let web_identity = admin.resource(&caller, &web).unwrap().system_identity.unwrap();
    assert_ne!(staged.system_identity.unwrap().principal_id, web_identity.principal_id);

    admin.put_resource(&caller, &web, ResourceSpec::new(IdentityType::None, vec![])).await.unwrap();
    assert!(app.directory.view().identity(web_identity.principal_id).is_none(), "disabled: deleted");
}

#[tokio::test]
async fn every_write_and_every_refusal_is_in_the_activity_log_with_its_caller() {
    let app = TestApp::spawn().await;
    let (admin, caller) = (app.admin.clone(), caller(&app));
    let owner = new_app(&admin, &caller, "api://audited").await;
    admin.add_credential(&caller, owner, fic(0)).await.unwrap();
    admin.add_credential(&caller, owner, CredentialInput { name: "x".into(), ..fic(1) }).await.unwrap_err();

    let query =
        ActivityQuery { tenant_id: caller.tenant, since: None, until: None, target: None, limit: 3, after: None };
    let entries = app.registry.query_activity(&query).await.unwrap().entries;
    let seen: Vec<(&str, Outcome, &str)> =
        entries.iter().map(|e| (e.operation.as_str(), e.outcome, e.actor.id.as_str())).collect();
    let actor = caller.actor.id.as_str();
    assert_eq!(
        seen,
        vec![
            ("Add federated identity credential", Outcome::Failure, actor),
            ("Add federated identity credential", Outcome::Success, actor),
            ("Add application", Outcome::Success, actor),
        ]
    );
    assert!(entries[0].reason.contains("name 'x' is invalid"));
}
