//! Credential matching on the token path: an assertion against the 20 credentials an owner may
//! have, where the one that matches is last, exact (the baseline) or flexible. The difference
//! between the two, set against the broker's CPU time per request (`scripts/bench-flexible`),
//! bounds what a flexible credential can cost an exchange. Read the results as ratios within one
//! run: `cargo bench --bench matching`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ficus::domain::federated_credential::{
    Audience, CredentialName, CredentialOwner, FederatedCredential, Issuer, IssuerPolicy, SubjectMatch,
};
use ficus::domain::ids::ObjectId;
use ficus::domain::token::Claims;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "api://AzureADTokenExchange";
const SUBJECT: &str = "repo:octo/app:environment:production";

fn credential(name: &str, subject: Option<&str>, expression: Option<&str>) -> FederatedCredential {
    FederatedCredential {
        id: ObjectId::random(),
        owner: CredentialOwner::Application(ObjectId::random()),
        name: CredentialName::parse(name).unwrap(),
        issuer: Issuer::parse(ISSUER, IssuerPolicy { allow_http_loopback: false }).unwrap(),
        matching: SubjectMatch::parse(subject, expression.map(|e| (e, 1))).unwrap(),
        audience: Audience::parse(AUDIENCE).unwrap(),
        description: None,
    }
}

/// 19 exact decoys that share the issuer and audience, then `last`.
fn twenty(last: FederatedCredential) -> Vec<FederatedCredential> {
    let mut all: Vec<FederatedCredential> = (0..19)
        .map(|i| credential(&format!("decoy-{i}"), Some(&format!("repo:octo/app:environment:decoy-{i}")), None))
        .collect();
    all.push(last);
    all
}

fn matching(c: &mut Criterion) {
    let claims: Claims = serde_json::json!({
        "iss": ISSUER, "sub": SUBJECT, "aud": AUDIENCE, "repository_owner": "octo", "environment": "production",
        "job_workflow_ref": "octo/app/.github/workflows/deploy.yml@refs/heads/main",
    })
    .as_object()
    .unwrap()
    .clone();
    let sets = [
        ("exact last (baseline)", twenty(credential("exact", Some(SUBJECT), None))),
        (
            "flexible last, 1 clause",
            twenty(credential("flexible", None, Some("claims['sub'] matches 'repo:octo/app:environment:*'"))),
        ),
        (
            "flexible last, 4 clauses",
            twenty(credential(
                "flexible",
                None,
                Some(
                    "claims['sub'] matches 'repo:octo/app:environment:*' \
                     and claims['job_workflow_ref'] matches 'octo/app/.github/workflows/deploy.yml@refs/heads/*' \
                     and claims['repository_owner'] eq 'octo' and claims['environment'] eq 'production'",
                ),
            )),
        ),
    ];
    let audiences = [AUDIENCE];
    let mut group = c.benchmark_group("match among 20");
    for (name, credentials) in &sets {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let found = black_box(credentials)
                    .iter()
                    .find(|c| c.matches(black_box(ISSUER), black_box(SUBJECT), &claims, &audiences));
                assert!(found.is_some());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
