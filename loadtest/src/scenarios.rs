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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::Args;
use crate::issuer::FakeIssuer;
use crate::run::{Answer, Request};
use crate::setup::Fixture;

pub const NAMES: [&str; 6] = ["discovery", "mi-token", "exchange-hit", "exchange-miss", "external", "mixed"];

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Reads the answer; failures keep the error code the body names (AADSTS number or `error`).
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
    let body: Option<Value> = response.json().await.ok();
    let error = (!ok).then(|| {
        body.as_ref().and_then(|b| {
            b["error_codes"][0]
                .as_u64()
                .map(|code| format!("AADSTS{code}"))
                .or_else(|| b["error"].as_str().map(str::to_owned))
                .or_else(|| b["error"]["code"].as_str().map(str::to_owned))
        })
    });
    (Answer { status, error: error.flatten() }, body)
}

/// The wall clock in Unix seconds: the load test has no clock port (it is a client, and the times
/// it writes into assertions must be real).
#[allow(clippy::disallowed_methods)]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Clients with connection pools of their own, taken in turn: the load travels over as many TCP
/// connections as there are clients, as separate callers' would. A balancer in TCP mode spreads
/// connections, not requests; one shared pool would carry a light load on two or three
/// connections, which a balancer can hand to fewer replicas than it has.
#[derive(Clone)]
pub struct Clients {
    pool: Arc<[reqwest::Client]>,
    next: Arc<AtomicUsize>,
}

impl Clients {
    pub fn new(pool: Vec<reqwest::Client>) -> Self {
        Self { pool: pool.into(), next: Arc::default() }
    }

    /// The next client in turn.
    pub fn next(&self) -> &reqwest::Client {
        &self.pool[self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len()]
    }
}

/// Exchanges fake-issuer assertions at the token endpoint.
#[derive(Clone)]
pub struct Exchanger {
    http: Clients,
    url: String,
    scope: String,
    issuer: Option<Arc<FakeIssuer>>,
    nonce: Arc<AtomicU64>,
}

impl Exchanger {
    /// The same exchanges against another broker (a replica of the same cluster).
    pub fn on(&self, target: &str, tenant: &str) -> Self {
        Self { url: format!("{}/{tenant}/oauth2/v2.0/token", target.trim_end_matches('/')), ..self.clone() }
    }

    fn form(&self, client_id: &str, assertion: &str) -> reqwest::RequestBuilder {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", self.scope.as_str()),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ];
        self.http.next().post(&self.url).form(&form)
    }

    /// One exchange of a freshly signed assertion for `subject`: the HTTP status.
    pub async fn exchange_once(&self, client_id: &str, subject: &str) -> u16 {
        let Some(issuer) = &self.issuer else { return 0 };
        let Ok(assertion) = issuer.assertion(subject, now_secs(), self.nonce.fetch_add(1, Ordering::Relaxed)) else {
            return 0;
        };
        answer_of(self.form(client_id, &assertion), false).await.0.status
    }
}

pub struct Scenarios {
    http: Clients,
    mi_http: Clients,
    target: String,
    mi: String,
    tenant: String,
    pub exchanger: Exchanger,
    /// How many distinct access tokens `exchange-miss` saw, and how many came back twice (a
    /// repeat means the broker answered from its issued-token cache).
    pub repeats: Arc<RepeatCounter>,
    assertions: usize,
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
    pub fn new(http: &Clients, mi_http: &Clients, args: &Args, fixture: &Fixture) -> Self {
        let target = args.target.trim_end_matches('/').to_owned();
        let exchanger = Exchanger {
            http: http.clone(),
            url: format!("{target}/{}/oauth2/v2.0/token", args.tenant),
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
            http: http.clone(),
            mi_http: mi_http.clone(),
            target,
            mi: args.mi.trim_end_matches('/').to_owned(),
            tenant: args.tenant.clone(),
            exchanger,
            repeats: Arc::default(),
            assertions,
        }
    }

    fn imds_url(&self, resource: &str, client_id: Option<&str>) -> String {
        let client = client_id.map(|c| format!("&client_id={c}")).unwrap_or_default();
        format!("{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}{client}", self.mi)
    }

    pub async fn build(&self, name: &str, fixture: &Fixture) -> Result<Request, String> {
        match name {
            "discovery" => {
                let (http, url) = (
                    self.http.clone(),
                    format!("{}/{}/v2.0/.well-known/openid-configuration", self.target, self.tenant),
                );
                Ok(Arc::new(move || {
                    let request = http.next().get(&url);
                    Box::pin(async move { answer_of(request, false).await.0 })
                }))
            }
            "mi-token" => {
                let (http, url) = (self.mi_http.clone(), self.imds_url(&fixture.resource, None));
                Ok(Arc::new(move || {
                    let request = http.next().get(&url).header("Metadata", "true");
                    Box::pin(async move { answer_of(request, false).await.0 })
                }))
            }
            "exchange-hit" => {
                let (uami, client) = fixture.mi_client.clone().ok_or("the fixture has no managed identity")?;
                let imds = self.imds_url("api://AzureADTokenExchange", Some(&uami));
                let (answer, body) = answer_of(self.mi_http.next().get(&imds).header("Metadata", "true"), true).await;
                let assertion = body
                    .as_ref()
                    .and_then(|b| b["access_token"].as_str())
                    .ok_or_else(|| format!("no assertion from IMDS ({})", answer.status))?
                    .to_owned();
                let exchanger = self.exchanger.clone();
                Ok(Arc::new(move || {
                    let request = exchanger.form(&client, &assertion);
                    Box::pin(async move { answer_of(request, false).await.0 })
                }))
            }
            "exchange-miss" => self.exchange_miss(fixture),
            "external" => {
                let issuer = fixture.issuer.clone().ok_or("the fixture has no fake issuer")?;
                let now = now_secs();
                let mut pairs = Vec::new();
                for app in &fixture.federated {
                    for subject in &app.subjects {
                        pairs.push((app.client_id.clone(), issuer.assertion(subject, now, pairs.len() as u64)?));
                    }
                }
                let (pairs, next, exchanger) = (Arc::new(pairs), Arc::new(AtomicUsize::new(0)), self.exchanger.clone());
                Ok(Arc::new(move || {
                    let (client, assertion) = &pairs[next.fetch_add(1, Ordering::Relaxed) % pairs.len()];
                    let request = exchanger.form(client, assertion);
                    Box::pin(async move { answer_of(request, false).await.0 })
                }))
            }
            "mixed" => {
                let parts: Vec<Request> = vec![
                    Box::pin(self.build("mi-token", fixture)).await?,
                    Box::pin(self.build("exchange-hit", fixture)).await?,
                    Box::pin(self.build("external", fixture)).await?,
                    Box::pin(self.build("discovery", fixture)).await?,
                ];
                // Out of every 20 requests: 10 mi-token, 6 exchange-hit, 3 external, 1 discovery.
                let plan: Vec<usize> = [0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1].to_vec();
                let next = Arc::new(AtomicUsize::new(0));
                Ok(Arc::new(move || {
                    let step = plan[next.fetch_add(1, Ordering::Relaxed) % plan.len()];
                    parts[step]()
                }))
            }
            other => Err(format!("unknown scenario '{other}' ({})", NAMES.join(", "))),
        }
    }

    /// Signs the pool of fresh assertions up front, on every core, so the load generator's own
    /// signing does not limit the rate; each request takes the next one.
    fn exchange_miss(&self, fixture: &Fixture) -> Result<Request, String> {
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
        let chunks: Vec<Result<Vec<(String, String)>, String>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (issuer, subjects) = (&issuer, &subjects);
                    scope.spawn(move || {
                        (t..count)
                            .step_by(threads)
                            .map(|i| {
                                let (client, subject) = &subjects[i % subjects.len()];
                                Ok((client.clone(), issuer.assertion(subject, now, 1_000_000 + i as u64)?))
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
        let (pool, next, exchanger, repeats) =
            (Arc::new(pool), Arc::new(AtomicUsize::new(0)), self.exchanger.clone(), Arc::clone(&self.repeats));
        Ok(Arc::new(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= pool.len() {
                repeats.reused_assertions.fetch_add(1, Ordering::Relaxed);
            }
            let (client, assertion) = &pool[i % pool.len()];
            let request = exchanger.form(client, assertion);
            let repeats = Arc::clone(&repeats);
            Box::pin(async move {
                let (answer, body) = answer_of(request, true).await;
                if let Some(token) = body.as_ref().and_then(|b| b["access_token"].as_str()) {
                    repeats.saw(token);
                }
                answer
            })
        }))
    }
}
