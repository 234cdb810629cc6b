//! ficus: a workload identity federation broker.
//!
//! Map of the crate (dependencies point one way:
//! `main -> startup -> {http -> service -> domain}` and `{store, upstream, signing} -> domain`):
//!
//! - [`domain`]: vocabulary, rules and ports (traits); no framework imports.
//! - [`service`]: use cases over the ports: discovery, health, applying the world.
//! - [`store`]: registry adapters: SQLite, PostgreSQL and the in-memory snapshot request paths read.
//! - [`signing`]: signing keys, the on-disk key store, rotation and the JWKS.
//! - [`upstream`]: external issuers' discovery documents and keys.
//! - [`http`]: every axum type: routers, state, errors, metrics middleware.
//! - [`cache`]: the token path's in-memory caches (moka) and their counters.
//! - [`rate_limit`]: the token path's rate limits (governor), divided between live replicas.
//! - [`cluster`]: replica membership: the heartbeat, the live-replica count, the cluster gauges.
//! - [`tls`]: development CA, server certificates, rustls configuration.
//! - [`config`]: layered, validated settings.
//! - [`startup`]: the composition root.
//! - [`cli`], [`telemetry`], [`files`]: the command line, logging, careful file writes.

pub mod cache;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod files;
pub mod http;
pub mod rate_limit;
pub mod sandbox;
pub mod service;
pub mod signing;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
