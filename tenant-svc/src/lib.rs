//! tenant-svc: customers (tenants), their phone numbers, agent configuration with its history,
//! platform defaults, outbound-call and webhook settings with the webhook signing secrets, and the
//! issuer of tenant tokens.
//!
//! Parts: [`policy`] declares which token kind and scope each RPC needs (enforced by the mesh
//! auth layer before a handler runs); [`service::TenantSvc`] implements the three gRPC services
//! (`TenantAdminService`, `TenantService`, `EdgeService`, a module each) over [`validate`]
//! (client input into checked values), [`customer`], [`model`], [`outbound`] and [`call_handling`] (what a customer
//! is and configured, and how an update changes it), [`history`] (the unit of the change
//! history), [`webhook`] (secrets and signatures), [`routing`] (the call-routing cache) and
//! [`store`] (all SQL, a module per table); [`wire`] and [`page`] are the conversions and
//! pagination everything shares, at the bottom of the module graph; [`error`] maps failures
//! through the mesh's one status policy; [`notice`] renders the mail to a tenant's owners when a
//! caller leaves a message (`NotifyOwners`, sent through `mesh::mail`); [`peers`] are memory-svc and media-svc, asked to erase a
//! tenant when its customer is deleted. [`server`] wires [`settings`], the database pool (logged
//! in as `tenant_svc`, self-checked), the identity (tenant-svc holds the only key that mints
//! tenant tokens) and the mesh server together.
#![forbid(unsafe_code)]

pub mod account;
pub mod call_handling;
pub mod customer;
pub mod error;
pub mod history;
pub mod model;
pub mod notice;
pub mod operator;
pub mod outbound;
pub mod page;
pub mod peers;
pub mod routing;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod validate;
pub mod webhook;
pub mod wire;

pub use server::{Deps, NAME, policy, run, serve};
pub use settings::Settings;
