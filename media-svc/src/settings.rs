//! media-svc's settings: the typed form of its environment variables (names, defaults and
//! documentation live in `mesh::settings::catalog`). [`Settings::from_env`] reads them all and
//! reports every problem at once; [`CallConfig::local`] is the offline configuration tests and
//! `neurosphere up` start from. The parts of [`CallConfig`] belong to the modules that use them
//! (Twilio, outbound limits, webhooks, outbox); this module only assembles them.

use std::time::Duration;

use mesh::domain::AccountSid;
use mesh::server::ServiceSettings;
use mesh::settings::{Env, SettingsError, catalog};
use secrecy::{ExposeSecret as _, SecretSlice};

use crate::backend::openai::{ApiShape, OpenAiConfig};
use crate::numbers::NumbersConfig;
use crate::outbound::Limits;
use crate::outbox::OutboxConfig;
use crate::recording::{PlatformKeys, RecordingConfig, S3Config, StoreConfig};
use crate::retention::RetentionConfig;
use crate::server::NAME;
use crate::twilio::TwilioConfig;
use crate::webhooks::WebhookConfig;

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
    OpenAi(OpenAiConfig),
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
    pub twilio: TwilioConfig,
    /// The gateway's public base URL (Twilio's `Url` and `StatusCallback` for outbound calls).
    pub public_base_url: String,
    /// Concurrent and outbound call limits.
    pub limits: Limits,
    /// Post-call webhook delivery.
    pub webhooks: WebhookConfig,
    /// Outbox retry pacing.
    pub outbox: OutboxConfig,
    /// Pacing of the retention task (recordings and transcripts past each tenant's retention).
    pub retention: RetentionConfig,
    /// Age at which a backend session is replaced by a new one carrying the conversation so far
    /// (OpenAI Realtime sessions end at 30 minutes).
    pub session_max: Duration,
    /// Call recordings: keys, object store, spool.
    pub recording: RecordingConfig,
    /// Message-taking calls at once: per tenant, and in all (every replica together, counted in
    /// PostgreSQL).
    pub message_calls: (u32, u32),
    /// Numbers at Twilio: the API key, the Pricing API, the per-tenant limit, reconcile.
    pub numbers: NumbersConfig,
}

impl CallConfig {
    /// The offline configuration used by tests and `neurosphere up` without an OpenAI key.
    pub fn local(tenant_svc_url: impl Into<String>, memory_svc_url: impl Into<String>) -> Self {
        Self {
            backend: BackendChoice::Local { espeak: true },
            tenant_svc_url: tenant_svc_url.into(),
            memory_svc_url: memory_svc_url.into(),
            peer_timeout: Duration::from_millis(1500),
            twilio: TwilioConfig {
                base_url: "https://api.twilio.com".into(),
                auth_token: None,
                account_sid: None,
            },
            public_base_url: "http://127.0.0.1:8080".into(),
            limits: Limits::default(),
            webhooks: WebhookConfig::default(),
            outbox: OutboxConfig::default(),
            retention: RetentionConfig::default(),
            session_max: SESSION_MAX,
            recording: RecordingConfig::temporary(),
            message_calls: (10, 200),
            numbers: NumbersConfig::default(),
        }
    }

    /// Reads every part; `None` when any is missing or invalid (the problem is in `env`).
    fn from_env(env: &mut Env) -> Option<Self> {
        let tenant = env.get::<String>(&catalog::TENANT_SVC_URL);
        let memory = env.get::<String>(&catalog::MEMORY_SVC_URL);
        let backend = backend_from_env(env);
        let peer_timeout = env.millis(&catalog::MEDIA_PEER_TIMEOUT_MS);
        let max_backoff = env.seconds(&catalog::MEDIA_OUTBOX_MAX_BACKOFF_SECONDS);
        let twilio = twilio_from_env(env);
        let public_base_url: Option<String> = env.get(&catalog::PUBLIC_BASE_URL);
        let limits = limits_from_env(env);
        let webhooks = webhooks_from_env(env);
        let recording = recording_from_env(env);
        let message_per_tenant: Option<u32> = env.get(&catalog::MEDIA_MESSAGE_CALLS_PER_TENANT);
        let message_max: Option<u32> = env.get(&catalog::MEDIA_MESSAGE_CALLS_MAX);
        let numbers = numbers_from_env(env);
        Some(Self {
            backend: backend?,
            tenant_svc_url: tenant?,
            memory_svc_url: memory?,
            peer_timeout: peer_timeout?,
            twilio: twilio?,
            public_base_url: public_base_url?.trim_end_matches('/').to_owned(),
            limits: limits?,
            webhooks: webhooks?,
            outbox: OutboxConfig {
                max_backoff: max_backoff?,
                ..OutboxConfig::default()
            },
            retention: RetentionConfig::default(),
            session_max: SESSION_MAX,
            recording: recording?,
            message_calls: (message_per_tenant?, message_max?),
            numbers: numbers?,
        })
    }
}

/// The recording keys, store (local folder or S3 with its settings) and spool.
fn recording_from_env(env: &mut Env) -> Option<RecordingConfig> {
    let keys = env
        .optional_secret(&catalog::MEDIA_RECORDING_KEYS)
        .and_then(|k| match PlatformKeys::parse(k.expose_secret()) {
            Ok(k) => Some(Some(k)),
            Err(e) => {
                env.problem(&catalog::MEDIA_RECORDING_KEYS, e);
                None
            }
        })
        .unwrap_or(None);
    let store: Option<String> = env.get(&catalog::MEDIA_RECORDING_STORE);
    let spool_dir: Option<String> = env.get(&catalog::MEDIA_RECORDING_SPOOL_DIR);
    let spool_max: Option<u64> = env.get(&catalog::MEDIA_RECORDING_SPOOL_MAX_BYTES);
    let endpoint: Option<String> = env.optional(&catalog::MEDIA_RECORDING_S3_ENDPOINT);
    let region: Option<String> = env.get(&catalog::MEDIA_RECORDING_S3_REGION);
    let key_id: Option<String> = env.optional(&catalog::MEDIA_RECORDING_S3_ACCESS_KEY_ID);
    let secret = env.optional_secret(&catalog::MEDIA_RECORDING_S3_SECRET_ACCESS_KEY);
    if let Some(e) = &endpoint
        && !e.starts_with("https://")
        && !crate::recording::store::is_loopback_http(e)
    {
        env.problem(
            &catalog::MEDIA_RECORDING_S3_ENDPOINT,
            "must be `https://` (plain `http://` only on a loopback address)",
        );
    }
    let store = match StoreConfig::parse(&store?) {
        Ok(StoreConfig::S3(s3)) => StoreConfig::S3(S3Config {
            endpoint,
            region: region?,
            access_key_id: key_id,
            secret_access_key: secret,
            ..s3
        }),
        Ok(local) => local,
        Err(e) => {
            env.problem(&catalog::MEDIA_RECORDING_STORE, e);
            return None;
        }
    };
    Some(RecordingConfig {
        keys,
        store,
        spool_dir: spool_dir?.into(),
        spool_max_bytes: spool_max?,
        upload_max_backoff: Duration::from_secs(60),
    })
}

/// `AI_BACKEND` and, for the realtime backend, its URL, model, key, shape and stall timeout.
fn backend_from_env(env: &mut Env) -> Option<BackendChoice> {
    let key = env.optional_secret(&catalog::OPENAI_API_KEY);
    let url = env.get::<String>(&catalog::OPENAI_REALTIME_URL);
    let model = env.get::<String>(&catalog::OPENAI_REALTIME_MODEL);
    let shape = env.get::<ApiShape>(&catalog::OPENAI_REALTIME_API_SHAPE);
    let stall = env.millis(&catalog::OPENAI_REALTIME_STALL_TIMEOUT_MS);
    let choice = env.get::<String>(&catalog::AI_BACKEND);
    match choice.as_deref() {
        Some("local") => Some(BackendChoice::Local { espeak: true }),
        Some("auto") if key.is_none() => Some(BackendChoice::Local { espeak: true }),
        Some("auto" | "openai-realtime") => match key {
            Some(api_key) => Some(BackendChoice::OpenAi(OpenAiConfig {
                url: url?,
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
    }
}

/// Twilio's REST base URL, auth token and the platform account.
fn twilio_from_env(env: &mut Env) -> Option<TwilioConfig> {
    let base_url = env.get::<String>(&catalog::TWILIO_API_BASE_URL);
    let auth_token = env.optional_secret(&catalog::TWILIO_AUTH_TOKEN);
    let account: Option<String> = env.optional(&catalog::TWILIO_ACCOUNT_SID);
    let account_sid = match account.as_deref().map(AccountSid::parse) {
        Some(Ok(sid)) => Some(sid),
        Some(Err(e)) => {
            env.problem(&catalog::TWILIO_ACCOUNT_SID, e);
            None
        }
        None => None,
    };
    Some(TwilioConfig {
        base_url: base_url?,
        auth_token,
        account_sid,
    })
}

/// The numbers' API key, Pricing API, per-tenant limit and reconcile interval.
fn numbers_from_env(env: &mut Env) -> Option<NumbersConfig> {
    let pricing: Option<String> = env.get(&catalog::TWILIO_PRICING_BASE_URL);
    let key_sid: Option<String> = env.optional(&catalog::TWILIO_API_KEY_SID);
    let key_secret = env.optional_secret(&catalog::TWILIO_API_KEY_SECRET);
    if let Some(sid) = &key_sid
        && !(sid.len() == 34
            && sid.starts_with("SK")
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        env.problem(&catalog::TWILIO_API_KEY_SID, "must be `SK` + 32 hex digits");
    }
    let per_tenant: Option<u32> = env.get(&catalog::MEDIA_NUMBERS_PER_TENANT);
    let every = env.seconds(&catalog::MEDIA_NUMBERS_RECONCILE_SECONDS);
    Some(NumbersConfig {
        pricing_base_url: pricing?.trim_end_matches('/').to_owned(),
        api_key_sid: key_sid,
        api_key_secret: key_secret,
        per_tenant: per_tenant?,
        reconcile_every: every?,
        ..NumbersConfig::default()
    })
}

/// The concurrent-call limits by tier, the hourly outbound limit and the per-address allowance.
fn limits_from_env(env: &mut Env) -> Option<Limits> {
    let tiers: Option<String> = env.get(&catalog::MEDIA_CONCURRENT_CALLS_BY_TIER);
    let tiers = tiers.and_then(|t| match Limits::parse_tiers(&t) {
        Ok(t) => Some(t),
        Err(e) => {
            env.problem(&catalog::MEDIA_CONCURRENT_CALLS_BY_TIER, e);
            None
        }
    });
    let per_hour: Option<u32> = env.get(&catalog::MEDIA_OUTBOUND_CALLS_PER_HOUR);
    let per_address: Option<u32> = env.get(&catalog::MEDIA_OUTBOUND_CALLS_PER_ADDRESS);
    if per_address == Some(0) {
        env.problem(
            &catalog::MEDIA_OUTBOUND_CALLS_PER_ADDRESS,
            "must be at least 1 (the public endpoint needs a per-address allowance)",
        );
    }
    let window = env.seconds(&catalog::MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS);
    if window.is_some_and(|w| w.is_zero()) {
        env.problem(
            &catalog::MEDIA_OUTBOUND_ADDRESS_WINDOW_SECONDS,
            "must be at least 1 second",
        );
    }
    let max_call = env.seconds(&catalog::MEDIA_MAX_CALL_SECONDS);
    if max_call.is_some_and(|d| d.is_zero()) {
        env.problem(
            &catalog::MEDIA_MAX_CALL_SECONDS,
            "must be at least 1 second",
        );
    }
    Some(Limits {
        max_call: max_call.filter(|d| !d.is_zero())?,
        concurrent_by_tier: tiers?,
        outbound_per_hour: per_hour?,
        per_address: (
            per_address.filter(|n| *n > 0)?,
            window.filter(|w| !w.is_zero())?,
        ),
    })
}

/// Webhook pacing, the insecure-destination switch and the caller-hash key (32 bytes or more).
fn webhooks_from_env(env: &mut Env) -> Option<WebhookConfig> {
    let hash_key = env.optional_secret(&catalog::MEDIA_CALLER_HASH_KEY);
    if let Some(k) = &hash_key
        && k.expose_secret().len() < 32
    {
        env.problem(&catalog::MEDIA_CALLER_HASH_KEY, "must be at least 32 bytes");
    }
    let retry_for = env.seconds(&catalog::MEDIA_WEBHOOK_RETRY_FOR_SECONDS);
    let base_backoff = env.millis(&catalog::MEDIA_WEBHOOK_BASE_BACKOFF_MS);
    let max_backoff = env.seconds(&catalog::MEDIA_WEBHOOK_MAX_BACKOFF_SECONDS);
    let timeout = env.millis(&catalog::MEDIA_WEBHOOK_TIMEOUT_MS);
    let allow_insecure: Option<bool> = env.get(&catalog::WEBHOOK_ALLOW_INSECURE);
    Some(WebhookConfig {
        retry_for: retry_for?,
        base_backoff: base_backoff?,
        max_backoff: max_backoff?,
        timeout: timeout?,
        allow_insecure: allow_insecure?,
        caller_hash_key: hash_key.map(|k| SecretSlice::from(k.expose_secret().as_bytes().to_vec())),
    })
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
