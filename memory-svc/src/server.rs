//! How memory-svc starts and serves: the auth [`policy`] of each RPC (enforced by the mesh auth
//! layer), [`run`] (pool logged in as `memory_svc` and self-checked, the identity, the bound
//! ports), [`serve_with`] (the mesh server and the background purge of expired memories, on
//! listeners the caller bound: port 0 in tests) and the [`Options`] the settings choose.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mesh::api::memory::memory_admin_service_server::MemoryAdminServiceServer;
use mesh::api::memory::memory_service_server::MemoryServiceServer;
use mesh::api::service_names as names;
use mesh::auth::{Policy, Rule};
use mesh::identity::names::{MEMORY_SVC, OPERATOR, TENANT_SVC};
use mesh::identity::scope;
use mesh::server::{Listeners, ServeConfig};
use secrecy::SecretSlice;

use crate::settings::Settings;
use crate::{service, summarizer};

/// This service's name: the audience of tokens addressed to it and the issuer of its tokens.
pub const NAME: &str = MEMORY_SVC;

/// Which token kind, scope and issuer each RPC needs. Admin methods are the operator's;
/// `EraseTenant` also serves tenant-svc fanning out a tenant erasure, with a scope that opens
/// nothing else.
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
                ("ListCallers", Rule::tenant(scope::MEMORY_READ)),
                ("GetCaller", Rule::tenant(scope::MEMORY_READ)),
                ("GetCallSummary", Rule::tenant(scope::MEMORY_READ)),
                ("ExportCaller", Rule::tenant(scope::MEMORY_EXPORT)),
                ("EraseCaller", Rule::tenant(scope::MEMORY_ERASE)),
                ("ListAuditEntries", Rule::tenant(scope::MEMORY_AUDIT)),
            ],
        )
        .service_methods(
            names::MEMORY_ADMIN,
            &[
                (
                    "PurgeExpiredMemories",
                    Rule::service(scope::MEMORY_ADMIN).issued_by(&[OPERATOR]),
                ),
                (
                    "EraseTenant",
                    Rule::service(scope::MEMORY_ADMIN)
                        .issued_by(&[OPERATOR])
                        .or(Rule::service(scope::MEMORY_ERASE_TENANT).issued_by(&[TENANT_SVC])),
                ),
            ],
        )
}

/// What the handlers need: the pool (logged in as `memory_svc`) and the identity, nothing more.
pub type Deps = mesh::server::Core;

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

/// Serves on already-bound listeners (tests bind port 0) with the default [`Options`].
pub async fn serve(
    deps: Deps,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(deps, Options::default(), listeners, shutdown).await
}

/// Serves with explicit options; runs the background purge (when enabled) until the server
/// stops.
pub async fn serve_with(
    deps: Deps,
    options: Options,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let purge_interval = options.purge_interval;
    let svc = service::MemorySvc::with_options(deps.clone(), options);
    let purge = purge_interval.map(|every| tokio::spawn(purge_loop(svc.clone(), every)));
    let routes = tonic::service::Routes::new(MemoryServiceServer::new(svc.clone()))
        .add_service(MemoryAdminServiceServer::new(svc));
    let config = ServeConfig::for_service(NAME, policy(), listeners, &deps);
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

/// Connects to the database (self-checked), loads the identity, binds the ports and serves
/// until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let p = mesh::server::prepare(NAME, &settings.common).await?;
    let deps = p.core;
    let options = Options::from_settings(&settings)?;
    serve_with(deps, options, p.listeners, shutdown).await
}
