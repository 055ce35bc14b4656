//! gateway: the HTTP/WebSocket edge. Twilio webhooks and Media Streams come in here and leave as
//! gRPC calls to tenant-svc and media-svc; the legacy memory REST endpoints are translated into
//! memory-svc calls.
//!
//! Parts: [`Settings`] (ports, public base URL, Twilio auth token, where the services are);
//! [`router`] (the public HTTP routes; each answers 501 until the gateway issue lands);
//! [`run`]/[`serve`] (the public port plus the shared admin endpoints, graceful shutdown).
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::{get, post};
use futures::FutureExt;
use mesh::identity::{Identity, IdentityFiles, names::GATEWAY};
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::SecretString;
use tokio::net::TcpListener;

/// This service's name (issuer of its service tokens).
pub const NAME: &str = GATEWAY;

/// gateway settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public HTTP/WebSocket listen address.
    pub http_addr: SocketAddr,
    /// Admin listen address.
    pub admin_addr: SocketAddr,
    /// Base URL Twilio requests; signatures are checked against it.
    pub public_base_url: String,
    /// Twilio Auth Token (signature key).
    pub twilio_auth_token: SecretString,
    /// tenant-svc endpoint.
    pub tenant_svc_url: String,
    /// memory-svc endpoint.
    pub memory_svc_url: String,
    /// media-svc endpoint.
    pub media_svc_url: String,
    /// Signing key (service tokens to tenant-svc) and trust bundle.
    pub identity: IdentityFiles,
    /// Drain deadline on shutdown.
    pub drain_deadline: Duration,
}

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let http_addr = env.listen_addr(&catalog::GATEWAY_PORT);
        let admin_addr = env.listen_addr(&catalog::GATEWAY_ADMIN_PORT);
        let public_base_url: Option<String> = env.get(&catalog::PUBLIC_BASE_URL);
        if let Some(u) = &public_base_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            env.problem(
                &catalog::PUBLIC_BASE_URL,
                "must start with https:// or http://",
            );
        }
        let twilio_auth_token = env.secret(&catalog::TWILIO_AUTH_TOKEN);
        let tenant_svc_url = env.get(&catalog::TENANT_SVC_URL);
        let memory_svc_url = env.get(&catalog::MEMORY_SVC_URL);
        let media_svc_url = env.get(&catalog::MEDIA_SVC_URL);
        let identity = IdentityFiles::from_env(&mut env);
        let drain_deadline = env.seconds(&catalog::SHUTDOWN_GRACE_SECONDS);
        env.finish()?;
        let missing = "present when finish() succeeded";
        Ok(Self {
            http_addr: http_addr.expect(missing),
            admin_addr: admin_addr.expect(missing),
            public_base_url: public_base_url.expect(missing),
            twilio_auth_token: twilio_auth_token.expect(missing),
            tenant_svc_url: tenant_svc_url.expect(missing),
            memory_svc_url: memory_svc_url.expect(missing),
            media_svc_url: media_svc_url.expect(missing),
            identity: identity.expect(missing),
            drain_deadline: drain_deadline.expect(missing),
        })
    }
}

/// The public routes. Each answers 501 until the gateway issue lands.
pub fn router() -> axum::Router {
    let not_yet = |what: &'static str| {
        move || async move {
            (
                StatusCode::NOT_IMPLEMENTED,
                Json(serde_json::json!({ "error": format!("{what} is not implemented yet") })),
            )
        }
    };
    axum::Router::new()
        .route("/twilio/voice", post(not_yet("POST /twilio/voice")))
        .route(
            "/phone/incoming-realtime",
            post(not_yet("POST /phone/incoming-realtime")),
        )
        .route("/twilio/status", post(not_yet("POST /twilio/status")))
        .route("/twilio/media", get(not_yet("GET /twilio/media")))
        .route("/memory/store", post(not_yet("POST /memory/store")))
        .route("/memory/retrieve", post(not_yet("POST /memory/retrieve")))
        .route(
            "/v2/context/enriched",
            post(not_yet("POST /v2/context/enriched")),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Loads the identity, binds the ports and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = Identity::load(NAME, &settings.identity)?;
    let http = mesh::server::bind(settings.http_addr, "gateway HTTP").await?;
    let admin = mesh::server::bind(settings.admin_addr, "gateway admin").await?;
    serve(identity, http, admin, settings.drain_deadline, shutdown).await
}

/// Serves on already-bound listeners (tests bind port 0).
pub async fn serve(
    _identity: Identity,
    http: TcpListener,
    admin: TcpListener,
    drain_deadline: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let draining = Arc::new(AtomicBool::new(false));
    // The gateway's own dependencies (tenant-svc, media-svc) are checked by the gateway issue;
    // until then the gateway is ready as soon as it listens.
    let readiness: mesh::server::ReadinessCheck = Arc::new(|| async { Ok(()) }.boxed());
    let admin_addr = admin.local_addr()?;
    let admin_app = mesh::server::admin_router(NAME, readiness, draining.clone());
    let admin_task = tokio::spawn(
        axum::serve(admin, admin_app)
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
    );
    let http_addr = http.local_addr()?;
    tracing::info!(service = NAME, %http_addr, %admin_addr, "serving");
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
        }
    };
    let server = axum::serve(http, router())
        .with_graceful_shutdown(stop)
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        () = shutdown.clone() => {
            if tokio::time::timeout(drain_deadline, &mut server).await.is_err() {
                tracing::warn!(service = NAME, "drain deadline passed; closing remaining connections");
            }
        }
    }
    admin_task.await??;
    tracing::info!(service = NAME, "stopped");
    Ok(())
}
