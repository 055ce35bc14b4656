//! What the handlers, the call drivers and the workers share, built once per server: the pool,
//! the peer clients, the AI backend, Twilio, the outbound limits, the webhook machinery, the
//! outbox wake-up and the tracker that lets shutdown wait for calls being finalised. It lives
//! apart from the server wiring ([`crate::server`]) so that modules depend on this and not on
//! the crate root.

use std::sync::Arc;
use std::time::Duration;

use mesh::db::Db;
use mesh::server::Core;

use crate::backend::{self, AiBackend};
use crate::settings::{BackendChoice, CallConfig};
use crate::{outbound, peers, prompts, recording, twilio, webhooks};

/// What the handlers need.
#[derive(Clone)]
pub struct Deps {
    /// The pool (logged in as the service's own role) and the identity.
    pub core: Core,
    /// Backend, peers, Twilio, outbox.
    pub calls: CallConfig,
}

/// What a running call needs, built once per server from [`Deps`].
#[derive(Clone)]
pub struct Runtime {
    /// Pool.
    pub db: Db,
    /// This service's stream tickets and grants (signed with its own key).
    pub streams: mesh::auth::StreamCredentials,
    /// Clients of tenant-svc and memory-svc.
    pub peers: peers::Peers,
    /// The AI backend.
    pub backend: Arc<dyn AiBackend>,
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
    /// The caps on message-taking calls (per tenant, and in all).
    pub messages: crate::call::message::MessageCaps,
    /// Every call driver runs in this tracker, so shutdown can wait for the calls that ended
    /// during the drain to be finalised (row, usage, outbox) before the process exits.
    pub calls: tokio_util::task::TaskTracker,
    /// Cancelled once the gRPC drain is over (every stream ended, or the deadline passed): calls
    /// still relaying stop there and are finalised.
    pub cut_calls: tokio_util::sync::CancellationToken,
    /// Rendered spoken prompts (announcement, consent question), cached.
    pub prompts: prompts::Prompts,
    /// Call recordings: the call drivers start them here (`rt.recorder.start`).
    pub recorder: recording::Recorder,
    /// The same handle, for reading and deleting recordings (`rt.recordings.wav`).
    pub recordings: recording::Recordings,
}

impl Runtime {
    /// Builds the clients and the backend.
    pub fn new(deps: &Deps) -> anyhow::Result<Self> {
        let c = &deps.calls;
        let backend: Arc<dyn AiBackend> = match &c.backend {
            BackendChoice::Local { espeak } => Arc::new(backend::local::LocalBackend {
                use_espeak: *espeak,
            }),
            BackendChoice::OpenAi(config) => Arc::new(backend::openai::OpenAiBackend {
                config: config.clone(),
            }),
        };
        let recordings = recording::Recordings::new(deps.core.db.clone(), &c.recording)?;
        Ok(Self {
            db: deps.core.db.clone(),
            streams: deps.core.identity.stream_credentials(),
            peers: peers::Peers::new(
                &c.tenant_svc_url,
                &c.memory_svc_url,
                deps.core.identity.clone(),
                c.peer_timeout,
            )?,
            backend,
            twilio: c.twilio.clone(),
            outbound: outbound::Outbound::new(c.limits.clone(), &c.public_base_url),
            outbox_wake: Arc::default(),
            webhooks: webhooks::Webhooks::new(c.webhooks.clone())?,
            session_max: c.session_max,
            messages: crate::call::message::MessageCaps::new(c.message_calls.0, c.message_calls.1),
            calls: tokio_util::task::TaskTracker::new(),
            cut_calls: tokio_util::sync::CancellationToken::new(),
            prompts: prompts::Prompts::with_store(recordings.vault.store.clone()),
            recorder: recordings.clone(),
            recordings,
        })
    }
}
