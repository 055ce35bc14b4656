//! `mesh`: the plumbing every NeuroSphere service shares.
//!
//! - [`api`]: Rust types and tonic clients/servers generated from `proto/` (the one source of
//!   truth), plus the encoded descriptor set served by reflection.
//! - [`settings`]: typed settings read from environment variables, documented once, validated at
//!   start-up with every error reported together.
//! - [`telemetry`]: `tracing` subscriber (JSON or human output) and the per-request span.
//! - [`auth`]: JWT service and tenant tokens; the tower layer that verifies them and puts a
//!   typed [`auth::Caller`] into request extensions; the client interceptor that attaches them.
//! - [`db`]: the deadpool-postgres pool and the one helper that runs a closure in a transaction
//!   with the tenant set (`set_config('app.customer_id', …, true)`), which RLS policies enforce.
//! - [`domain`]: validated newtypes for identifiers that cross the wire.
//! - [`migrations`]: the SQL in `migrations/`, embedded and applied with a version table.
//! - [`identity`]: a service's signing key and trust bundle; development key generation.
//! - [`server`]: serves a gRPC service with health, reflection, auth and tracing on one port, and
//!   `/metrics`, `/healthz`, `/readyz` on an admin port; drains on shutdown.
//! - `testkit` (feature): a private PostgreSQL, a fresh migrated database per test, tokens;
//!   `loadgen`, the benchmarks' closed-loop and paced load generator.
//!
//! A request flows: socket -> trace span -> auth layer (verifies the JWT, inserts `Caller`) ->
//! handler (reads only `Caller`) -> `db::Db::tenant_tx` (transaction + tenant setting) -> RLS.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod balance;
pub mod db;
pub mod domain;
pub mod identity;
pub mod migrations;
pub mod server;
pub mod settings;
pub mod telemetry;

#[cfg(feature = "testkit")]
pub mod loadgen;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "testkit")]
pub mod testkit_process;
