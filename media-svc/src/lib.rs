//! media-svc: live calls bridged to the realtime AI backend, call records, transcripts, usage,
//! outbound calls and post-call webhooks.
//!
//! Parts: [`policy`] declares the token kind and scope of each RPC (enforced by the mesh auth
//! layer); [`service::MediaSvc`] implements `CallService` and `MediaAdminService` over
//! [`store`] (SQL, one tenant per transaction); [`call`] drives one live call: it fetches the
//! profile and caller context through [`peers`], builds the [`instructions`], bridges the
//! caller's audio to an [`backend::AiBackend`] (offline `local`, or `openai-realtime`), handles
//! barge-in, writes transcript turns as they happen, transfers through [`twilio`], and at the end
//! finalises the call and queues `RecordCall` in the durable outbox that [`outbox`] delivers to
//! memory-svc. [`run`] wires settings, the pool (logged in as `media_svc`, self-checked), the
//! outbox worker and the mesh server.
#![forbid(unsafe_code)]

pub mod audio;
pub mod backend;
pub mod call;
pub mod error;
pub mod instructions;
pub mod outbound;
pub mod outbox;
pub mod peers;
pub mod service;
pub mod store;
pub mod twilio;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mesh::api::media::call_service_server::CallServiceServer;
use mesh::api::media::media_admin_service_server::MediaAdminServiceServer;
use mesh::api::service_names as names;
use mesh::auth::{Policy, Rule};
use mesh::db::Db;
use mesh::domain::AccountSid;
use mesh::identity::{Identity, names::MEDIA_SVC, scope};
use mesh::server::{ServeConfig, ServiceSettings};
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::{ExposeSecret as _, SecretSlice};
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
    /// Backend, peers, Twilio, outbox.
    pub calls: CallConfig,
}

/// Default [`CallConfig::session_max`]: two minutes of margin before the Realtime API's
/// 30-minute session limit.
pub const SESSION_MAX: Duration = Duration::from_secs(28 * 60);

/// Which AI backend calls use.
#[derive(Debug, Clone)]
pub enum BackendChoice {
    /// Offline backend (greeting tone or espeak-ng, replay of the caller).
    Local {
        /// Speak the greeting with `espeak-ng` when it is installed (else the tone pattern).
        espeak: bool,
    },
    /// OpenAI Realtime.
    OpenAi(backend::openai::OpenAiConfig),
}

/// How live calls run and where post-call work goes.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The AI backend.
    pub backend: BackendChoice,
    /// tenant-svc gRPC endpoint.
    pub tenant_svc_url: String,
    /// memory-svc gRPC endpoint.
    pub memory_svc_url: String,
    /// Time allowed for the profile and context lookups at call start.
    pub peer_timeout: Duration,
    /// Twilio REST (transfers, outbound calls).
    pub twilio: twilio::TwilioConfig,
    /// The gateway's public base URL (Twilio's `Url` and `StatusCallback` for outbound calls).
    pub public_base_url: String,
    /// Concurrent and outbound call limits.
    pub limits: outbound::Limits,
    /// Post-call webhook delivery.
    pub webhooks: webhooks::WebhookConfig,
    /// Outbox retry pacing.
    pub outbox: outbox::OutboxConfig,
    /// Age at which a backend session is replaced by a new one carrying the conversation so far
    /// (OpenAI Realtime sessions end at 30 minutes).
    pub session_max: Duration,
}

impl CallConfig {
    /// The offline configuration used by tests and `neurosphere up` without an OpenAI key.
    pub fn local(tenant_svc_url: impl Into<String>, memory_svc_url: impl Into<String>) -> Self {
        Self {
            backend: BackendChoice::Local { espeak: true },
            tenant_svc_url: tenant_svc_url.into(),
            memory_svc_url: memory_svc_url.into(),
            peer_timeout: Duration::from_millis(1500),
            twilio: twilio::TwilioConfig {
                base_url: "https://api.twilio.com".into(),
                auth_token: None,
                account_sid: None,
            },
            public_base_url: "http://127.0.0.1:8080".into(),
            limits: outbound::Limits::default(),
            webhooks: webhooks::WebhookConfig::default(),
            outbox: outbox::OutboxConfig::default(),
            session_max: SESSION_MAX,
        }
    }

    fn from_env(env: &mut Env) -> Option<Self> {
        let tenant = env.get::<String>(&catalog::TENANT_SVC_URL);
        let memory = env.get::<String>(&catalog::MEMORY_SVC_URL);
        let key = env.optional_secret(&catalog::OPENAI_API_KEY);
        let url = env.get::<String>(&catalog::OPENAI_REALTIME_URL);
        let model = env.get::<String>(&catalog::OPENAI_REALTIME_MODEL);
        let shape = env.get::<backend::openai::ApiShape>(&catalog::OPENAI_REALTIME_API_SHAPE);
        let stall = env.millis(&catalog::OPENAI_REALTIME_STALL_TIMEOUT_MS);
        let choice = env.get::<String>(&catalog::AI_BACKEND);
        let peer_timeout = env.millis(&catalog::MEDIA_PEER_TIMEOUT_MS);
        let max_backoff = env.seconds(&catalog::MEDIA_OUTBOX_MAX_BACKOFF_SECONDS);
        let twilio_base = env.get::<String>(&catalog::TWILIO_API_BASE_URL);
        let twilio_token = env.optional_secret(&catalog::TWILIO_AUTH_TOKEN);
        let twilio_account: Option<String> = env.optional(&catalog::TWILIO_ACCOUNT_SID);
        let account_sid = match twilio_account.as_deref().map(AccountSid::parse) {
            Some(Ok(sid)) => Some(sid),
            Some(Err(e)) => {
                env.problem(&catalog::TWILIO_ACCOUNT_SID, e);
                None
            }
            None => None,
        };
        let public_base_url: Option<String> = env.get(&catalog::PUBLIC_BASE_URL);
        let tiers: Option<String> = env.get(&catalog::MEDIA_CONCURRENT_CALLS_BY_TIER);
        let tiers = tiers.and_then(|t| match outbound::Limits::parse_tiers(&t) {
            Ok(t) => Some(t),
            Err(e) => {
                env.problem(&catalog::MEDIA_CONCURRENT_CALLS_BY_TIER, e);
                None
            }
        });
        let per_hour: Option<u32> = env.get(&catalog::MEDIA_OUTBOUND_CALLS_PER_HOUR);
        let hash_key = env.optional_secret(&catalog::MEDIA_CALLER_HASH_KEY);
        if let Some(k) = &hash_key
            && k.expose_secret().len() < 32
        {
            env.problem(&catalog::MEDIA_CALLER_HASH_KEY, "must be at least 32 bytes");
        }
        let retry_for = env.seconds(&catalog::MEDIA_WEBHOOK_RETRY_FOR_SECONDS);
        let webhook_base = env.millis(&catalog::MEDIA_WEBHOOK_BASE_BACKOFF_MS);
        let webhook_max = env.seconds(&catalog::MEDIA_WEBHOOK_MAX_BACKOFF_SECONDS);
        let webhook_timeout = env.millis(&catalog::MEDIA_WEBHOOK_TIMEOUT_MS);
        let allow_insecure: Option<bool> = env.get(&catalog::WEBHOOK_ALLOW_INSECURE);
        let backend = match choice.as_deref() {
            Some("local") => Some(BackendChoice::Local { espeak: true }),
            Some("auto") if key.is_none() => Some(BackendChoice::Local { espeak: true }),
            Some("auto" | "openai-realtime") => match key {
                Some(api_key) => Some(BackendChoice::OpenAi(backend::openai::OpenAiConfig {
                    url: url.clone()?,
                    model: model?,
                    api_key,
                    shape: shape?,
                    stall_timeout: stall?,
                })),
                None => {
                    env.problem(
                        &catalog::AI_BACKEND,
                        "`openai-realtime` needs OPENAI_API_KEY",
                    );
                    None
                }
            },
            Some(other) => {
                env.problem(
                    &catalog::AI_BACKEND,
                    format!("expected `auto`, `local` or `openai-realtime`, got {other:?}"),
                );
                None
            }
            None => None,
        };
        Some(Self {
            backend: backend?,
            tenant_svc_url: tenant?,
            memory_svc_url: memory?,
            peer_timeout: peer_timeout?,
            twilio: twilio::TwilioConfig {
                base_url: twilio_base?,
                auth_token: twilio_token,
                account_sid,
            },
            public_base_url: public_base_url?.trim_end_matches('/').to_owned(),
            limits: outbound::Limits {
                concurrent_by_tier: tiers?,
                outbound_per_hour: per_hour?,
            },
            webhooks: webhooks::WebhookConfig {
                retry_for: retry_for?,
                base_backoff: webhook_base?,
                max_backoff: webhook_max?,
                timeout: webhook_timeout?,
                allow_insecure: allow_insecure?,
                caller_hash_key: hash_key
                    .map(|k| SecretSlice::from(k.expose_secret().as_bytes().to_vec())),
            },
            outbox: outbox::OutboxConfig {
                max_backoff: max_backoff?,
                ..outbox::OutboxConfig::default()
            },
            session_max: SESSION_MAX,
        })
    }
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
        let calls = CallConfig::from_env(&mut env);
        env.finish()?;
        Ok(Self {
            common: common.expect("present when finish() succeeded"),
            calls: calls.expect("present when finish() succeeded"),
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
    /// Backend, peers, Twilio, outbox.
    pub calls: CallConfig,
}

/// What a running call needs, built once per server from [`Deps`].
#[derive(Clone)]
pub struct Runtime {
    /// Pool.
    pub db: Db,
    /// Clients of tenant-svc and memory-svc.
    pub peers: peers::Peers,
    /// The AI backend.
    pub backend: Arc<dyn backend::AiBackend>,
    /// Twilio REST.
    pub twilio: twilio::TwilioConfig,
    /// Outbound-call limits, public base URL and the per-tenant tier cache.
    pub outbound: outbound::Outbound,
    /// Wakes the outbox worker when a call ends.
    pub outbox_wake: Arc<tokio::sync::Notify>,
    /// Post-call webhook events: queueing, delivery client, worker wake-up.
    pub webhooks: webhooks::Webhooks,
    /// Backend session rollover age.
    pub session_max: Duration,
    /// Every call driver runs in this tracker, so shutdown can wait for the calls that ended
    /// during the drain to be finalised (row, usage, outbox) before the process exits.
    pub calls: tokio_util::task::TaskTracker,
    /// Cancelled once the gRPC drain is over (every stream ended, or the deadline passed): calls
    /// still relaying stop there and are finalised.
    pub cut_calls: tokio_util::sync::CancellationToken,
}

/// How long shutdown waits, after the gRPC drain, for call drivers to finalise their calls.
pub const FINALISE_GRACE: Duration = Duration::from_secs(5);

impl Runtime {
    /// Builds the clients and the backend.
    pub fn new(deps: &Deps) -> anyhow::Result<Self> {
        let c = &deps.calls;
        let backend: Arc<dyn backend::AiBackend> = match &c.backend {
            BackendChoice::Local { espeak } => Arc::new(backend::local::LocalBackend {
                use_espeak: *espeak,
            }),
            BackendChoice::OpenAi(config) => Arc::new(backend::openai::OpenAiBackend {
                config: config.clone(),
            }),
        };
        Ok(Self {
            db: deps.db.clone(),
            peers: peers::Peers::new(
                &c.tenant_svc_url,
                &c.memory_svc_url,
                deps.identity.clone(),
                c.peer_timeout,
            )?,
            backend,
            twilio: c.twilio.clone(),
            outbound: outbound::Outbound::new(c.limits.clone(), &c.public_base_url),
            outbox_wake: Arc::default(),
            webhooks: webhooks::Webhooks::new(c.webhooks.clone())?,
            session_max: c.session_max,
            calls: tokio_util::task::TaskTracker::new(),
            cut_calls: tokio_util::sync::CancellationToken::new(),
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
        calls: settings.calls,
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
    let runtime = Runtime::new(&deps)?;
    let (stop_outbox, outbox_stopped) = tokio::sync::watch::channel(false);
    let webhook_worker = tokio::spawn(webhooks::run(runtime.clone(), outbox_stopped.clone()));
    let worker = tokio::spawn(outbox::run(
        runtime.clone(),
        deps.calls.outbox.clone(),
        outbox_stopped,
    ));
    let (calls, cut_calls) = (runtime.calls.clone(), runtime.cut_calls.clone());
    let svc = service::MediaSvc::new(runtime);
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
    let served = mesh::server::serve(config, routes, shutdown).await;
    // The streams are closed now; the drivers of calls that ended in the drain are still
    // writing their final rows and outbox entries.
    cut_calls.cancel();
    calls.close();
    if !calls.is_empty() {
        tracing::info!(service = NAME, calls = calls.len(), "finalising calls");
    }
    if tokio::time::timeout(FINALISE_GRACE, calls.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            service = NAME,
            calls = calls.len(),
            "calls still finalising at exit"
        );
    }
    let _ = stop_outbox.send(true);
    let _ = worker.await;
    let _ = webhook_worker.await;
    served?;
    Ok(())
}
