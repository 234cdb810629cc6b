//! External issuers (GitHub Actions, Kubernetes, other OIDC providers): their discovery documents
//! and JWKS, fetched only for issuers a federated credential or the configuration names, cached and
//! served stale when the issuer is down.
//!
//! Empty until the federated token exchange lands (issue 6); the module exists so the layout, and
//! the rule that only this module talks to external issuers, are fixed from the start.
