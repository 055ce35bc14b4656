//! `mesh`: the plumbing every NeuroSphere service shares.
//!
//! - [`api`]: Rust types and tonic clients/servers generated from `proto/` (the one source of
//!   truth), plus the encoded descriptor set served by reflection.
//! - [`settings`]: typed settings read from environment variables, documented once, validated at
//!   start-up with every error reported together.
//! - [`telemetry`]: `tracing` subscriber (JSON or human output) and the per-request span.
//! - [`audit`]: paging through a tenant's audit rows (newest first, below a cursor), shared by
//!   the services that keep them and tenant-svc, which merges them.
//! - [`auth`]: JWT service and tenant tokens; the tower layer that verifies them and puts a
//!   typed [`auth::Caller`] into request extensions; the client interceptor that attaches them.
//! - [`status`]: the one status policy: each service error names a [`status::ServiceErrorCode`],
//!   which decides its gRPC code, its HTTP status and whether its text reaches the client.
//! - [`db`]: the deadpool-postgres pool and the one helper that runs a closure in a transaction
//!   with the tenant set (`set_config('app.customer_id', …, true)`), which RLS policies enforce.
//! - [`domain`]: validated newtypes for identifiers that cross the wire.
//! - [`g711`]: the G.711 mu-law codec of telephone audio.
//! - [`net`]: the address filter for tenants' endpoints (public unicast addresses only).
//! - [`migrations`]: the SQL in `migrations/`, embedded and applied with a version table.
//! - [`identity`]: a service's signing key and trust bundle; development key generation.
//! - [`balance`]: client-side balancing over a service's replicas, with health probes.
//! - [`server`]: serves a gRPC service with health, reflection, auth and tracing on one port, and
//!   `/metrics`, `/healthz`, `/readyz` on an admin port; drains on shutdown.
//! - `mail` (feature): outgoing mail (SMTP or an `.eml` outbox folder), for the portal and
//!   tenant-svc.
//! - `testkit` (feature): a private PostgreSQL, a fresh migrated database per test, tokens;
//!   `loadgen`, the benchmarks' closed-loop and paced load generator.
//!
//! A request flows: socket -> trace span -> auth layer (verifies the JWT, inserts `Caller`) ->
//! handler (reads only `Caller`) -> `db::Db::tenant_tx` (transaction + tenant setting) -> RLS.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod balance;
pub mod call_handling;
pub mod db;
pub mod domain;
pub mod g711;
pub mod identity;
#[cfg(feature = "mail")]
pub mod mail;
pub mod migrations;
pub mod net;
pub mod server;
pub mod settings;
pub mod status;
pub mod telemetry;

#[cfg(feature = "testkit")]
pub mod loadgen;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "testkit")]
pub mod testkit_process;
