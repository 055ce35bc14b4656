//! Post-call webhooks: events built when a call's record reaches memory-svc, stored durably,
//! signed by tenant-svc and delivered with retries, then dead-lettered.
//!
//! Life of an event (table `media.webhook_events`, migration V10; its SQL is
//! [`crate::store::webhooks`]):
//! 1. [`enqueue`] runs inside the outbox's success transaction (see [`crate::outbox`]): it builds
//!    the JSON body once ([`event`]: call, summary, transcript, caller number or its keyed hash)
//!    and inserts it with a fresh event id, unless the call already has an event (one per call).
//! 2. [`run`] (the delivery worker, [`worker`]) runs one task per tenant with due events, so a
//!    slow or failing endpoint only ever holds its own tenant's task.
//! 3. Each attempt ([`delivery`]): signed by tenant-svc (the secrets never leave it), POSTed
//!    without redirects in a bounded time, retried with backoff and jitter until `give_up_at`,
//!    then dead (a dead letter, listed by `ListDeadLetters`, requeued by `RedeliverDeadLetter`).
//! 4. Unless `allow_insecure`, only `https://` URLs whose addresses are public are contacted
//!    ([`destination`]).

pub mod delivery;
pub mod destination;
pub mod event;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use mesh::db::Tx;
use mesh::domain::{CallSid, CallerNumber, CustomerId};
use secrecy::{ExposeSecret as _, SecretSlice};
use tokio::sync::{Notify, OnceCell};
use uuid::Uuid;

use crate::error::MediaError;
use crate::store;
use crate::store::callback_tasks::Reason;
use crate::store::webhooks::{self as sql, EventType, NewEvent};
use destination::PublicOnly;
use event::CallerField;

pub use delivery::backoff;
pub use event::{MAX_BODY, caller_hash};
pub use worker::{MAX_TENANTS_IN_FLIGHT, PER_TENANT_IN_FLIGHT, POLL_INTERVAL, run};

/// Delivery pacing and safety.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// How long an event is retried before it is dead-lettered.
    pub retry_for: Duration,
    /// First retry delay (doubles per attempt, with jitter).
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Time a receiver has to answer one attempt.
    pub timeout: Duration,
    /// Allow `http://` and loopback/private destinations (development and tests).
    pub allow_insecure: bool,
    /// Key of the caller hash; the database's key when unset.
    pub caller_hash_key: Option<SecretSlice<u8>>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            retry_for: Duration::from_secs(24 * 3600),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
            allow_insecure: false,
            caller_hash_key: None,
        }
    }
}

/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = "NeuroSphere-Webhooks/1";
/// The webhook machinery one media-svc shares between the outbox, the handlers and the worker.
/// Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebhookConfig,
    http: reqwest::Client,
    wake: Notify,
    hash_key: OnceCell<SecretSlice<u8>>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("allow_insecure", &self.inner.config.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Builds the HTTP client: no redirects, no proxy (a proxy would connect to destinations
    /// this process never checked), the attempt timeout, and unless `allow_insecure` the
    /// [`PublicOnly`] resolver and HTTPS only.
    pub fn new(config: WebhookConfig) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(2);
        if !config.allow_insecure {
            builder = builder.https_only(true).dns_resolver(Arc::new(PublicOnly));
        }
        let hash_key = OnceCell::new();
        if let Some(k) = &config.caller_hash_key {
            let _ = hash_key.set(k.clone());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                http: builder.build()?,
                config,
                wake: Notify::new(),
                hash_key,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    /// Wakes the delivery worker (an event was queued or requeued).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Resolves when [`Webhooks::wake`] was called.
    async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// The delivery client.
    fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The keyed hash of `number` as events and audit rows carry it ([`caller_hash`]).
    pub async fn caller_hash_in(
        &self,
        tx: &Tx<'_>,
        customer: CustomerId,
        number: &CallerNumber,
    ) -> Result<String, MediaError> {
        let key = self.hash_key(tx).await?;
        Ok(caller_hash(key.expose_secret(), customer, number.as_str()))
    }

    /// The caller-hash key: configured, or the database's (V10), loaded once. Also the key of
    /// the outbound allowance's address hash (with its own domain prefix).
    pub(crate) async fn hash_key(&self, tx: &Tx<'_>) -> Result<&SecretSlice<u8>, MediaError> {
        self.inner
            .hash_key
            .get_or_try_init(|| async {
                let key = sql::caller_hash_key(tx).await?;
                Ok::<_, MediaError>(SecretSlice::from(key))
            })
            .await
    }
}

/// What the tenant's settings say about events, read before the outbox's success transaction.
#[derive(Debug, Clone, Copy)]
pub struct EventSettings {
    /// Whether events carry the raw caller number (`webhook_raw_numbers`).
    pub raw_numbers: bool,
}

/// Queues the call's event (unless it already has one) inside the caller's tenant transaction;
/// returns the new event id. One event per call: the UNIQUE `(customer_id, call_sid)` makes a
/// repeated post-call path (a `RecordCall` retried after a lost answer) insert nothing.
pub async fn enqueue(
    tx: &Tx<'_>,
    webhooks: &Webhooks,
    customer: CustomerId,
    call_sid: &CallSid,
    summary: &str,
    settings: EventSettings,
) -> Result<Option<Uuid>, MediaError> {
    if sql::has_event(tx, EventType::CallCompleted, call_sid).await? {
        return Ok(None);
    }
    let call = store::calls::get_call(tx, call_sid, false)
        .await?
        .ok_or(MediaError::NotFound)?;
    let turns = store::transcripts::turns(tx, &call.call_sid).await?;
    let caller = if settings.raw_numbers {
        CallerField::Raw(call.caller.clone())
    } else {
        CallerField::Hashed(match &call.caller {
            Some(number) => {
                let key = webhooks.hash_key(tx).await?;
                Some(caller_hash(key.expose_secret(), customer, number))
            }
            None => None,
        })
    };
    let event_id = Uuid::new_v4();
    let created_at = Utc::now();
    let body = event::build(
        event_id, created_at, customer, &call, caller, summary, turns,
    )?;
    let new = NewEvent {
        event_id,
        event_type: EventType::CallCompleted,
        call_sid: Some(call_sid),
        body: &body,
        retry_for: webhooks.config().retry_for,
        created_at,
    };
    sql::insert_event(tx, &new).await
}

/// A callback task a `message.created` event announces.
#[derive(Debug, Clone, Copy)]
pub struct MessageEvent<'a> {
    /// The task.
    pub task_id: Uuid,
    /// Why it exists.
    pub reason: Reason,
    /// When it was created.
    pub created_at: chrono::DateTime<Utc>,
    /// The call it came from.
    pub call_sid: &'a CallSid,
    /// The caller (carried as its keyed hash only).
    pub caller: Option<&'a CallerNumber>,
}

/// Queues the `message.created` event of a callback task inside the caller's tenant transaction
/// (the one that creates the task), unless the call already has one; returns the new event id.
/// The body carries the task id, the reason, the time, the call and a link to the portal's
/// inbox, and the caller as its keyed hash: never the number, the transcript or the audio.
pub async fn enqueue_message(
    tx: &Tx<'_>,
    webhooks: &Webhooks,
    customer: CustomerId,
    portal_base_url: &str,
    message: MessageEvent<'_>,
) -> Result<Option<Uuid>, MediaError> {
    let caller_hash = match message.caller {
        Some(number) => Some(webhooks.caller_hash_in(tx, customer, number).await?),
        None => None,
    };
    let event_id = Uuid::new_v4();
    let created_at = Utc::now();
    let body = event::build_message(
        event_id,
        created_at,
        customer,
        portal_base_url,
        &message,
        caller_hash,
    )?;
    let new = NewEvent {
        event_id,
        event_type: EventType::MessageCreated,
        call_sid: Some(message.call_sid),
        body: &body,
        retry_for: webhooks.config().retry_for,
        created_at,
    };
    sql::insert_event(tx, &new).await
}
