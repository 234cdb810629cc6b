//! Admin commands: a small client of the admin API. It signs in as the tenant's admin client
//! (credentials from `keys/admin/<tenant>.json`), calls the Graph- and ARM-shaped endpoints over
//! HTTPS and prints their JSON answers. It uses nothing of the server but its wire protocol.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use crate::config::{Settings, TlsMode};

#[derive(Debug, Args)]
pub struct Target {
    /// Tenant name (its credentials file is keys/admin/<tenant>.json)
    #[arg(long, global = true, default_value = "demo")]
    pub tenant: String,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Print an admin bearer token (for curl: -H "Authorization: Bearer $(ficus admin token)")
    Token,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// List applications
    List,
    /// Create an application
    Create {
        /// Display name
        name: String,
        /// Identifier URI, e.g. api://orders (repeatable)
        #[arg(long = "identifier-uri")]
        identifier_uris: Vec<String>,
        /// App role value it defines, e.g. Orders.Read (repeatable)
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Its own token-request limit ("500/s", "30/min", "off"), instead of rate_limits.application
        #[arg(long)]
        rate_limit: Option<String>,
    },
    /// Set an application's own token-request limit, or with --clear go back to the configured one
    RateLimit {
        /// Object id or appId
        app: String,
        /// "500/s", "30/min", "2000/h" or "off"
        #[arg(required_unless_present = "clear")]
        rate: Option<String>,
        #[arg(long, conflicts_with = "rate")]
        clear: bool,
    },
    /// Delete an application (object id or appId)
    Delete { app: String },
}

#[derive(Debug, Subcommand)]
pub enum FicCommand {
    /// List an application's federated identity credentials
    List { app: String },
    /// Add a federated identity credential to an application (object id or appId)
    Add {
        app: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        issuer: String,
        /// The assertion's subject, exactly
        #[arg(long, required_unless_present = "expression", conflicts_with = "expression")]
        subject: Option<String>,
        /// A flexible credential: a claims-matching expression (language version 1), e.g.
        /// "claims['sub'] matches 'repo:octo/app:*' and claims['environment'] eq 'prod'"
        #[arg(long)]
        expression: Option<String>,
        #[arg(long, default_value = "api://AzureADTokenExchange")]
        audience: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a federated identity credential (by id or name)
    Delete { app: String, credential: String },
    /// Dry run: what the token endpoint would do with an assertion for an application, credential
    /// by credential (verified as for a token; nothing is issued, logged or rate-limited)
    Explain {
        /// The application (object id or appId)
        #[arg(long)]
        app: String,
        /// The assertion (a JWT), or "-" to read it from standard input (keeps it out of the
        /// process list and the shell history)
        #[arg(long)]
        assertion: String,
        /// Also report the roles the token would carry for this resource
        #[arg(long)]
        resource: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create a user-assigned identity
    Create {
        name: String,
        #[arg(long)]
        resource_group: String,
        /// Subscription id (default: the tenant's first subscription in the world file)
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Delete a user-assigned identity (and its assignments)
    Delete {
        name: String,
        #[arg(long)]
        resource_group: String,
        #[arg(long)]
        subscription: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ComputeKind {
    Vm,
    Webapp,
}

/// A VM or web app (`app/slots/slot` for a slot) in a resource group.
#[derive(Debug, Args)]
pub struct ComputeRef {
    pub kind: ComputeKind,
    pub name: String,
    #[arg(long)]
    pub resource_group: String,
    /// Subscription id (default: the tenant's first subscription in the world file)
    #[arg(long)]
    pub subscription: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Create or update a VM or web app (`web/slots/staging` for a slot) and its identity block:
    /// --system enables the system-assigned identity (omitting it disables it), --user-identity
    /// assigns user-assigned identities by name
    Set {
        #[command(flatten)]
        resource: ComputeRef,
        #[arg(long)]
        system: bool,
        #[arg(long = "user-identity")]
        user_identities: Vec<String>,
    },
    /// Print a web app's App Service identity header (IDENTITY_HEADER)
    IdentityHeader {
        #[command(flatten)]
        resource: ComputeRef,
    },
    /// Show a VM or web app with its identities
    Show {
        #[command(flatten)]
        resource: ComputeRef,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Grant an app role of a resource application to a principal
    Assign {
        /// The principal: a service principal id or a managed identity's principal id
        #[arg(long)]
        principal: String,
        /// The resource application (object id or appId)
        #[arg(long)]
        resource: String,
        /// The app role's value, e.g. Secrets.Read
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Add a fault rule: an endpoint, whom it hits, what happens and for how long
    #[command(group(clap::ArgGroup::new("effect").required(true).args(["status", "latency_ms", "close_connection"])))]
    #[command(group(clap::ArgGroup::new("lasts").required(true).args(["requests", "seconds", "probability"])))]
    #[command(group(clap::ArgGroup::new("target").args(["resource", "identity", "application"])))]
    Add {
        /// imds, appService, token, discovery or jwks
        #[arg(long)]
        endpoint: String,
        /// Hit one compute resource (name or ARM id); default: every caller of the tenant
        #[arg(long)]
        resource: Option<String>,
        /// Hit one managed identity (name, clientId, principal id or ARM id)
        #[arg(long)]
        identity: Option<String>,
        /// Hit one application (appId, object id or display name)
        #[arg(long)]
        application: Option<String>,
        /// Answer with this status and the endpoint's own error body (IMDS and App Service: 404,
        /// 410, 429, 500, 503; token: 429, 500, 503; discovery and JWKS: 500, 503)
        #[arg(long)]
        status: Option<u16>,
        /// With --status 429 or 503: the Retry-After header, in seconds
        #[arg(long, requires = "status")]
        retry_after: Option<u32>,
        /// Serve normally, this many milliseconds later
        #[arg(long)]
        latency_ms: Option<u32>,
        /// Close the connection without a complete answer
        #[arg(long)]
        close_connection: bool,
        /// For the next N requests it hits
        #[arg(long)]
        requests: Option<u32>,
        /// For this many seconds
        #[arg(long)]
        seconds: Option<u32>,
        /// For each request it hits with this probability (0 < p <= 1), until cleared
        #[arg(long)]
        probability: Option<f64>,
    },
    /// List the tenant's fault rules in force
    List,
    /// Remove one fault rule, or all of the tenant's
    Clear {
        /// The rule's id; all rules when omitted
        id: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Setup(String),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{status}: {body}")]
    Api { status: u16, body: String },
}

/// A signed-in admin API client.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
    subscription: Option<String>,
}

impl AdminClient {
    pub async fn sign_in(settings: &Settings, tenant: &str) -> Result<Self, ClientError> {
        let path = settings.keys.dir.join("admin").join(format!("{tenant}.json"));
        let creds: Value =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| {
                ClientError::Setup(format!(
                    "{}: no admin credentials (start the server once, or give the --config it runs with)",
                    crate::config::shown(&path)
                ))
            })?;
        let text = |k: &str| creds[k].as_str().unwrap_or_default().to_owned();
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if settings.tls.mode == TlsMode::Dev {
            let path = crate::tls::dev_ca_path(&settings.keys.dir);
            let ca = std::fs::read(&path)
                .map_err(|e| ClientError::Setup(format!("development CA {}: {e}", crate::config::shown(&path))))?;
            http = http.tls_certs_only([reqwest::Certificate::from_pem(&ca)?]);
        }
        let http = http.build()?;
        let base = settings.public_url(settings.server.addr.port()).map_err(|e| ClientError::Setup(e.to_string()))?;
        let base = base.as_str().trim_end_matches('/').to_owned();
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", text("client_id")),
            ("client_secret", text("client_secret")),
            ("scope", text("scope")),
        ];
        let response = http.post(format!("{base}/{}/oauth2/v2.0/token", text("tenant_id"))).form(&form).send().await?;
        let body = checked(response).await?;
        let token = body["access_token"].as_str().unwrap_or_default().to_owned();
        let subscription = first_subscription(settings, tenant);
        Ok(Self { http, base, token, subscription })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        checked(request.send().await?).await
    }

    fn arm_path(&self, subscription: Option<&str>, rg: &str, provider_path: &str) -> Result<String, ClientError> {
        let sub = subscription.map(str::to_owned).or_else(|| self.subscription.clone()).ok_or_else(|| {
            ClientError::Setup("--subscription is required (no subscription in the world file)".into())
        })?;
        Ok(format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider_path}"))
    }

    /// `/v1.0/applications/{id}` for an object id, or the appId form when that is what exists.
    async fn app_path(&self, app: &str) -> Result<String, ClientError> {
        let by_object = format!("/v1.0/applications/{app}");
        match self.call(Method::GET, &by_object, None).await {
            Ok(_) => Ok(by_object),
            Err(_) => Ok(format!("/v1.0/applications(appId='{app}')")),
        }
    }
}

async fn checked(response: reqwest::Response) -> Result<Value, ClientError> {
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        return Err(ClientError::Api { status: status.as_u16(), body: text });
    }
    Ok(if text.is_empty() {
        json!({ "status": status.as_u16() })
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    })
}

fn first_subscription(settings: &Settings, tenant: &str) -> Option<String> {
    let world = crate::config::load_world(settings.world.file.as_ref()?).ok()?;
    let spec = world.tenants.into_iter().find(|t| t.name.eq_ignore_ascii_case(tenant))?;
    spec.subscriptions.first().map(ToString::to_string)
}

pub async fn app(client: &AdminClient, command: AppCommand) -> Result<Value, ClientError> {
    match command {
        AppCommand::List => client.call(Method::GET, "/v1.0/applications", None).await,
        AppCommand::Create { name, identifier_uris, roles, rate_limit } => {
            let app_roles: Vec<Value> = roles.iter().map(|r| json!({ "value": r, "displayName": r })).collect();
            let mut body = json!({ "displayName": name, "identifierUris": identifier_uris, "appRoles": app_roles });
            if let Some(rate) = rate_limit {
                body["ficusRateLimit"] = json!(rate);
            }
            client.call(Method::POST, "/v1.0/applications", Some(body)).await
        }
        AppCommand::RateLimit { app, rate, clear: _ } => {
            let body = json!({ "ficusRateLimit": rate });
            client.call(Method::PATCH, &client.app_path(&app).await?, Some(body)).await
        }
        AppCommand::Delete { app } => client.call(Method::DELETE, &client.app_path(&app).await?, None).await,
    }
}

pub async fn fic(client: &AdminClient, command: FicCommand) -> Result<Value, ClientError> {
    match command {
        FicCommand::List { app } => {
            let path = format!("{}/federatedIdentityCredentials", client.app_path(&app).await?);
            client.call(Method::GET, &path, None).await
        }
        FicCommand::Add { app, name, issuer, subject, expression, audience, description } => {
            let path = format!("{}/federatedIdentityCredentials", client.app_path(&app).await?);
            let mut body =
                json!({ "name": name, "issuer": issuer, "audiences": [audience], "description": description });
            match (subject, expression) {
                (_, Some(value)) => body["claimsMatchingExpression"] = json!({ "value": value, "languageVersion": 1 }),
                (subject, None) => body["subject"] = json!(subject),
            }
            client.call(Method::POST, &path, Some(body)).await
        }
        FicCommand::Delete { app, credential } => {
            let path = format!("{}/federatedIdentityCredentials/{credential}", client.app_path(&app).await?);
            client.call(Method::DELETE, &path, None).await
        }
        FicCommand::Explain { app, assertion, resource } => {
            let assertion = if assertion == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| ClientError::Setup(format!("reading the assertion from standard input: {e}")))?;
                text.trim().to_owned()
            } else {
                assertion
            };
            let path = format!("{}/explainAssertion", client.app_path(&app).await?);
            client.call(Method::POST, &path, Some(json!({ "assertion": assertion, "resource": resource }))).await
        }
    }
}

pub async fn identity(client: &AdminClient, command: IdentityCommand) -> Result<Value, ClientError> {
    let (method, name, rg, sub) = match command {
        IdentityCommand::Create { name, resource_group, subscription } => {
            (Method::PUT, name, resource_group, subscription)
        }
        IdentityCommand::Delete { name, resource_group, subscription } => {
            (Method::DELETE, name, resource_group, subscription)
        }
    };
    let path =
        client.arm_path(sub.as_deref(), &rg, &format!("Microsoft.ManagedIdentity/userAssignedIdentities/{name}"))?;
    let body = (method == Method::PUT).then(|| json!({ "location": "local" }));
    client.call(method, &path, body).await
}

impl AdminClient {
    /// The ARM path of a compute resource, or of a user-assigned identity in its resource group.
    fn compute_path(&self, resource: &ComputeRef) -> Result<String, ClientError> {
        let provider_path = match (resource.kind, resource.name.split_once("/slots/")) {
            (ComputeKind::Vm, _) => format!("Microsoft.Compute/virtualMachines/{}", resource.name),
            (ComputeKind::Webapp, Some((app, slot))) => format!("Microsoft.Web/sites/{app}/slots/{slot}"),
            (ComputeKind::Webapp, None) => format!("Microsoft.Web/sites/{}", resource.name),
        };
        self.arm_path(resource.subscription.as_deref(), &resource.resource_group, &provider_path)
    }
}

pub async fn resource(client: &AdminClient, command: ResourceCommand) -> Result<Value, ClientError> {
    match command {
        ResourceCommand::Set { resource, system, user_identities } => {
            let path = client.compute_path(&resource)?;
            let mut users = serde_json::Map::new();
            for identity in &user_identities {
                let id = client.arm_path(
                    resource.subscription.as_deref(),
                    &resource.resource_group,
                    &format!("Microsoft.ManagedIdentity/userAssignedIdentities/{identity}"),
                )?;
                users.insert(id, json!({}));
            }
            let kind = match (system, users.is_empty()) {
                (false, true) => "None",
                (true, true) => "SystemAssigned",
                (false, false) => "UserAssigned",
                (true, false) => "SystemAssigned, UserAssigned",
            };
            let mut identity = json!({ "type": kind });
            if !users.is_empty() {
                identity["userAssignedIdentities"] = Value::Object(users);
            }
            client.call(Method::PUT, &path, Some(json!({ "location": "local", "identity": identity }))).await
        }
        ResourceCommand::IdentityHeader { resource } => {
            let path = client.compute_path(&resource)?;
            client.call(Method::POST, &format!("{path}/listIdentityHeader"), None).await
        }
        ResourceCommand::Show { resource } => client.call(Method::GET, &client.compute_path(&resource)?, None).await,
    }
}

pub async fn role(client: &AdminClient, command: RoleCommand) -> Result<Value, ClientError> {
    let RoleCommand::Assign { principal, resource, role } = command;
    let app = client.call(Method::GET, &client.app_path(&resource).await?, None).await?;
    let role_id = app["appRoles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|r| r["value"] == role.as_str()))
        .and_then(|r| r["id"].as_str())
        .ok_or_else(|| ClientError::Setup(format!("application {resource} defines no app role '{role}'")))?;
    let sp = app["servicePrincipalId"].as_str().unwrap_or_default();
    let body = json!({ "principalId": principal, "resourceId": sp, "appRoleId": role_id });
    client.call(Method::POST, &format!("/v1.0/servicePrincipals/{sp}/appRoleAssignedTo"), Some(body)).await
}

pub async fn fault(client: &AdminClient, command: FaultCommand) -> Result<Value, ClientError> {
    match command {
        FaultCommand::Add {
            endpoint,
            resource,
            identity,
            application,
            status,
            retry_after,
            latency_ms,
            close_connection,
            requests,
            seconds,
            probability,
        } => {
            let target = match (resource, identity, application) {
                (Some(name), _, _) => json!({ "computeResource": name }),
                (_, Some(name), _) => json!({ "identity": name }),
                (_, _, Some(name)) => json!({ "application": name }),
                _ => json!({}),
            };
            let mut body = json!({ "endpoint": endpoint, "target": target });
            let fields = [
                ("status", status.map(Value::from)),
                ("retryAfter", retry_after.map(Value::from)),
                ("latencyMs", latency_ms.map(Value::from)),
                ("closeConnection", close_connection.then_some(Value::Bool(true))),
                ("requests", requests.map(Value::from)),
                ("seconds", seconds.map(Value::from)),
                ("probability", probability.map(Value::from)),
            ];
            for (name, value) in fields {
                if let Some(value) = value {
                    body[name] = value;
                }
            }
            client.call(Method::POST, "/ficus/faults", Some(body)).await
        }
        FaultCommand::List => client.call(Method::GET, "/ficus/faults", None).await,
        FaultCommand::Clear { id: Some(id) } => {
            client.call(Method::DELETE, &format!("/ficus/faults/{id}"), None).await?;
            Ok(json!({ "removed": 1 }))
        }
        FaultCommand::Clear { id: None } => client.call(Method::DELETE, "/ficus/faults", None).await,
    }
}

/// One admin command.
pub enum AdminCall {
    Token,
    App(AppCommand),
    Fic(FicCommand),
    Identity(IdentityCommand),
    Resource(ResourceCommand),
    Role(RoleCommand),
    Fault(FaultCommand),
    /// A one-time console sign-in link (a Reader's with `reader`).
    ConsoleLink {
        reader: bool,
    },
}

/// Runs `call` and returns what to print: the token, or the API's JSON answer, pretty-printed.
pub async fn dispatch(client: &AdminClient, call: AdminCall) -> Result<String, ClientError> {
    let answer = match call {
        AdminCall::Token => return Ok(client.token().to_owned()),
        AdminCall::App(command) => app(client, command).await?,
        AdminCall::Fic(command) => fic(client, command).await?,
        AdminCall::Identity(command) => identity(client, command).await?,
        AdminCall::Resource(command) => resource(client, command).await?,
        AdminCall::Role(command) => role(client, command).await?,
        AdminCall::Fault(command) => fault(client, command).await?,
        AdminCall::ConsoleLink { reader } => {
            let body = reader.then(|| json!({ "role": "Ficus.Reader" }));
            let link = client.call(Method::POST, "/ficus/console/links", Some(body.unwrap_or(json!({})))).await?;
            let url = link["url"].as_str().unwrap_or_default();
            let role = link["role"].as_str().unwrap_or_default();
            return Ok(format!("Open this link within two minutes; it works once and signs you in as {role}:\n{url}"));
        }
    };
    Ok(serde_json::to_string_pretty(&answer).unwrap_or_default())
}
