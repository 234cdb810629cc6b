//! The scenarios, as HTTP requests against a running broker, using what [`crate::setup`] created:
//! - `discovery`: the tenant's OIDC discovery document;
//! - `mi-token`: an IMDS token request from the load test's VM (cache hit after the first);
//! - `exchange-hit`: the same managed-identity assertion exchanged again and again (flow 2);
//! - `exchange-miss`: a fresh assertion from the fake issuer for every request, over many
//!   subjects and applications, so every request is a signature check and (with the broker's
//!   issued-token cache off) a signing;
//! - `external`: assertions from the fake issuer, one per subject, reused as a CI job reuses its
//!   token: the external issuer's cached keys, the verified-assertion and issued-token caches;
//! - `mixed`: 50% mi-token, 30% exchange-hit, 15% external and 5% discovery, interleaved.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::Args;
use crate::client::{Answer, Endpoint, Prepared};
use crate::issuer::FakeIssuer;
use crate::run::Load;
use crate::setup::Fixture;

pub const NAMES: [&str; 6] = ["discovery", "mi-token", "exchange-hit", "exchange-miss", "external", "mixed"];

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where the scenarios send their load: the broker's HTTPS listener, and its managed-identity one.
const TARGET: usize = 0;
const MI: usize = 1;

/// Sends a request with reqwest (setup and change checks, off the measured path) and reads the
/// answer; failures keep the error code the body names.
async fn answer_of(request: reqwest::RequestBuilder, keep_body: bool) -> (Answer, Option<Value>) {
    let response = match request.send().await {
        Ok(response) => response,
        Err(_) => return (Answer { status: 0, error: None }, None),
    };
    let status = response.status().as_u16();
    let ok = (200..300).contains(&status);
    if ok && !keep_body {
        let _ = response.bytes().await;
        return (Answer { status, error: None }, None);
    }
    let body = response.bytes().await.unwrap_or_default();
    let answer = if ok { Answer { status, error: None } } else { Answer::failed(status, &body) };
    (answer, serde_json::from_slice(&body).ok())
}

/// The wall clock in Unix seconds: the load test has no clock port (it is a client, and the times
/// it writes into assertions must be real).
#[allow(clippy::disallowed_methods)]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Exchanges fake-issuer assertions at the token endpoint: the form every exchange scenario
/// prepares, and single exchanges sent with reqwest to check a registry change on the token path.
#[derive(Clone)]
pub struct Exchanger {
    http: reqwest::Client,
    url: String,
    path: String,
    scope: String,
    issuer: Option<Arc<FakeIssuer>>,
    nonce: Arc<AtomicU64>,
}

impl Exchanger {
    /// The same exchanges against another broker (a replica of the same cluster).
    pub fn on(&self, target: &str) -> Self {
        Self { url: format!("{}{}", target.trim_end_matches('/'), self.path), ..self.clone() }
    }

    fn form<'a>(&'a self, client_id: &'a str, assertion: &'a str) -> [(&'a str, &'a str); 5] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", self.scope.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]
    }

    /// The exchange, prepared for the load.
    fn prepare(&self, target: &Endpoint, client_id: &str, assertion: &str) -> Result<Prepared, String> {
        Prepared::post_form((TARGET, target), &self.path, &self.form(client_id, assertion))
    }

    /// One exchange of a freshly signed assertion for `subject`: the HTTP status.
    pub async fn exchange_once(&self, client_id: &str, subject: &str) -> u16 {
        let Some(issuer) = &self.issuer else { return 0 };
        let Ok(assertion) = issuer.assertion(subject, now_secs(), self.nonce.fetch_add(1, Ordering::Relaxed)) else {
            return 0;
        };
        answer_of(self.http.post(&self.url).form(&self.form(client_id, &assertion)), false).await.0.status
    }
}

pub struct Scenarios {
    /// The broker's HTTPS listener ([`TARGET`]) and managed-identity listener ([`MI`]).
    endpoints: Arc<[Arc<Endpoint>]>,
    /// reqwest from the IMDS caller's address, for the assertion exchange-hit exchanges.
    mi_http: reqwest::Client,
    mi: String,
    tenant: String,
    pub exchanger: Exchanger,
    /// How many distinct access tokens `exchange-miss` saw, and how many came back twice (a
    /// repeat means the broker answered from its issued-token cache).
    pub repeats: Arc<RepeatCounter>,
    assertions: usize,
    /// The broker's process id, where it is watched while measuring (`--server-pid`).
    server: Option<u32>,
}

#[derive(Default)]
pub struct RepeatCounter {
    seen: Mutex<HashSet<u64>>,
    pub repeated: AtomicU64,
    /// Pre-signed assertions used a second time because the pool ran out.
    pub reused_assertions: AtomicU64,
}

impl RepeatCounter {
    fn saw(&self, token: &str) {
        let mut hasher = DefaultHasher::new();
        token.hash(&mut hasher);
        if let Ok(mut seen) = self.seen.lock()
            && !seen.insert(hasher.finish())
        {
            self.repeated.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Scenarios {
    /// `target` and `mi` are the endpoints for `--target` and `--mi`; `http` and `mi_http` are
    /// reqwest clients for the same, used off the measured path.
    pub fn new(
        (target, mi): (Arc<Endpoint>, Arc<Endpoint>),
        (http, mi_http): (&reqwest::Client, &reqwest::Client),
        args: &Args,
        fixture: &Fixture,
    ) -> Self {
        let path = format!("/{}/oauth2/v2.0/token", args.tenant);
        let exchanger = Exchanger {
            http: http.clone(),
            url: format!("{}{path}", args.target.trim_end_matches('/')),
            path,
            scope: format!("{}/.default", fixture.resource),
            issuer: fixture.issuer.clone(),
            nonce: Arc::new(AtomicU64::new(0)),
        };
        let assertions = args.assertions.unwrap_or_else(|| {
            // Enough for 5,000 exchanges a second over the whole run.
            let secs = (args.warmup + args.duration).as_secs_f64();
            (5_000.0 * secs) as usize
        });
        Self {
            endpoints: Arc::from([target, mi]),
            mi_http: mi_http.clone(),
            mi: args.mi.trim_end_matches('/').to_owned(),
            tenant: args.tenant.clone(),
            exchanger,
            repeats: Arc::default(),
            assertions,
            server: args.server_pid,
        }
    }

    fn imds_path(resource: &str, client_id: Option<&str>) -> String {
        let client = client_id.map(|c| format!("&client_id={c}")).unwrap_or_default();
        format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}{client}")
    }

    fn load(&self, requests: Vec<Prepared>) -> Result<Load, String> {
        Ok(Load::new(Arc::clone(&self.endpoints), requests)?.served_by(self.server))
    }

    pub async fn build(&self, name: &str, fixture: &Fixture) -> Result<Load, String> {
        let (target, mi) = (&self.endpoints[TARGET], &self.endpoints[MI]);
        match name {
            "discovery" => {
                let path = format!("/{}/v2.0/.well-known/openid-configuration", self.tenant);
                self.load(vec![Prepared::get((TARGET, target), &path, &[])?])
            }
            "mi-token" => {
                let path = Self::imds_path(&fixture.resource, None);
                self.load(vec![Prepared::get((MI, mi), &path, &[("metadata", "true")])?])
            }
            "exchange-hit" => {
                let (uami, client) = fixture.mi_client.clone().ok_or("the fixture has no managed identity")?;
                let imds = format!("{}{}", self.mi, Self::imds_path("api://AzureADTokenExchange", Some(&uami)));
                let (answer, body) = answer_of(self.mi_http.get(&imds).header("Metadata", "true"), true).await;
                let assertion = body
                    .as_ref()
                    .and_then(|b| b["access_token"].as_str())
                    .ok_or_else(|| format!("no assertion from IMDS ({})", answer.status))?
                    .to_owned();
                self.load(vec![self.exchanger.prepare(target, &client, &assertion)?])
            }
            "exchange-miss" => self.exchange_miss(fixture),
            "external" => {
                let issuer = fixture.issuer.clone().ok_or("the fixture has no fake issuer")?;
                let now = now_secs();
                let mut requests = Vec::new();
                for app in &fixture.federated {
                    for subject in &app.subjects {
                        let assertion = issuer.assertion(subject, now, requests.len() as u64)?;
                        requests.push(self.exchanger.prepare(target, &app.client_id, &assertion)?);
                    }
                }
                self.load(requests)
            }
            "mixed" => {
                let parts = [
                    Box::pin(self.build("mi-token", fixture)).await?,
                    Box::pin(self.build("exchange-hit", fixture)).await?,
                    Box::pin(self.build("external", fixture)).await?,
                    Box::pin(self.build("discovery", fixture)).await?,
                ];
                // Out of every 20 requests: 10 mi-token, 6 exchange-hit, 3 external, 1 discovery;
                // repeated until external's assertions have each come once.
                let plan = [0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1];
                let rounds = parts[2].requests().len().div_ceil(3).max(1);
                let mut taken = [0usize; 4];
                let mut requests = Vec::with_capacity(rounds * plan.len());
                for step in std::iter::repeat_n(plan, rounds).flatten() {
                    let part = parts[step].requests();
                    requests.push(part[taken[step] % part.len()].clone());
                    taken[step] += 1;
                }
                self.load(requests)
            }
            other => Err(format!("unknown scenario '{other}' ({})", NAMES.join(", "))),
        }
    }

    /// Signs the pool of fresh assertions up front, on every core, so the load generator's own
    /// signing does not limit the rate; each request takes the next one, and every token that
    /// comes back is checked for a repeat.
    fn exchange_miss(&self, fixture: &Fixture) -> Result<Load, String> {
        let issuer = fixture.issuer.clone().ok_or("the fixture has no fake issuer")?;
        let subjects: Vec<(String, String)> = fixture
            .federated
            .iter()
            .flat_map(|app| app.subjects.iter().map(|s| (app.client_id.clone(), s.clone())))
            .collect();
        if subjects.is_empty() {
            return Err("no federated subjects".into());
        }
        let (count, now) = (self.assertions.max(1), now_secs());
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        eprintln!("loadtest: signing {count} fresh assertions for exchange-miss on {threads} threads");
        let target = &self.endpoints[TARGET];
        let chunks: Vec<Result<Vec<Prepared>, String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (issuer, subjects) = (&issuer, &subjects);
                    scope.spawn(move || {
                        (t..count)
                            .step_by(threads)
                            .map(|i| {
                                let (client, subject) = &subjects[i % subjects.len()];
                                let assertion = issuer.assertion(subject, now, 1_000_000 + i as u64)?;
                                self.exchanger.prepare(target, client, &assertion)
                            })
                            .collect()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err("signing thread failed".into()))).collect()
        });
        let mut pool = Vec::with_capacity(count);
        for chunk in chunks {
            pool.extend(chunk?);
        }
        let (size, repeats) = (pool.len(), Arc::clone(&self.repeats));
        Ok(self.load(pool)?.watching(Arc::new(move |i, body| {
            if i >= size {
                repeats.reused_assertions.fetch_add(1, Ordering::Relaxed);
            }
            let token: Option<Value> = serde_json::from_slice(body).ok();
            if let Some(token) = token.as_ref().and_then(|b| b["access_token"].as_str()) {
                repeats.saw(token);
            }
        })))
    }
}
