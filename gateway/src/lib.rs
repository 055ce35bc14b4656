//! gateway: the HTTP/WebSocket edge. Twilio webhooks and Media Streams come in here and leave as
//! gRPC calls to tenant-svc and media-svc; the legacy memory REST endpoints are translated into
//! memory-svc calls.
//!
//! Parts: [`signature`] (X-Twilio-Signature), [`twilio`] (typed webhooks and Media Streams
//! messages), [`twiml`] (escaped answers), [`limits`] (429s), [`edge`] (the handlers: voice and
//! status webhooks, the Media Streams bridge to media-svc's `StreamCall`, legacy REST through
//! memory-svc), [`public`] (the tenant websites' `POST /v1/calls`, forwarded to media-svc's
//! `PlaceOutboundCall`), [`Settings`], [`router`] and [`run`]/[`serve`] (public port + admin
//! endpoints).
//!
//! A call: signed webhook -> `ResolveNumber` (tenant-svc, gateway service token) ->
//! `RegisterCall` (media-svc, the call's tenant token) -> TwiML `<Connect><Stream>` carrying the
//! tenant token as stream token -> WebSocket `start` (token verified, bound to the CallSid) ->
//! `StreamCall` both ways until either side ends. No session state: any replica takes any step.
#![forbid(unsafe_code)]

pub mod edge;
pub mod http;
pub mod limits;
pub mod public;
pub mod signature;
pub mod sim;
pub mod twilio;
pub mod twiml;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use futures::FutureExt;
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::identity::{Identity, IdentityFiles, names::GATEWAY};
use mesh::identity::{names, scope};
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
    /// Said when the number is unknown or the tenant suspended.
    pub unavailable_message: String,
    /// Said when the platform cannot take the call.
    pub apology_message: String,
    /// Said when the tenant has as many calls in progress as its package allows.
    pub busy_message: String,
    /// Rate limits.
    pub limits: limits::LimitConfig,
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
        let unavailable_message: Option<String> = env.get(&catalog::GATEWAY_UNAVAILABLE_MESSAGE);
        let apology_message: Option<String> = env.get(&catalog::GATEWAY_APOLOGY_MESSAGE);
        let busy_message: Option<String> = env.get(&catalog::GATEWAY_BUSY_MESSAGE);
        let public_calls_per_ip: Option<u32> = env.get(&catalog::GATEWAY_PUBLIC_CALLS_PER_IP);
        let public_calls_window = env.seconds(&catalog::GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS);
        if public_calls_window == Some(Duration::ZERO) {
            env.problem(
                &catalog::GATEWAY_PUBLIC_CALLS_IP_WINDOW_SECONDS,
                "must be at least 1",
            );
        }
        let per_ip: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_IP);
        let per_account: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_ACCOUNT);
        let per_tenant: Option<u32> = env.get(&catalog::GATEWAY_RATE_PER_TENANT);
        for (setting, value) in [
            (&catalog::GATEWAY_RATE_PER_IP, per_ip),
            (&catalog::GATEWAY_RATE_PER_ACCOUNT, per_account),
            (&catalog::GATEWAY_RATE_PER_TENANT, per_tenant),
            (&catalog::GATEWAY_PUBLIC_CALLS_PER_IP, public_calls_per_ip),
        ] {
            if value == Some(0) {
                env.problem(setting, "must be at least 1");
            }
        }
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
            unavailable_message: unavailable_message.expect(missing),
            apology_message: apology_message.expect(missing),
            busy_message: busy_message.expect(missing),
            limits: limits::LimitConfig {
                public_calls_per_ip: (
                    public_calls_per_ip.expect(missing),
                    public_calls_window.expect(missing),
                ),
                per_ip: (
                    per_ip.expect(missing),
                    per_ip.expect(missing).saturating_mul(2),
                ),
                per_account: (
                    per_account.expect(missing),
                    per_account.expect(missing).saturating_mul(2),
                ),
                per_tenant: (
                    per_tenant.expect(missing),
                    per_tenant.expect(missing).saturating_mul(2),
                ),
            },
        })
    }
}

/// Largest request body accepted on any public endpoint (Twilio's webhooks are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The public routes over shared state.
pub fn router(edge: Arc<edge::Edge>) -> axum::Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    let webhooks = axum::Router::new()
        .route("/twilio/voice", post(edge::voice))
        .route("/phone/incoming-realtime", post(edge::voice))
        .route("/twilio/status", post(edge::status_callback))
        .route("/memory/store", post(edge::legacy_store))
        .route("/memory/retrieve", post(edge::legacy_retrieve))
        .route("/v2/context/enriched", post(edge::legacy_enriched))
        .route(
            "/v1/calls",
            post(public::place_call).options(public::preflight),
        )
        // A slow client cannot hold a request (and its body) open forever.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ));
    axum::Router::new()
        .merge(webhooks)
        .route("/twilio/media", get(edge::media_stream))
        .route("/healthz", get(|| async { "ok\n" }))
        // Bodies are bounded before any handler reads them.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(edge)
}

/// Builds the shared state: lazy gRPC channels (the gateway starts even when a service is down;
/// calls then get the apology within the budget), the gateway's token source, limits.
pub fn edge_state(settings: &Settings, identity: &Identity) -> anyhow::Result<Arc<edge::Edge>> {
    use secrecy::ExposeSecret;
    // One URL or a comma-separated list of replicas (balanced, health-probed).
    let channel = |url: &str| -> anyhow::Result<tonic::transport::Channel> {
        Ok(mesh::balance::channel(url, |e| {
            e.connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(20))
        })?)
    };
    let base = settings.public_base_url.trim_end_matches('/').to_owned();
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        anyhow::bail!("PUBLIC_BASE_URL must start with https:// or http://");
    };
    let token = settings
        .twilio_auth_token
        .expose_secret()
        .as_bytes()
        .to_vec();
    let log_key = {
        use sha2::Digest;
        sha2::Sha256::digest([b"neurosphere-log-hash:".as_slice(), &token].concat()).to_vec()
    };
    let tenant_channel = channel(&settings.tenant_svc_url)?;
    let media_channel = channel(&settings.media_svc_url)?;
    Ok(Arc::new(edge::Edge {
        public_base_url: base,
        media_ws_url: format!("{ws_base}/twilio/media"),
        auth_token: secrecy::SecretSlice::from(token),
        tenant: EdgeServiceClient::new(tenant_channel.clone()),
        media: CallServiceClient::new(media_channel.clone()),
        peer_channels: [("tenant-svc", tenant_channel), ("media-svc", media_channel)],
        memory: MemoryServiceClient::new(channel(&settings.memory_svc_url)?),
        tenant_token: identity.service_tokens(
            names::TENANT_SVC,
            &[scope::TENANT_RESOLVE, scope::TENANT_EXCHANGE],
        ),
        stream_verifier: identity.verifier(names::MEDIA_SVC),
        budget: Duration::from_secs(2),
        unavailable_message: settings.unavailable_message.clone(),
        apology_message: settings.apology_message.clone(),
        busy_message: settings.busy_message.clone(),
        answered: std::sync::Mutex::new(std::collections::HashMap::new()),
        limits: limits::Limits::new(settings.limits),
        streams: tokio_util::task::TaskTracker::new(),
        drain_expired: tokio_util::sync::CancellationToken::new(),
        log_key,
    }))
}

/// Loads the identity, binds the ports and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = Identity::load(NAME, &settings.identity)?;
    let http = mesh::server::bind(settings.http_addr, "gateway HTTP").await?;
    let admin = mesh::server::bind(settings.admin_addr, "gateway admin").await?;
    let edge = edge_state(&settings, &identity)?;
    serve(edge, http, admin, settings.drain_deadline, shutdown).await
}

/// Readiness: tenant-svc and media-svc answer gRPC health.
fn readiness(edge: Arc<edge::Edge>) -> mesh::server::ReadinessCheck {
    Arc::new(move || {
        let edge = edge.clone();
        async move {
            use tonic_health::pb::HealthCheckRequest;
            use tonic_health::pb::health_client::HealthClient;
            for (name, channel) in &edge.peer_channels {
                let mut client = HealthClient::new(channel.clone());
                let ok = client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().status == 1)
                    .unwrap_or(false);
                if !ok {
                    return Err(format!("{name} unreachable"));
                }
            }
            Ok(())
        }
        .boxed()
    })
}

/// Serves on already-bound listeners (tests bind port 0).
pub async fn serve(
    edge: Arc<edge::Edge>,
    http: TcpListener,
    admin: TcpListener,
    drain_deadline: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let draining = Arc::new(AtomicBool::new(false));
    let admin_addr = admin.local_addr()?;
    let admin_app = mesh::server::admin_router(NAME, readiness(edge.clone()), draining.clone());
    let admin_task = tokio::spawn(
        axum::serve(admin, admin_app)
            .with_graceful_shutdown(shutdown.clone())
            .into_future(),
    );
    // Keep limiter and answer memory bounded however many addresses and calls come and go.
    let shrink = {
        let edge = edge.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                edge.limits.shrink();
                edge.forget_old_answers();
            }
        })
    };
    let http_addr = http.local_addr()?;
    tracing::info!(service = NAME, %http_addr, %admin_addr, "serving");
    let stop = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
        }
    };
    let (streams, drain_expired) = (edge.streams.clone(), edge.drain_expired.clone());
    let server = async move {
        http::serve(http, router(edge), http::MAX_CONNECTIONS, stop).await;
        // Upgraded Media Streams connections are no longer hyper's: wait for their calls too.
        streams.close();
        if !streams.is_empty() {
            tracing::info!(
                service = NAME,
                live_calls = streams.len(),
                "draining live calls"
            );
        }
        streams.wait().await;
    };
    tokio::pin!(server);
    tokio::select! {
        () = &mut server => {}
        () = shutdown.clone() => {
            if tokio::time::timeout(drain_deadline, &mut server).await.is_err() {
                tracing::warn!(service = NAME, "drain deadline passed; closing remaining connections and calls");
                drain_expired.cancel();
                // The bridges send their close frames; a socket that cannot take one is dropped.
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
            }
        }
    }
    shrink.abort();
    admin_task.await??;
    tracing::info!(service = NAME, "stopped");
    Ok(())
}
