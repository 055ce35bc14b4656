//! memory-svc: what each tenant's agent remembers about each caller: memories, caller
//! profiles, call summaries, personality metrics and averages; enriched context at call start;
//! export and erase of one caller.
//!
//! Parts: [`policy`] declares the token kind and scope of each RPC (enforced by the mesh auth
//! layer); [`service::MemorySvc`] implements `MemoryService` and `MemoryAdminService`; [`run`]
//! wires settings, the pool (logged in as `memory_svc`, self-checked) and the mesh server.
#![forbid(unsafe_code)]

pub mod service;

use std::future::Future;

use mesh::api::memory::memory_admin_service_server::MemoryAdminServiceServer;
use mesh::api::memory::memory_service_server::MemoryServiceServer;
use mesh::api::service_names as names;
use mesh::auth::{Policy, Rule};
use mesh::db::Db;
use mesh::identity::{Identity, names::MEMORY_SVC, scope};
use mesh::server::{ServeConfig, ServiceSettings};
use mesh::settings::{Env, SettingsError, catalog};
use tokio::net::TcpListener;

/// This service's name: the audience of tokens addressed to it and the issuer of its tokens.
pub const NAME: &str = MEMORY_SVC;

/// Which token kind and scope each RPC needs.
pub fn policy() -> Policy {
    Policy::new()
        .service_methods(
            names::MEMORY,
            &[
                ("StoreMemory", Rule::tenant(scope::MEMORY_WRITE)),
                ("ListMemories", Rule::tenant(scope::MEMORY_READ)),
                ("DeleteMemory", Rule::tenant(scope::MEMORY_WRITE)),
                ("GetCallerProfile", Rule::tenant(scope::MEMORY_READ)),
                ("UpdateCallerProfile", Rule::tenant(scope::MEMORY_WRITE)),
                ("RecordCall", Rule::tenant(scope::MEMORY_WRITE)),
                ("GetEnrichedContext", Rule::tenant(scope::MEMORY_READ)),
                ("SearchSummaries", Rule::tenant(scope::MEMORY_READ)),
                ("ExportCaller", Rule::tenant(scope::MEMORY_EXPORT)),
                ("EraseCaller", Rule::tenant(scope::MEMORY_ERASE)),
            ],
        )
        .service_methods(
            names::MEMORY_ADMIN,
            &[
                ("PurgeExpiredMemories", Rule::service(scope::MEMORY_ADMIN)),
                ("EraseTenant", Rule::service(scope::MEMORY_ADMIN)),
            ],
        )
}

/// memory-svc's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Ports, database, identity, drain deadline.
    pub common: ServiceSettings,
}

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let common = ServiceSettings::from_env(
            &mut env,
            NAME,
            &catalog::MEMORY_SVC_PORT,
            &catalog::MEMORY_SVC_ADMIN_PORT,
        );
        env.finish()?;
        Ok(Self {
            common: common.expect("present when finish() succeeded"),
        })
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct Deps {
    /// Pool logged in as the service's own role.
    pub db: Db,
    /// This service's key and trust bundle.
    pub identity: Identity,
}

/// Connects to the database (self-checked), loads the identity, binds the ports and serves
/// until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let p = mesh::server::prepare(NAME, &settings.common).await?;
    let deps = Deps {
        db: p.db,
        identity: p.identity,
    };
    serve(
        deps,
        p.grpc,
        p.admin,
        settings.common.drain_deadline,
        shutdown,
    )
    .await
}

/// Serves on already-bound listeners (tests bind port 0).
pub async fn serve(
    deps: Deps,
    grpc: TcpListener,
    admin: TcpListener,
    drain_deadline: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let svc = service::MemorySvc::new(deps.clone());
    let routes = tonic::service::Routes::new(MemoryServiceServer::new(svc.clone()))
        .add_service(MemoryAdminServiceServer::new(svc));
    let config = ServeConfig::for_service(
        NAME,
        (grpc, admin),
        &deps.identity,
        policy(),
        vec![names::MEMORY, names::MEMORY_ADMIN],
        deps.db,
        drain_deadline,
    );
    mesh::server::serve(config, routes, shutdown).await?;
    Ok(())
}
