//! The scenarios, as HTTP requests against a running broker (set up through its public and admin
//! APIs, with the demo world's identities and applications).

use std::sync::Arc;

use serde_json::Value;

use crate::Args;
use crate::run::Request;

const SUBSCRIPTION_RG: &str = "/subscriptions/0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9/resourceGroups/rg-demo/providers";

pub struct Client {
    http: reqwest::Client,
    target: String,
    mi: String,
    tenant: String,
    admin_token: Option<String>,
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            status
        }
        Err(_) => 0,
    }
}

impl Client {
    pub async fn connect(args: &Args) -> Result<Self, String> {
        let ca = std::fs::read(&args.ca_file).map_err(|e| format!("{}: {e}", args.ca_file))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?])
            .build()
            .map_err(|e| e.to_string())?;
        let mut client = Self {
            http,
            target: args.target.trim_end_matches('/').to_owned(),
            mi: args.mi.trim_end_matches('/').to_owned(),
            tenant: args.tenant.clone(),
            admin_token: None,
        };
        let creds_path = format!("{}/admin/{}.json", args.keys_dir, args.tenant);
        if let Ok(bytes) = std::fs::read(&creds_path) {
            let creds: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", creds["client_id"].as_str().unwrap_or_default()),
                ("client_secret", creds["client_secret"].as_str().unwrap_or_default()),
                ("scope", "api://ficus-management/.default"),
            ];
            let answer = client.post_form(&format!("/{}/oauth2/v2.0/token", args.tenant), &form).await?;
            client.admin_token = answer["access_token"].as_str().map(str::to_owned);
        }
        Ok(client)
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let response =
            self.http.post(format!("{}{path}", self.target)).form(form).send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    async fn admin_get(&self, path: &str) -> Result<Value, String> {
        let token = self.admin_token.as_deref().ok_or("no admin credentials (--keys-dir)")?;
        let response = self
            .http
            .get(format!("{}{path}", self.target))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    pub async fn scenario(&self, name: &str) -> Result<Request, String> {
        let http = self.http.clone();
        match name {
            "discovery" => {
                let url = format!("{}/{}/v2.0/.well-known/openid-configuration", self.target, self.tenant);
                Ok(Arc::new(move || {
                    let request = http.get(&url);
                    Box::pin(status_of(request))
                }))
            }
            "mi-token" => {
                let url =
                    format!("{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://vault", self.mi);
                Ok(Arc::new(move || {
                    let request = http.get(&url).header("Metadata", "true");
                    Box::pin(status_of(request))
                }))
            }
            "exchange-hit" => {
                let apps = self.admin_get("/v1.0/applications").await?;
                let app = apps["value"]
                    .as_array()
                    .and_then(|a| a.iter().find(|a| a["displayName"] == "stock-tracker"))
                    .and_then(|a| a["appId"].as_str())
                    .ok_or("the demo world's stock-tracker is missing")?
                    .to_owned();
                let uami = self
                    .admin_get(&format!("{SUBSCRIPTION_RG}/Microsoft.ManagedIdentity/userAssignedIdentities/uami-demo"))
                    .await?;
                let client_id = uami["properties"]["clientId"].as_str().ok_or("uami-demo is missing")?;
                let imds = format!(
                    "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id={client_id}",
                    self.mi
                );
                let token: Value = http
                    .get(&imds)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let assertion = token["access_token"].as_str().ok_or("no assertion from IMDS")?.to_owned();
                let url = format!("{}/{}/oauth2/v2.0/token", self.target, self.tenant);
                Ok(Arc::new(move || {
                    let form = [
                        ("grant_type", "client_credentials"),
                        ("client_id", app.as_str()),
                        ("scope", "api://vault/.default"),
                        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                        ("client_assertion", assertion.as_str()),
                    ];
                    let request = http.post(&url).form(&form);
                    Box::pin(status_of(request))
                }))
            }
            other => Err(format!("unknown scenario '{other}' (discovery, mi-token, exchange-hit)")),
        }
    }
}
