//! media-svc: live calls bridged to the realtime AI backend, call records, transcripts, usage,
//! outbound calls and post-call webhooks.
//!
//! Parts: [`policy`] declares the token kind and scope of each RPC (enforced by the mesh auth
//! layer); [`service::MediaSvc`] implements `CallService` and `MediaAdminService`; [`run`] wires
//! settings, the pool (logged in as `media_svc`, self-checked) and the mesh server.
#![forbid(unsafe_code)]

pub mod service;

use std::future::Future;

use mesh::api::media::call_service_server::CallServiceServer;
use mesh::api::media::media_admin_service_server::MediaAdminServiceServer;
use mesh::api::service_names as names;
use mesh::auth::{Policy, Rule};
use mesh::db::Db;
use mesh::identity::{Identity, names::MEDIA_SVC, scope};
use mesh::server::{ServeConfig, ServiceSettings};
use mesh::settings::{Env, SettingsError, catalog};
use tokio::net::TcpListener;

/// This service's name: the audience of tokens addressed to it and the issuer of its tokens.
pub const NAME: &str = MEDIA_SVC;

/// Which token kind and scope each RPC needs.
pub fn policy() -> Policy {
    Policy::new()
        .service_methods(
            names::CALL,
            &[
                ("RegisterCall", Rule::tenant(scope::MEDIA_CALLS)),
                ("StreamCall", Rule::tenant(scope::MEDIA_STREAM)),
                ("UpdateCallStatus", Rule::tenant(scope::MEDIA_CALLS)),
                ("ListCalls", Rule::tenant(scope::MEDIA_READ)),
                ("GetCall", Rule::tenant(scope::MEDIA_READ)),
                ("GetUsage", Rule::tenant(scope::MEDIA_READ)),
                ("ExportCaller", Rule::tenant(scope::MEDIA_EXPORT)),
                ("EraseCaller", Rule::tenant(scope::MEDIA_ERASE)),
                ("PlaceOutboundCall", Rule::tenant(scope::MEDIA_OUTBOUND)),
                ("ListDeadLetters", Rule::tenant(scope::MEDIA_READ)),
                ("RedeliverDeadLetter", Rule::tenant(scope::MEDIA_CALLS)),
            ],
        )
        .service_methods(
            names::MEDIA_ADMIN,
            &[("EraseTenant", Rule::service(scope::MEDIA_ADMIN))],
        )
}

/// media-svc's settings.
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
            &catalog::MEDIA_SVC_PORT,
            &catalog::MEDIA_SVC_ADMIN_PORT,
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
    let svc = service::MediaSvc::new(deps.clone());
    let routes = tonic::service::Routes::new(CallServiceServer::new(svc.clone()))
        .add_service(MediaAdminServiceServer::new(svc));
    let config = ServeConfig::for_service(
        NAME,
        (grpc, admin),
        &deps.identity,
        policy(),
        vec![names::CALL, names::MEDIA_ADMIN],
        deps.db,
        drain_deadline,
    );
    mesh::server::serve(config, routes, shutdown).await?;
    Ok(())
}
