//! gateway: the HTTP/WebSocket edge. Twilio webhooks and Media Streams come in here and leave as
//! gRPC calls to tenant-svc and media-svc; the legacy memory REST endpoints are translated into
//! memory-svc calls; tenant websites place calls through the public API.
//!
//! Parts, by job: [`twilio`] (what Twilio sends, typed, and its webhooks: [`twilio::voice`],
//! [`twilio::status`]), [`stream`] (the Media Streams bridge to media-svc's `StreamCall`),
//! [`legacy`] (legacy REST through memory-svc, and `POST /v1/tokens`: an API key or legacy token
//! exchanged for a tenant token), [`public`] (the tenant websites'
//! `POST /v1/calls`, forwarded to media-svc's `PlaceOutboundCall`). Shared by them:
//! [`extract`] (typed extractors: the client address, a signed Twilio form, a signed upgrade),
//! [`limits`] (the rate limits, as layers in front of the handlers), [`proxy`] (the client's
//! address behind trusted proxies, and the per-address key of every limit), [`signature`]
//! (X-Twilio-Signature), [`twiml`] (escaped answers), [`retry`] (the one retry rule towards the
//! peers), [`state`] (what the handlers share), [`Settings`], [`router`] (which layers guard
//! which routes), [`http`] (the public listener's connection bounds: header deadline,
//! keep-alive idle, per-address cap on unfinished connections, HTTP/1.1 unless h2c is enabled) and [`run`]/[`serve`]
//! (public port + admin endpoints). [`sim`] plays Twilio's side of a call, for the CLI, tests
//! and benchmarks. [`console`] is the operator console, on its own private listener (never the
//! public port), calling tenant-svc's `OperatorService` with the operator's session.
//!
//! A call: signed webhook -> `ResolveNumber` (tenant-svc, gateway service token) ->
//! `RegisterCall` (media-svc, the call's tenant token; media-svc decides the answer once, from
//! the call row) -> TwiML `<Connect><Stream>` carrying media-svc's stream ticket (or busy, or
//! `<Hangup/>`) -> WebSocket `start` -> `OpenStream` (gateway service token: the ticket for a
//! grant bound to the CallSid and StreamSid) -> `StreamCall` (gateway service token and the
//! grant) both ways until either side ends. No session state: any replica takes any step.
#![forbid(unsafe_code)]

pub mod console;
pub mod extract;
pub mod http;
pub mod legacy;
pub mod limits;
pub mod proxy;
pub mod public;
pub mod retry;
pub mod settings;
pub mod signature;
pub mod sim;
pub mod state;
pub mod stream;
pub mod twilio;
pub mod twiml;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::handler::Handler as _;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use futures::FutureExt;
use mesh::identity::{Identity, names::GATEWAY};
use tokio::net::TcpListener;

pub use settings::Settings;
pub use state::{Edge, edge_state};

/// This service's name (issuer of its service tokens).
pub const NAME: &str = GATEWAY;

/// Largest request body accepted on any public endpoint (Twilio's webhooks are a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The public routes over shared state, each behind the layers that guard it.
pub fn router(edge: Arc<Edge>) -> axum::Router {
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    // The Twilio account's allowance needs the verified form, so it guards the voice handler.
    let voice =
        post(twilio::voice::answer.layer(from_fn_with_state(edge.clone(), limits::per_account)));
    let twilio = axum::Router::new()
        .route("/twilio/voice", voice.clone())
        .route("/phone/incoming-realtime", voice)
        .route("/twilio/status", post(twilio::status::callback))
        // Each address gets its allowance before anything it sent is read.
        .route_layer(from_fn_with_state(edge.clone(), limits::per_ip));
    // Outside the request timeout: the socket lives as long as its call.
    let media = axum::Router::new()
        .route("/twilio/media", get(stream::media_stream))
        .route_layer(from_fn_with_state(edge.clone(), limits::per_ip));
    let legacy = axum::Router::new()
        .route("/memory/store", post(legacy::store))
        .route("/memory/retrieve", post(legacy::retrieve))
        .route("/v2/context/enriched", post(legacy::enriched))
        // The tenant's allowance, once its token is exchanged (before the body is parsed)...
        .route_layer(from_fn_with_state(edge.clone(), limits::per_tenant))
        // ... after the address's, so a flood of made-up tokens costs no exchange.
        .route_layer(from_fn_with_state(edge.clone(), limits::legacy_per_ip));
    // The exchange on its own: the address's allowance bounds guessing.
    let tokens = axum::Router::new()
        .route("/v1/tokens", post(legacy::tokens))
        .route_layer(from_fn_with_state(edge.clone(), limits::legacy_per_ip));
    // The per-address allowance is media-svc's, charged only with a valid token.
    let calls = post(public::place_call)
        .options(public::preflight)
        // Every answer echoes the page's origin unless it was refused.
        .route_layer(from_fn(public::cors));
    let requests = axum::Router::new()
        .merge(twilio)
        .merge(legacy)
        .merge(tokens)
        .route("/v1/calls", calls)
        // A slow client cannot hold a request (and its body) open forever.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ));
    // The tenant portal: its own layers (headers, same-origin rule, CSRF, time budget), given
    // the client address this edge resolved (the key of its per-address sign-in allowance).
    let portal = portal::router(edge.portal.clone()).route_layer(from_fn(portal_client_address));
    axum::Router::new()
        .merge(requests)
        .merge(media)
        .merge(portal)
        .route("/healthz", get(|| async { "ok\n" }))
        // Bodies are bounded before any handler reads them.
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        // Where each request came from, first (behind a trusted proxy, the address it saw).
        .layer(from_fn_with_state(edge.clone(), extract::resolve_client))
        .with_state(edge)
}

/// Hands the portal the client address [`extract::resolve_client`] found, as the key of
/// per-address limits (the IPv4 address or the IPv6 /64).
async fn portal_client_address(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(client) = request.extensions().get::<extract::ClientAddr>().copied() {
        request
            .extensions_mut()
            .insert(portal::ClientAddress(client.limit_key()));
    }
    next.run(request).await
}

/// Loads the identity, binds the ports and serves until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = Identity::load(NAME, &settings.identity)?;
    let http = mesh::server::bind(settings.http_addr, "gateway HTTP").await?;
    let admin = mesh::server::bind(settings.admin_addr, "gateway admin").await?;
    let console_listener = mesh::server::bind(settings.console_addr, "operator console").await?;
    let edge = edge_state(&settings, &identity)?;
    let shutdown = shutdown.boxed().shared();
    let console = tokio::spawn(console::serve(
        console_listener,
        edge.console.clone(),
        shutdown.clone(),
    ));
    let served = serve(edge, http, admin, settings.drain_deadline, shutdown).await;
    console.abort();
    served
}

/// Readiness: tenant-svc and media-svc answer gRPC health.
fn readiness(edge: Arc<Edge>) -> mesh::server::ReadinessCheck {
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
    edge: Arc<Edge>,
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
    // Keep the limiters bounded however many addresses come and go.
    let shrink = {
        let edge = edge.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                edge.limits.shrink();
                edge.portal.shrink();
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
    let (connections, trusted) = (edge.connections.clone(), edge.trusted_proxies.clone());
    let server = async move {
        http::serve(http, router(edge), &connections, &trusted, stop).await;
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
