//! Server bootstrap shared by every service binary.
//!
//! [`serve`] runs two servers on listeners the caller bound (port 0 in tests):
//! - the gRPC port: the service's own gRPC services plus `grpc.health.v1.Health` and server
//!   reflection (v1 and v1alpha, so grpcurl 1.8 works), behind the layer stack
//!   trace span -> RPC metrics -> authentication;
//! - the admin HTTP port: `/metrics` (Prometheus text), `/healthz` (the process is up) and
//!   `/readyz` (dependencies reachable and not draining).
//!
//! When `shutdown` resolves (see [`shutdown_signal`]), health turns NOT_SERVING, `/readyz`
//! answers 503, the gRPC server stops accepting connections and lets in-flight RPCs and streams
//! finish until the drain deadline, and then both servers stop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::routing::get;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::auth::{AuthLayer, Policy, Verifier};

/// A readiness probe: resolves to `Err(reason)` when a dependency is unreachable.
pub type ReadinessCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Everything [`serve`] needs besides the service's routes.
pub struct ServeConfig {
    /// Service name used in logs and metrics, e.g. `tenant-svc`.
    pub service: &'static str,
    /// Bound gRPC listener.
    pub grpc_listener: TcpListener,
    /// Bound admin HTTP listener.
    pub admin_listener: TcpListener,
    /// Verifies tokens addressed to this service.
    pub verifier: Verifier,
    /// Which token kind and scope each RPC needs.
    pub policy: Arc<Policy>,
    /// Full names of the gRPC services served, reported by the health service.
    pub health_names: Vec<String>,
    /// Readiness probe for `/readyz`.
    pub readiness: ReadinessCheck,
    /// How long in-flight RPCs and streams may run after shutdown begins.
    pub drain_deadline: Duration,
    /// Where tenant-token revocations are read from (`None`: no tenant is ever revoked, for
    /// servers without a database).
    pub revocations: Option<RevocationFeed>,
}

/// The revocations the auth layer checks and the pool they are refreshed from.
#[derive(Clone)]
pub struct RevocationFeed {
    /// The copy the auth layer reads.
    pub revocations: crate::auth::Revocations,
    /// The pool `app.token_revocations()` and `app.token_subject_revocations()` are read
    /// through.
    pub db: crate::db::Db,
    /// How often it is read (`crate::auth::revocation::REFRESH_INTERVAL` in services).
    pub interval: Duration,
}

/// Errors that stop a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The admin server failed.
    #[error("admin server failed: {0}")]
    Admin(#[from] std::io::Error),
}

/// Binds a TCP listener, with a message naming the address when the port is taken.
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} for {what}: {e}"))
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received; shutting down"),
        () = term => tracing::info!("SIGTERM received; shutting down"),
    }
}

/// `routes` plus gRPC health (every name SERVING) and reflection (v1 and v1alpha, for grpcurl
/// and older clients), and the reporter that flips health when draining begins.
async fn with_health_and_reflection(
    routes: Routes,
    health_names: &[String],
) -> (tonic_health::server::HealthReporter, Routes) {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, health_names, ServingStatus::Serving).await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("the embedded descriptor sets are valid");
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    (health_reporter, routes)
}

/// Sets the server-wide health ("") and every named service's to `status`.
async fn set_health(
    reporter: &tonic_health::server::HealthReporter,
    names: &[String],
    status: ServingStatus,
) {
    reporter.set_service_status("", status).await;
    for name in names {
        reporter.set_service_status(name, status).await;
    }
}

/// Serves `routes` plus health and reflection on the gRPC listener and the admin endpoints on
/// the admin listener until `shutdown` resolves and the drain completes.
pub async fn serve<F>(config: ServeConfig, routes: Routes, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let ServeConfig {
        service,
        grpc_listener,
        admin_listener,
        verifier,
        policy,
        health_names,
        readiness,
        drain_deadline,
        revocations,
    } = config;
    let (revocations, _refresher) = start_revocations(revocations).await;
    let grpc_addr = grpc_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let draining = Arc::new(AtomicBool::new(false));
    let shutdown = shutdown.boxed().shared();

    let (health_reporter, routes) = with_health_and_reflection(routes, &health_names).await;

    let layers = tower::ServiceBuilder::new()
        // Outermost: every request gets a span with its method and request id, so everything
        // below (including auth failures) logs inside it.
        .layer(
            tower_http::trace::TraceLayer::new_for_grpc().make_span_with(
                |req: &http::Request<tonic::body::Body>| crate::telemetry::rpc_span(req),
            ),
        )
        // Counts and times every RPC, including the ones auth refuses.
        .layer(RpcMetricsLayer { service })
        // Verifies the token and inserts the typed `Caller`; refused requests never reach a
        // handler.
        .layer(AuthLayer::new(verifier, policy).with_revocations(revocations));

    // When shutdown begins: report NOT_SERVING first, so load balancers stop sending new work
    // before the listener closes.
    let grpc_shutdown = {
        let shutdown = shutdown.clone();
        let draining = draining.clone();
        let reporter = health_reporter.clone();
        async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            set_health(&reporter, &health_names, ServingStatus::NotServing).await;
            tracing::info!(service, "draining in-flight RPCs and streams");
        }
    };
    let grpc = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(layers)
        .add_routes(routes)
        // `tcp_nodelay` above applies only to listeners tonic binds itself; accepted sockets of
        // our own listener need it here, or multi-segment responses wait for delayed ACKs.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            grpc_shutdown,
        );

    let admin_stop = Arc::new(tokio::sync::Notify::new());
    let admin = {
        let app = admin_router(service, readiness, draining.clone());
        let stop = admin_stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, app)
                .with_graceful_shutdown(async move { stop.notified().await })
                .await
        })
    };

    tracing::info!(service, %grpc_addr, %admin_addr, "serving");
    let result = until_drained(grpc, shutdown, drain_deadline, service).await;
    admin_stop.notify_one();
    match admin.await {
        Ok(r) => r?,
        Err(e) => tracing::error!(service, error = %e, "admin server task failed"),
    }
    result?;
    tracing::info!(service, "stopped");
    Ok(())
}

/// Runs the gRPC server until it stops by itself, or until `shutdown` and then at most
/// `drain_deadline` more while in-flight RPCs and streams finish (those still open at the deadline
/// are cut when the process exits).
async fn until_drained<S, E>(
    grpc: S,
    shutdown: impl Future<Output = ()>,
    drain_deadline: Duration,
    service: &'static str,
) -> Result<(), E>
where
    S: Future<Output = Result<(), E>>,
{
    tokio::pin!(grpc);
    tokio::select! {
        r = &mut grpc => r,
        () = shutdown => {
            let started = Instant::now();
            match tokio::time::timeout(drain_deadline, &mut grpc).await {
                Ok(r) => {
                    tracing::info!(service, elapsed_ms = started.elapsed().as_millis() as u64, "drained");
                    r
                }
                Err(_) => {
                    tracing::warn!(service, deadline_s = drain_deadline.as_secs(), "drain deadline passed; closing remaining RPCs and streams");
                    Ok(())
                }
            }
        }
    }
}

/// The admin HTTP endpoints: `/metrics`, `/healthz`, `/readyz` (503 while `draining` or when
/// `readiness` fails). Also used by the gateway, which is not a gRPC server.
pub fn admin_router(
    service: &'static str,
    readiness: ReadinessCheck,
    draining: Arc<AtomicBool>,
) -> axum::Router {
    use axum::http::StatusCode;
    axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                // Read when scraped: the tasks alive in this process's runtime (a task leak shows
                // as growth under a steady load; the soak benchmark checks it).
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                metrics::gauge!("process_tokio_alive_tasks").set(tasks as f64);
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    crate::telemetry::prometheus().render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                let draining = draining.clone();
                async move {
                    if draining.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned());
                    }
                    match tokio::time::timeout(Duration::from_secs(2), readiness()).await {
                        Ok(Ok(())) => (StatusCode::OK, "ready\n".to_owned()),
                        Ok(Err(reason)) => {
                            tracing::warn!(service, %reason, "not ready");
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {reason}\n"),
                            )
                        }
                        Err(_) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "not ready: readiness check timed out\n".to_owned(),
                        ),
                    }
                }
            }),
        )
}

/// Records `mesh_rpc_requests_total` and `mesh_rpc_duration_seconds` per service, method and
/// gRPC code (from the response headers: errors are sent trailers-only, so a missing
/// `grpc-status` header means the handler answered and the code is OK or sent later).
#[derive(Clone, Copy)]
struct RpcMetricsLayer {
    service: &'static str,
}

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone)]
struct RpcMetrics<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let service = self.service;
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let code = match &res {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            metrics::counter!("mesh_rpc_requests_total", "service" => service, "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("mesh_rpc_duration_seconds", "service" => service, "method" => method)
                .record(started.elapsed().as_secs_f64());
            res
        })
    }
}

/// Settings every gRPC service reads: its two ports, its database pool, its identity, and the
/// drain deadline.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address.
    pub admin_addr: SocketAddr,
    /// Database pool settings (the URL carries the service's own login role).
    pub db: crate::db::DbConfig,
    /// Signing key and trust bundle files.
    pub identity: crate::identity::IdentityFiles,
    /// Drain deadline on shutdown.
    pub drain_deadline: Duration,
}

impl ServiceSettings {
    /// Reads the shared settings, with this service's port settings.
    pub fn from_env(
        env: &mut crate::settings::Env,
        service: &'static str,
        port: &'static crate::settings::Setting,
        admin_port: &'static crate::settings::Setting,
    ) -> Option<Self> {
        use crate::settings::catalog;
        use secrecy::ExposeSecret;
        let grpc_addr = env.listen_addr(port);
        let admin_addr = env.listen_addr(admin_port);
        let url = env.secret(&catalog::DATABASE_URL);
        let pool = env.get::<usize>(&catalog::DATABASE_POOL_SIZE);
        if pool == Some(0) {
            env.problem(&catalog::DATABASE_POOL_SIZE, "must be at least 1");
        }
        let statement_timeout = env.millis(&catalog::DATABASE_STATEMENT_TIMEOUT_MS);
        let identity = crate::identity::IdentityFiles::from_env(env);
        let drain_deadline = env.seconds(&catalog::SHUTDOWN_GRACE_SECONDS);
        let mut db = crate::db::DbConfig::new(url?.expose_secret());
        db.max_connections = pool?.max(1);
        db.statement_timeout = statement_timeout;
        db.application_name = Some(service.to_owned());
        Some(Self {
            grpc_addr: grpc_addr?,
            admin_addr: admin_addr?,
            db,
            identity: identity?,
            drain_deadline: drain_deadline?,
        })
    }
}

/// A readiness check that pings the database.
pub fn db_readiness(db: crate::db::Db) -> ReadinessCheck {
    Arc::new(move || {
        let db = db.clone();
        async move {
            db.ping()
                .await
                .map_err(|_| "database unreachable".to_owned())
        }
        .boxed()
    })
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The signing key or trust bundle could not be loaded.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The database is unreachable or the role failed the self-check.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// A port could not be bound.
    #[error(transparent)]
    Bind(#[from] std::io::Error),
}

/// Where a gRPC service serves: its two listeners, bound by the caller (the binary from its
/// settings, tests on port 0), and how long it drains in-flight work once told to stop.
pub struct Listeners {
    /// gRPC listener.
    pub grpc: TcpListener,
    /// Admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: TcpListener,
    /// How long in-flight RPCs and streams may run on after shutdown begins.
    pub drain_deadline: Duration,
}

impl Listeners {
    /// The listeners and the drain deadline, together.
    pub fn new(grpc: TcpListener, admin: TcpListener, drain_deadline: Duration) -> Self {
        Self {
            grpc,
            admin,
            drain_deadline,
        }
    }
}

/// What every database-backed service holds: its pool and its identity.
#[derive(Clone)]
pub struct Core {
    /// Pool logged in as the service's role, which passed [`crate::db::Db::self_check`].
    pub db: crate::db::Db,
    /// Signing key and trust bundle.
    pub identity: crate::identity::Identity,
}

/// What a service binary prepares before serving: its pool and identity, and its bound
/// listeners.
pub struct Prepared {
    /// The self-checked pool and the identity.
    pub core: Core,
    /// Both ports, bound, with the settings' drain deadline.
    pub listeners: Listeners,
}

/// Loads the identity, connects and self-checks the pool, and binds both ports.
pub async fn prepare(
    service: &'static str,
    settings: &ServiceSettings,
) -> Result<Prepared, StartError> {
    let identity = crate::identity::Identity::load(service, &settings.identity)?;
    let db = crate::db::Db::connect(&settings.db).await?;
    db.self_check().await?;
    let grpc = bind(settings.grpc_addr, &format!("{service} gRPC")).await?;
    let admin = bind(settings.admin_addr, &format!("{service} admin")).await?;
    Ok(Prepared {
        core: Core { db, identity },
        listeners: Listeners::new(grpc, admin, settings.drain_deadline),
    })
}

impl ServeConfig {
    /// The usual configuration of a database-backed gRPC service on its listeners: tokens
    /// addressed to `service` are checked against `policy`, health is reported for every gRPC
    /// service the policy names, and `/readyz` follows the pool.
    pub fn for_service(
        service: &'static str,
        policy: Policy,
        listeners: Listeners,
        core: &Core,
    ) -> Self {
        let Listeners {
            grpc: grpc_listener,
            admin: admin_listener,
            drain_deadline,
        } = listeners;
        Self {
            service,
            grpc_listener,
            admin_listener,
            verifier: core.identity.verifier(service),
            health_names: policy.service_names(),
            policy: Arc::new(policy),
            readiness: db_readiness(core.db.clone()),
            drain_deadline,
            revocations: Some(RevocationFeed {
                revocations: crate::auth::Revocations::new(),
                db: core.db.clone(),
                interval: crate::auth::revocation::REFRESH_INTERVAL,
            }),
        }
    }
}

/// Reads the revocations once before serving (so a restarted service never accepts a revoked
/// token while it starts) and keeps them fresh in a task that ends with the server.
async fn start_revocations(
    feed: Option<RevocationFeed>,
) -> (crate::auth::Revocations, Option<AbortOnDrop>) {
    let Some(feed) = feed else {
        return (crate::auth::Revocations::new(), None);
    };
    if let Err(e) = feed.revocations.refresh(&feed.db).await {
        tracing::warn!(error = %e, "cannot read token revocations at start; retrying in the background");
    }
    let task = tokio::spawn(crate::auth::revocation::refresh_forever(
        feed.revocations.clone(),
        feed.db,
        feed.interval,
    ));
    (feed.revocations, Some(AbortOnDrop(task)))
}

/// Aborts its task when dropped (when [`serve`] returns).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
