//! mesh's integration tests, one binary (one link instead of one per file; the modules are the
//! former test files):
//! - [`auth`]: the auth layer end to end over a real tonic server;
//! - [`balance`]: client-side balancing over replicas that die and come back;
//! - [`catalog`]: the RLS catalog check and the grep gate against session-wide tenant settings;
//! - [`deploy`]: key custody in the deploy/ manifests (parsed YAML);
//! - [`docs`]: the README settings table and the test citations in SECURITY.md, RELIABILITY.md
//!   and ARCHITECTURE.md;
//! - [`rls`]: row-level security as the services see it, against a real PostgreSQL;
//! - [`server`]: graceful drain and its deadline;
//! - [`status`]: how database failures read through the status policy.

mod auth;
mod balance;
mod catalog;
mod deploy;
mod docs;
mod rls;
mod server;
mod status;
