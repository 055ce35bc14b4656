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
//! gRPC status once. [`run`] wires settings, the pool (logged in as `memory_svc`, self-checked)
//! and the mesh server; [`serve_with`] also starts the background purge of expired memories.
#![forbid(unsafe_code)]

pub mod context;
pub mod error;
pub mod model;
pub mod service;
pub mod store;
pub mod summarizer;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice};

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
    /// The OpenAI summarizer, when `OPENAI_API_KEY` is set; the heuristic one otherwise.
    pub openai: Option<summarizer::OpenAiConfig>,
    /// How often the background task purges expired memories (0: never).
    pub purge_interval: Duration,
    /// Key of the audit log's caller hash (`MEMORY_AUDIT_HASH_KEY`); the database's when unset.
    pub audit_hash_key: Option<SecretSlice<u8>>,
}

/// Shortest accepted `MEMORY_AUDIT_HASH_KEY`, in bytes.
pub const MIN_AUDIT_KEY_LEN: usize = 32;

impl Settings {
    /// Reads the environment, reporting every problem together.
    pub fn from_env(mut env: Env) -> Result<Self, SettingsError> {
        let common = ServiceSettings::from_env(
            &mut env,
            NAME,
            &catalog::MEMORY_SVC_PORT,
            &catalog::MEMORY_SVC_ADMIN_PORT,
        );
        let api_key = env.optional_secret(&catalog::OPENAI_API_KEY);
        let base_url: Option<String> = env.get(&catalog::OPENAI_API_BASE_URL);
        let model: Option<String> = env.get(&catalog::OPENAI_SUMMARY_MODEL);
        if let Some(url) = &base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            env.problem(
                &catalog::OPENAI_API_BASE_URL,
                "must start with http:// or https://",
            );
        }
        let purge_interval = env.seconds(&catalog::MEMORY_PURGE_INTERVAL_SECONDS);
        let audit_hash_key = env.optional_secret(&catalog::MEMORY_AUDIT_HASH_KEY);
        if let Some(k) = &audit_hash_key
            && k.expose_secret().len() < MIN_AUDIT_KEY_LEN
        {
            env.problem(
                &catalog::MEMORY_AUDIT_HASH_KEY,
                format!("must be at least {MIN_AUDIT_KEY_LEN} bytes"),
            );
        }
        env.finish()?;
        let openai = api_key.map(|api_key| summarizer::OpenAiConfig {
            base_url: base_url.clone().unwrap_or_default(),
            model: model.clone().unwrap_or_default(),
            api_key,
            timeout: Duration::from_secs(30),
        });
        Ok(Self {
            common: common.expect("present when finish() succeeded"),
            openai,
            purge_interval: purge_interval.expect("present when finish() succeeded"),
            audit_hash_key: audit_hash_key
                .map(|k| SecretSlice::from(k.expose_secret().as_bytes().to_vec())),
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

/// Behaviour beyond the dependencies (defaults: heuristic summarizer, no background purge, audit
/// key from the database).
#[derive(Clone)]
pub struct Options {
    /// Post-call analysis.
    pub summarizer: Arc<dyn summarizer::Summarizer>,
    /// Interval of the background purge of expired memories; `None` disables it.
    pub purge_interval: Option<Duration>,
    /// Key of the audit log's caller hash; `None` uses the database's (migration V3).
    pub audit_hash_key: Option<SecretSlice<u8>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            summarizer: Arc::new(summarizer::HeuristicSummarizer),
            purge_interval: None,
            audit_hash_key: None,
        }
    }
}

impl Options {
    /// The options the settings ask for.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let summarizer: Arc<dyn summarizer::Summarizer> = match &settings.openai {
            Some(config) => {
                if config.base_url.starts_with("https://") {
                    // This workspace builds reqwest without a TLS backend (see the README).
                    tracing::warn!(
                        base_url = %config.base_url,
                        "OPENAI_API_BASE_URL is https but this build has no TLS client; the \
                         OpenAI summarizer will fail and every call will use the visible \
                         heuristic fallback"
                    );
                }
                Arc::new(summarizer::OpenAiSummarizer::new(config.clone())?)
            }
            None => Arc::new(summarizer::HeuristicSummarizer),
        };
        tracing::info!(summarizer = %summarizer.name(), "post-call summarizer");
        Ok(Self {
            summarizer,
            purge_interval: (!settings.purge_interval.is_zero()).then_some(settings.purge_interval),
            audit_hash_key: settings.audit_hash_key.clone(),
        })
    }
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
    let options = Options::from_settings(&settings)?;
    serve_with(
        deps,
        options,
        p.grpc,
        p.admin,
        settings.common.drain_deadline,
        shutdown,
    )
    .await
}

/// Serves on already-bound listeners (tests bind port 0) with the default [`Options`].
pub async fn serve(
    deps: Deps,
    grpc: TcpListener,
    admin: TcpListener,
    drain_deadline: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(
        deps,
        Options::default(),
        grpc,
        admin,
        drain_deadline,
        shutdown,
    )
    .await
}

/// Serves with explicit options; runs the background purge (when enabled) until the server
/// stops.
pub async fn serve_with(
    deps: Deps,
    options: Options,
    grpc: TcpListener,
    admin: TcpListener,
    drain_deadline: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let purge_interval = options.purge_interval;
    let svc = service::MemorySvc::with_options(deps.clone(), options);
    let purge = purge_interval.map(|every| tokio::spawn(purge_loop(svc.clone(), every)));
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
    let result = mesh::server::serve(config, routes, shutdown).await;
    if let Some(task) = purge {
        task.abort();
    }
    result?;
    Ok(())
}

/// Purges expired memories every `every`, first right away. Failures are logged and retried at
/// the next tick; reads never return expired rows anyway, the purge only reclaims space.
async fn purge_loop(svc: service::MemorySvc, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match svc.purge_expired().await {
            Ok(0) => tracing::debug!("no expired memories to purge"),
            Ok(n) => tracing::info!(deleted = n, "purged expired memories"),
            Err(e) => tracing::warn!(error = %e, "purging expired memories failed"),
        }
    }
}
