//! One integration-test binary: each test spawns the real broker on 127.0.0.1:0 over real TLS,
//! with its own temporary keys and SQLite database (or PostgreSQL database, for cluster mode), and
//! talks to it over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin_api;
mod admin_cli;
mod admin_service;
mod cli;
mod cluster;
mod console;
mod contract;
mod crash;
mod discovery;
mod fake_issuer;
mod faults;
mod federation;
mod helpers;
mod key_store;
mod keys;
mod managed_identity;
mod operations;
mod outage;
mod pg;
mod proxy_protocol;
mod rate_limits;
mod snapshot;
mod tls;
mod token;
mod vault;
mod world;
