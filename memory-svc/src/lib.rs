//! memory-svc: what each tenant's agent remembers about each caller: memories, caller
//! profiles, call summaries, personality metrics and averages; enriched context at call start;
//! export and erase of one caller.
//!
//! Parts: [`policy`] declares the token kind and scope of each RPC (enforced by the mesh auth
//! layer); [`service::MemorySvc`] implements `MemoryService` and `MemoryAdminService`: it parses
//! requests at the boundary ([`wire`], which also holds the documented limits), runs SQL through
//! [`store`] (all of the service's SQL, one module per table family) inside one tenant
//! transaction per request (row-level security in migration V3 confines every statement to the
//! token's tenant), analyses finished calls with a [`summarizer::Summarizer`] (heuristic, or
//! OpenAI chat completions when configured) and renders the enriched context with [`context`];
//! [`model`] holds the enums of the text columns with a closed set of values (sentiment,
//! resolution, trend, audit action, memory type and scope); [`error`] maps every failure to a
//! gRPC status once. [`server`] wires [`settings`], the pool (logged in as `memory_svc`,
//! self-checked) and the mesh server; [`serve_with`] also starts the background purge of
//! expired memories.
#![forbid(unsafe_code)]

pub mod context;
pub mod error;
pub mod model;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod summarizer;
pub mod wire;

pub use server::{Deps, NAME, Options, policy, run, serve, serve_with};
pub use settings::{MIN_AUDIT_KEY_LEN, Settings};
