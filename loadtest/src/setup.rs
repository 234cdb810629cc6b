//! What the load test needs in the broker's registry, created through the admin API (Graph and
//! ARM shapes, with the tenant's admin client) and removed again afterwards:
//! - a resource application (`api://loadtest-<run>`) that every token is requested for;
//! - for `mi-token` and `exchange-hit`: a user-assigned identity, a VM with a system-assigned
//!   identity and that user-assigned one, bound to the `--mi-address` the load test calls IMDS
//!   from, and a client application whose federated credential trusts the identity's token;
//! - for `exchange-miss` and `external`: `--apps` applications with 20 federated credentials each,
//!   trusting subjects of the built-in fake issuer.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::Args;
use crate::issuer::{EXCHANGE_AUDIENCE, FakeIssuer};

/// Credentials per application: the broker's limit.
pub const CREDENTIALS_PER_APP: usize = 20;

pub struct Admin {
    http: reqwest::Client,
    target: String,
    token: String,
}

/// One federated application: its client id and the subjects its credentials trust.
#[derive(Debug, Clone)]
pub struct FederatedApp {
    pub object_id: String,
    pub client_id: String,
    pub subjects: Vec<String>,
}

/// Everything created for one run.
#[derive(Default)]
pub struct Fixture {
    pub run: String,
    /// `api://loadtest-<run>`: the resource every scenario asks a token for.
    pub resource: String,
    /// The user-assigned identity's client id and the client application trusting its token.
    pub mi_client: Option<(String, String)>,
    pub federated: Vec<FederatedApp>,
    pub issuer: Option<Arc<FakeIssuer>>,
    created_apps: Vec<String>,
    created_arm: Vec<String>,
}

/// Where a change is checked on the token path.
pub enum Observer {
    /// Once, on the broker that took the write (which answers only after applying it).
    Once(crate::scenarios::Exchanger),
    /// Repeatedly, on another replica, until it agrees (for at most five seconds).
    Poll(crate::scenarios::Exchanger),
}

impl Observer {
    /// The first status that satisfies `done`, or the last one seen.
    async fn wait_for(&self, client_id: &str, subject: &str, done: impl Fn(u16) -> bool) -> u16 {
        match self {
            Self::Once(exchanger) => exchanger.exchange_once(client_id, subject).await,
            Self::Poll(exchanger) => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                loop {
                    let status = exchanger.exchange_once(client_id, subject).await;
                    if done(status) || std::time::Instant::now() > deadline {
                        return status;
                    }
                }
            }
        }
    }
}

impl Admin {
    pub async fn sign_in(http: &reqwest::Client, args: &Args) -> Result<Self, String> {
        let path = format!("{}/admin/{}.json", args.keys_dir, args.tenant);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "{path}: {e} (the admin client's credentials, written by the broker at first start; see --keys-dir)"
            )
        })?;
        let creds: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
        let target = args.target.trim_end_matches('/').to_owned();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds["client_id"].as_str().unwrap_or_default()),
            ("client_secret", creds["client_secret"].as_str().unwrap_or_default()),
            ("scope", "api://ficus-management/.default"),
        ];
        let url = format!("{target}/{}/oauth2/v2.0/token", args.tenant);
        let answer: Value = http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let token = answer["access_token"].as_str().ok_or_else(|| format!("admin sign-in failed: {answer}"))?;
        Ok(Self { http: http.clone(), target, token: token.to_owned() })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.target)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_app(
        &self,
        fixture: &mut Fixture,
        name: &str,
        uris: &[String],
        rate_limit: Option<&str>,
    ) -> Result<Value, String> {
        let mut body = json!({ "displayName": name, "identifierUris": uris });
        if let Some(rate) = rate_limit {
            body["ficusRateLimit"] = json!(rate);
        }
        let app = self.call(Method::POST, "/v1.0/applications", Some(body)).await?;
        fixture.created_apps.push(app["id"].as_str().unwrap_or_default().to_owned());
        Ok(app)
    }

    async fn add_credential(&self, app: &Value, name: &str, issuer: &str, subject: &str) -> Result<(), String> {
        let body = json!({ "name": name, "issuer": issuer, "subject": subject, "audiences": [EXCHANGE_AUDIENCE] });
        self.post_credential(app, body).await
    }

    async fn post_credential(&self, app: &Value, body: Value) -> Result<(), String> {
        let path =
            format!("/v1.0/applications/{}/federatedIdentityCredentials", app["id"].as_str().unwrap_or_default());
        self.call(Method::POST, &path, Some(body)).await.map(|_| ())
    }

    /// With `--last-credential`: 19 exact decoys of `issuer`, then the credential `subject`'s
    /// assertions match, exact or as an expression (`pattern` for its `sub`).
    async fn add_last_of_twenty(
        &self,
        app: &Value,
        issuer: &str,
        subject: &str,
        pattern: &str,
        kind: &str,
    ) -> Result<(), String> {
        for k in 0..CREDENTIALS_PER_APP - 1 {
            self.add_credential(app, &format!("decoy-{k}"), issuer, &format!("{subject}:decoy-{k}")).await?;
        }
        if kind == "flexible" {
            let expression = format!("claims['sub'] matches '{pattern}'");
            let body = json!({
                "name": "matched", "issuer": issuer, "audiences": [EXCHANGE_AUDIENCE],
                "claimsMatchingExpression": { "value": expression, "languageVersion": 1 },
            });
            self.post_credential(app, body).await
        } else {
            self.add_credential(app, "matched", issuer, subject).await
        }
    }

    /// Creates what `scenarios` need.
    pub async fn prepare(&self, args: &Args, scenarios: &[String]) -> Result<Fixture, String> {
        let run = format!("{:x}-{}", crate::scenarios::now_secs(), std::process::id());
        let mut fixture = Fixture { resource: format!("api://loadtest-{run}"), run: run.clone(), ..Fixture::default() };
        let outcome = self.populate(args, scenarios, &mut fixture).await;
        if let Err(e) = outcome {
            self.remove(&fixture).await;
            return Err(e);
        }
        Ok(fixture)
    }

    async fn populate(&self, args: &Args, scenarios: &[String], fixture: &mut Fixture) -> Result<(), String> {
        let run = fixture.run.clone();
        let resource = fixture.resource.clone();
        self.create_app(fixture, &format!("loadtest-{run}-api"), &[resource], None).await?;
        let needs = |names: &[&str]| scenarios.iter().any(|s| names.contains(&s.as_str()) || s == "mixed");
        if needs(&["mi-token", "exchange-hit"]) {
            let rg = format!("/subscriptions/{}/resourceGroups/rg-loadtest/providers", args.subscription);
            let uami_id = format!("{rg}/Microsoft.ManagedIdentity/userAssignedIdentities/loadtest-{run}");
            let uami = self.call(Method::PUT, &uami_id, Some(json!({ "location": "local" }))).await?;
            fixture.created_arm.push(uami_id.clone());
            let vm_id = format!("{rg}/Microsoft.Compute/virtualMachines/loadtest-{run}");
            let body = json!({
                "identity": { "type": "SystemAssigned, UserAssigned", "userAssignedIdentities": { uami_id.clone(): {} } },
                "properties": { "networkAddresses": [args.mi_address.to_string()] },
            });
            self.call(Method::PUT, &vm_id, Some(body)).await?;
            fixture.created_arm.insert(0, vm_id);
            let discovery = self
                .call(Method::GET, &format!("/{}/v2.0/.well-known/openid-configuration", args.tenant), None)
                .await?;
            let issuer = discovery["issuer"].as_str().ok_or("discovery has no issuer")?.to_owned();
            let principal = uami["properties"]["principalId"].as_str().ok_or("the identity has no principalId")?;
            let uami_client = uami["properties"]["clientId"].as_str().ok_or("the identity has no clientId")?.to_owned();
            let name = format!("loadtest-{run}-mi-client");
            let app = self.create_app(fixture, &name, &[], args.app_rate_limit.as_deref()).await?;
            match args.last_credential.as_deref() {
                Some(kind) => {
                    let pattern = format!("{}*", &principal[..principal.len().min(8)]);
                    self.add_last_of_twenty(&app, &issuer, principal, &pattern, kind).await?;
                }
                None => self.add_credential(&app, "managed-identity", &issuer, principal).await?,
            }
            fixture.mi_client = Some((uami_client, app["appId"].as_str().unwrap_or_default().to_owned()));
        }
        if needs(&["exchange-miss", "external"]) {
            let issuer = FakeIssuer::start().await?;
            for i in 0..args.apps.max(1) {
                let app = self.create_app(fixture, &format!("loadtest-{run}-fed-{i}"), &[], None).await?;
                let mut subjects = Vec::with_capacity(CREDENTIALS_PER_APP);
                if let Some(kind) = args.last_credential.as_deref() {
                    let subject = format!("repo:loadtest/{run}-app-{i}:environment:last");
                    let pattern = format!("repo:loadtest/{run}-app-{i}:environment:l*t");
                    self.add_last_of_twenty(&app, &issuer.url, &subject, &pattern, kind).await?;
                    subjects.push(subject);
                } else {
                    for j in 0..CREDENTIALS_PER_APP {
                        let subject = format!("repo:loadtest/{run}-app-{i}:environment:env-{j}");
                        self.add_credential(&app, &format!("env-{j}"), &issuer.url, &subject).await.map_err(|e| {
                            if e.contains("http") {
                                format!("{e}\n(the fake issuer is http:// on loopback: start the broker with FICUS_FEDERATION__ALLOW_HTTP_LOOPBACK_ISSUERS=true)")
                            } else {
                                e
                            }
                        })?;
                        subjects.push(subject);
                    }
                }
                fixture.federated.push(FederatedApp {
                    object_id: app["id"].as_str().unwrap_or_default().to_owned(),
                    client_id: app["appId"].as_str().unwrap_or_default().to_owned(),
                    subjects,
                });
            }
            fixture.issuer = Some(issuer);
        }
        Ok(())
    }

    /// Deletes everything the fixture created (credentials go with their applications; the VM's
    /// system-assigned identity with the VM). Failures are reported, not fatal.
    pub async fn remove(&self, fixture: &Fixture) {
        for path in &fixture.created_arm {
            if let Err(e) = self.call(Method::DELETE, path, None).await {
                eprintln!("loadtest: cleanup: {e}");
            }
        }
        for id in &fixture.created_apps {
            if let Err(e) = self.call(Method::DELETE, &format!("/v1.0/applications/{id}"), None).await {
                eprintln!("loadtest: cleanup: {e}");
            }
        }
    }

    /// Adds one federated credential to `app`'s first federated application and removes it,
    /// `rounds` times, each time exchanging an assertion for the new subject right after the write
    /// (it must succeed) and right after the removal (it must fail): the time a change takes to
    /// reach the token path, as a client sees it.
    pub async fn measure_changes(
        &self,
        fixture: &Fixture,
        observer: &Observer,
        rounds: usize,
    ) -> Result<Value, String> {
        let issuer = fixture.issuer.as_ref().ok_or("no fake issuer (run exchange-miss or external)")?;
        let app = fixture.federated.first().ok_or("no federated application")?;
        let path = format!("/v1.0/applications/{}/federatedIdentityCredentials", app.object_id);
        // Make room: the application holds the maximum.
        self.call(Method::DELETE, &format!("{path}/env-0"), None).await?;
        let (mut added, mut removed) = (Vec::new(), Vec::new());
        let (mut added_seen, mut removed_seen) = (Vec::new(), Vec::new());
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        for round in 0..rounds {
            let subject = format!("repo:loadtest/{}-change:run-{round}", fixture.run);
            let body = json!({ "name": "change-probe", "issuer": issuer.url, "subject": subject, "audiences": [EXCHANGE_AUDIENCE] });
            let started = std::time::Instant::now();
            self.call(Method::POST, &path, Some(body)).await?;
            let acknowledged = std::time::Instant::now();
            let status = observer.wait_for(&app.client_id, &subject, |s| s == 200).await;
            added.push(ms(started.elapsed()));
            added_seen.push(ms(acknowledged.elapsed()));
            if status != 200 {
                return Err(format!("a credential just added was refused on the token path ({status})"));
            }
            let started = std::time::Instant::now();
            self.call(Method::DELETE, &format!("{path}/change-probe"), None).await?;
            let acknowledged = std::time::Instant::now();
            let status = observer.wait_for(&app.client_id, &subject, |s| s == 400 || s == 401).await;
            removed.push(ms(started.elapsed()));
            removed_seen.push(ms(acknowledged.elapsed()));
            if status != 400 && status != 401 {
                return Err(format!("a credential just removed was still accepted ({status})"));
            }
        }
        let stats = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let p99 = v[(v.len() * 99).div_ceil(100).saturating_sub(1)];
            json!({ "p50": v[v.len() / 2], "p99": p99, "max": v[v.len() - 1], "rounds": v.len() })
        };
        Ok(json!({
            "add_then_exchange_ms": stats(&mut added),
            "remove_then_exchange_ms": stats(&mut removed),
            "add_visible_after_ack_ms": stats(&mut added_seen),
            "remove_visible_after_ack_ms": stats(&mut removed_seen),
        }))
    }
}
