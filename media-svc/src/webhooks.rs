//! Post-call webhooks: events built when a call's record reaches memory-svc, stored durably,
//! signed by tenant-svc and delivered with retries, then dead-lettered.
//!
//! Life of an event (table `media.webhook_events`, migration V10):
//! 1. [`enqueue`] runs inside the outbox's success transaction (see [`crate::outbox`]): it builds
//!    the JSON body once (call, summary, transcript, caller number or its keyed hash) and inserts
//!    it with a fresh event id, unless the call already has an event (one event per call).
//! 2. [`run`] (the delivery worker) asks `media.webhook_due_tenants()` which tenants have due
//!    events and runs one task per tenant (at most [`MAX_TENANTS_IN_FLIGHT`] at once), so a slow
//!    or failing endpoint only ever holds its own tenant's task. A tenant task keeps up to
//!    [`PER_TENANT_IN_FLIGHT`] attempts in flight, claiming due events as slots free up (a claim
//!    pushes `next_attempt_at` out by a lease, so a crash retries after the lease and replicas
//!    never send the same event at once), records each outcome, and stays alive while attempts
//!    are in flight or a retry is due soon.
//! 3. Each attempt: `SignWebhookEvent(now, body)` at tenant-svc (the secrets never leave it; the
//!    answer also says where to deliver), then a POST with the signature headers, no redirects,
//!    a bounded time. 2xx: delivered. 410 Gone, or FAILED_PRECONDITION from tenant-svc (webhook
//!    removed): dead at once. Anything else: retried after `base * 2^(attempts-1)` (capped, full
//!    jitter in `[delay/2, delay]`) until `give_up_at`, then dead (a dead letter, listed by
//!    `ListDeadLetters`, requeued by `RedeliverDeadLetter`).
//! 4. Unless `allow_insecure`, only `https://` URLs whose addresses are public are contacted: a
//!    literal address is checked before connecting, a name is resolved by [`PublicOnly`], which
//!    hands the client only the addresses it checked (so a second lookup cannot swap in another).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac as _};
use mesh::api::common::Speaker;
use mesh::api::media::{CallDirection, CallStatus, DeadLetter};
use mesh::db::DbError;
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};
use rand::Rng as _;
use secrecy::{ExposeSecret as _, SecretSlice};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, OnceCell, watch};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::Runtime;
use crate::error::MediaError;
use crate::peers::PeerError;
use crate::store;

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

/// Time between two scans for due tenants when nothing wakes the worker (an enqueue or a
/// redelivery wakes it at once; a tenant task waits for its own retries that are due sooner).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Tenants delivered to at the same time.
pub const MAX_TENANTS_IN_FLIGHT: usize = 64;
/// Events of one tenant in flight at the same time.
pub const PER_TENANT_IN_FLIGHT: i64 = 4;
/// Largest body tenant-svc signs (`SignWebhookEvent`); the transcript is cut to fit.
pub const MAX_BODY: usize = 1 << 20;
/// `User-Agent` of every delivery.
pub const USER_AGENT: &str = "NeuroSphere-Webhooks/1";
/// Time the worker waits for in-flight attempts when the service stops (then they are
/// abandoned and retried after their lease).
const STOP_GRACE: Duration = Duration::from_secs(2);

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

    /// The caller-hash key: configured, or the database's (V10), loaded once.
    async fn hash_key(&self, tx: &Tx<'_>) -> Result<&SecretSlice<u8>, MediaError> {
        self.inner
            .hash_key
            .get_or_try_init(|| async {
                let row = tx
                    .query_one("SELECT key FROM media.caller_hash_key", &[])
                    .await?;
                Ok::<_, MediaError>(SecretSlice::from(row.get::<_, Vec<u8>>(0)))
            })
            .await
    }
}

/// `"hmac-sha256:" + hex(HMAC-SHA256(key, "<customer_id>:<number>"))`: stable per tenant and
/// number (a tenant can match repeat callers), different across tenants, and not reversible by
/// enumerating phone numbers without the key.
pub fn caller_hash(key: &[u8], customer: CustomerId, number: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(customer.get().to_string().as_bytes());
    mac.update(b":");
    mac.update(number.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------------------------
// The event body
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct EventBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: String,
    created_at: String,
    customer_id: i64,
    call: CallPart,
    summary: &'a str,
    transcript: Vec<TurnPart>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    transcript_truncated: bool,
}

#[derive(Serialize)]
struct CallPart {
    call_sid: String,
    direction: &'static str,
    status: &'static str,
    duration_seconds: i32,
    started_at: String,
    ended_at: Option<String>,
    // Exactly one of the two is present (`null` when the network withheld the number).
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_number: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_number_hash: Option<Option<String>>,
    persona: Option<String>,
}

#[derive(Serialize)]
struct TurnPart {
    speaker: &'static str,
    text: String,
    offset_ms: u32,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Twilio's spelling of a direction.
pub fn direction_name(direction: i16) -> &'static str {
    match CallDirection::try_from(i32::from(direction)) {
        Ok(CallDirection::OutboundApi) => "outbound-api",
        Ok(CallDirection::OutboundDial) => "outbound-dial",
        _ => "inbound",
    }
}

/// Twilio's spelling of a status (a recorded call is in a final state; the others are spelled
/// out anyway rather than guessed).
pub fn status_name(status: i16) -> &'static str {
    match CallStatus::try_from(i32::from(status)) {
        Ok(CallStatus::Initiated) => "initiated",
        Ok(CallStatus::Queued) => "queued",
        Ok(CallStatus::Ringing) => "ringing",
        Ok(CallStatus::InProgress) => "in-progress",
        Ok(CallStatus::Busy) => "busy",
        Ok(CallStatus::Failed) => "failed",
        Ok(CallStatus::NoAnswer) => "no-answer",
        Ok(CallStatus::Canceled) => "canceled",
        _ => "completed",
    }
}

fn speaker_name(speaker: i32) -> &'static str {
    match Speaker::try_from(speaker) {
        Ok(Speaker::Caller) => "caller",
        Ok(Speaker::Agent) => "agent",
        // DTMF digits and transfers the platform wrote into the transcript.
        _ => "system",
    }
}

/// Serializes the event, cutting transcript turns from the end (and saying so) when the whole
/// would exceed [`MAX_BODY`].
fn serialize_within_limit(mut event: EventBody<'_>) -> Result<Vec<u8>, MediaError> {
    let to_vec = |e: &EventBody<'_>| {
        serde_json::to_vec(e).map_err(|e| MediaError::Internal(format!("event JSON: {e}")))
    };
    let body = to_vec(&event)?;
    if body.len() <= MAX_BODY {
        return Ok(body);
    }
    let turns = std::mem::take(&mut event.transcript);
    event.transcript_truncated = true;
    let mut size = to_vec(&event)?.len();
    let mut kept = Vec::new();
    for turn in turns {
        let len = serde_json::to_vec(&turn)
            .map_err(|e| MediaError::Internal(format!("event JSON: {e}")))?
            .len()
            + 1;
        if size + len > MAX_BODY {
            break;
        }
        size += len;
        kept.push(turn);
    }
    event.transcript = kept;
    let body = to_vec(&event)?;
    debug_assert!(body.len() <= MAX_BODY);
    Ok(body)
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
    let existing = tx
        .query_opt(
            "SELECT event_id FROM media.webhook_events WHERE call_sid = $1",
            &[&call_sid.as_str()],
        )
        .await?;
    if existing.is_some() {
        return Ok(None);
    }
    let call = store::get_call(tx, call_sid, false)
        .await?
        .ok_or(MediaError::NotFound)?;
    let turns = store::turns(tx, &call.call_sid).await?;
    let (caller_number, caller_number_hash) = if settings.raw_numbers {
        (Some(call.caller.clone()), None)
    } else {
        let hash = match &call.caller {
            Some(number) => {
                let key = webhooks.hash_key(tx).await?;
                Some(caller_hash(key.expose_secret(), customer, number))
            }
            None => None,
        };
        (None, Some(hash))
    };
    let persona = call.to_proto().persona;
    let event_id = Uuid::new_v4();
    let created_at = Utc::now();
    let body = serialize_within_limit(EventBody {
        kind: "call.completed",
        event_id: event_id.to_string(),
        created_at: rfc3339(created_at),
        customer_id: customer.get(),
        call: CallPart {
            call_sid: call.call_sid.clone(),
            direction: direction_name(call.direction),
            status: status_name(call.status),
            duration_seconds: call.duration_seconds,
            started_at: rfc3339(call.answered_at.unwrap_or(call.created_at)),
            ended_at: call.ended_at.map(rfc3339),
            caller_number,
            caller_number_hash,
            persona: (!persona.is_empty()).then_some(persona),
        },
        summary,
        transcript: turns
            .into_iter()
            .map(|t| TurnPart {
                speaker: speaker_name(t.speaker),
                text: t.text,
                offset_ms: t.offset_ms,
            })
            .collect(),
        transcript_truncated: false,
    })?;
    let retry_for = webhooks.config().retry_for.as_secs_f64();
    let inserted = tx
        .query_opt(
            "INSERT INTO media.webhook_events \
               (customer_id, event_id, call_sid, body, retry_for, give_up_at, created_at) \
             VALUES (app.current_customer_id(), $1, $2, $3, make_interval(secs => $4), \
                     $5::timestamptz + make_interval(secs => $4), $5) \
             ON CONFLICT (customer_id, call_sid) DO NOTHING RETURNING event_id",
            &[
                &event_id,
                &call_sid.as_str(),
                &body,
                &retry_for,
                &created_at,
            ],
        )
        .await?;
    Ok(inserted.map(|r| r.get(0)))
}

// ---------------------------------------------------------------------------------------------
// Dead letters (ListDeadLetters, RedeliverDeadLetter)
// ---------------------------------------------------------------------------------------------

/// Page tokens are opaque to clients: `<dead_at micros>:<event_id>`, base64url.
pub fn encode_dead_letter_token(dead_at: DateTime<Utc>, event_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{event_id}", dead_at.timestamp_micros()))
}

/// The position a page token names; INVALID_ARGUMENT `page_token` for anything else.
pub fn decode_dead_letter_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, MediaError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || MediaError::invalid("page_token", "is not a token from a previous response");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let time = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Some((time, id)))
}

/// One page of the tenant's dead letters, newest dead first, and the position after its last
/// row when another page exists.
pub async fn list_dead_letters(
    tx: &Tx<'_>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<(Vec<DeadLetter>, Option<(DateTime<Utc>, Uuid)>), MediaError> {
    let (after_time, after_id) = after.unzip();
    let rows = tx
        .query(
            "SELECT event_id, call_sid, attempts, coalesce(last_error, ''), created_at, dead_at \
             FROM media.webhook_events \
             WHERE dead_at IS NOT NULL \
               AND ($1::timestamptz IS NULL OR (dead_at, event_id) < ($1, $2::uuid)) \
             ORDER BY dead_at DESC, event_id DESC LIMIT $3",
            &[&after_time, &after_id, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some((last.get(5), last.get(0))),
        _ => None,
    };
    let letters = rows
        .iter()
        .map(|r| DeadLetter {
            event_id: r.get::<_, Uuid>(0).to_string(),
            call_sid: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
            create_time: Some(store::timestamp(r.get(4))),
            dead_time: Some(store::timestamp(r.get(5))),
        })
        .collect();
    Ok((letters, next))
}

/// Requeues one dead letter of the tenant: due now, attempts from zero, the event's retry window
/// again from now. False when the tenant has no dead-lettered event with this id.
pub async fn redeliver(tx: &Tx<'_>, event_id: Uuid) -> Result<bool, MediaError> {
    let n = tx
        .execute(
            "UPDATE media.webhook_events SET dead_at = NULL, attempts = 0, \
               next_attempt_at = now(), give_up_at = now() + retry_for \
             WHERE event_id = $1 AND dead_at IS NOT NULL",
            &[&event_id],
        )
        .await?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------------------------
// Destination checks
// ---------------------------------------------------------------------------------------------

/// The attempt was refused before connecting: the destination is loopback, private,
/// link-local or otherwise not a public address.
#[derive(Debug, Clone, Copy)]
pub struct NotAllowed;

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("destination address not allowed")
    }
}

impl std::error::Error for NotAllowed {}

/// Whether `ip` is a public unicast address that a tenant's endpoint may have.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // IPv4-compatible (deprecated) and NAT64 addresses embed an IPv4 address.
                || (s[0..6] == [0; 6])
                || (s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0])
                // Documentation 2001:db8::/32.
                || (s[0] == 0x2001 && s[1] == 0x0db8))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        // Shared address space (carrier-grade NAT) 100.64.0.0/10.
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // IETF protocol assignments 192.0.0.0/24, benchmarking 198.18.0.0/15, reserved 240/4.
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240)
}

/// A resolver that returns only public addresses (an error when none is left). The client
/// connects to exactly the addresses returned here, so the check cannot be raced by a second
/// lookup (DNS rebinding).
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(NotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks the URL tenant-svc returned before any connection: scheme (`https`, or `http` when
/// insecure destinations are allowed), no credentials, and a literal address must be public.
/// Names are checked by [`PublicOnly`] at connect time.
fn check_destination(url: &str, allow_insecure: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(url).map_err(|_| "webhook URL is not a URL".to_owned())?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err("webhook URL scheme not allowed".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("webhook URL carries credentials".into());
    }
    // The parser normalises literal addresses (`127.1` -> `127.0.0.1`, IPv6 in brackets).
    let host = url
        .host_str()
        .ok_or_else(|| "webhook URL has no host".to_owned())?;
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if let Some(ip) = literal
        && !allow_insecure
        && !is_public(ip)
    {
        return Err(NotAllowed.to_string());
    }
    Ok(url)
}

// ---------------------------------------------------------------------------------------------
// The delivery worker
// ---------------------------------------------------------------------------------------------

struct Claimed {
    event_id: Uuid,
    call_sid: String,
    body: Vec<u8>,
    attempts: i32,
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Delivered(u16),
    Failed {
        error: String,
        /// Dead at once (410 Gone, webhook removed, request refused for good).
        permanent: bool,
    },
}

/// Runs until `stop` turns true.
pub async fn run(rt: Runtime, mut stop: watch::Receiver<bool>) {
    // Active tenant tasks, each with the signal that tells it new events are due.
    let mut active: HashMap<CustomerId, Arc<Notify>> = HashMap::new();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut task_tenant: HashMap<tokio::task::Id, CustomerId> = HashMap::new();
    loop {
        if *stop.borrow() {
            break;
        }
        match due_tenants(&rt).await {
            Ok(ids) => {
                for customer in ids {
                    if let Some(more) = active.get(&customer) {
                        more.notify_one();
                        continue;
                    }
                    if active.len() >= MAX_TENANTS_IN_FLIGHT {
                        continue;
                    }
                    let more = Arc::new(Notify::new());
                    active.insert(customer, more.clone());
                    let handle = tasks.spawn(tenant_loop(rt.clone(), customer, more, stop.clone()));
                    task_tenant.insert(handle.id(), customer);
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhook scan failed; retrying"),
        }
        tokio::select! {
            _ = rt.webhooks.inner.wake.notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            // A dropped sender means nobody can stop us any more: stop now.
            changed = stop.changed() => if changed.is_err() { break },
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => {
                        tracing::error!(error = %e, "webhook tenant task failed");
                        e.id()
                    }
                };
                if let Some(customer) = task_tenant.remove(&id) {
                    active.remove(&customer);
                }
            }
        }
    }
    // Tenant tasks record the attempts in flight and end; whatever is still in flight after the
    // grace period is abandoned and retried after its lease.
    let _ = tokio::time::timeout(STOP_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.shutdown().await;
}

async fn due_tenants(rt: &Runtime) -> Result<Vec<CustomerId>, MediaError> {
    let max = i32::try_from(MAX_TENANTS_IN_FLIGHT).unwrap_or(i32::MAX);
    rt.db
        .service_tx(async |tx| {
            let rows = tx
                .query(
                    "SELECT customer_id FROM media.webhook_due_tenants($1)",
                    &[&max],
                )
                .await
                .map_err(DbError::from)?;
            Ok::<_, MediaError>(
                rows.iter()
                    .filter_map(|r| CustomerId::new(r.get(0)).ok())
                    .collect(),
            )
        })
        .await
}

/// One tenant's deliveries: keeps up to [`PER_TENANT_IN_FLIGHT`] attempts in flight, claims
/// more as slots free up, when the dispatcher signals new due events (`more`) or when a retry
/// falls due, and ends when nothing is in flight and nothing is due within the scan interval.
/// A hanging endpoint therefore holds at most its own tenant's slots, and a new event of the
/// same tenant still goes out while older ones hang (as long as a slot is free).
async fn tenant_loop(
    rt: Runtime,
    customer: CustomerId,
    more: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: JoinSet<(Claimed, Outcome)> = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let free = PER_TENANT_IN_FLIGHT - running.len() as i64;
        if free > 0 {
            match claim(&rt, customer, free).await {
                Ok(claimed) => {
                    for event in claimed {
                        let rt = rt.clone();
                        running.spawn(async move {
                            let outcome = attempt(&rt, customer, &event).await;
                            (event, outcome)
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(customer_id = customer.get(), error = %e, "claiming webhook events failed");
                }
            }
        }
        // The next retry of this tenant, waited for here so that short backoffs are honoured
        // without scanning all tenants more often. Not needed while every slot is busy.
        let next_due = if (running.len() as i64) < PER_TENANT_IN_FLIGHT {
            match next_due_in(&rt, customer).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(customer_id = customer.get(), error = %e, "webhook schedule lookup failed");
                    None
                }
            }
        } else {
            None
        };
        let wait = next_due
            .filter(|d| *d <= POLL_INTERVAL)
            .map(|d| d.max(Duration::from_millis(10)));
        if running.is_empty() && wait.is_none() {
            return;
        }
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                finish(&rt, customer, done).await;
            }
            _ = more.notified() => {}
            _ = tokio::time::sleep(wait.unwrap_or(POLL_INTERVAL)) => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    // Stopping: record what is in flight (the dispatcher bounds how long this may take).
    while let Some(done) = running.join_next().await {
        finish(&rt, customer, done).await;
    }
}

async fn finish(
    rt: &Runtime,
    customer: CustomerId,
    done: Result<(Claimed, Outcome), tokio::task::JoinError>,
) {
    match done {
        Ok((event, outcome)) => {
            if let Err(e) = record(rt, customer, &event, outcome).await {
                tracing::warn!(customer_id = customer.get(), event_id = %event.event_id, error = %e, "recording a webhook attempt failed; retried after the lease");
            }
        }
        Err(e) => {
            tracing::error!(customer_id = customer.get(), error = %e, "webhook attempt task failed; retried after the lease");
        }
    }
}

/// Claims up to `limit` due events: attempts + 1 and `next_attempt_at` pushed out by a lease
/// longer than one attempt can take.
async fn claim(rt: &Runtime, customer: CustomerId, limit: i64) -> Result<Vec<Claimed>, MediaError> {
    let lease = rt.webhooks.config().timeout + rt.peers.timeout() + Duration::from_secs(30);
    let lease_secs = lease.as_secs_f64();
    rt.db
        .tenant_tx(customer, async |tx| {
            let rows = tx
                .query(
                    "UPDATE media.webhook_events SET attempts = attempts + 1, \
                       next_attempt_at = now() + make_interval(secs => $1) \
                     WHERE event_id IN (SELECT event_id FROM media.webhook_events \
                                        WHERE delivered_at IS NULL AND dead_at IS NULL \
                                          AND next_attempt_at <= now() \
                                        ORDER BY next_attempt_at, created_at \
                                        LIMIT $2 FOR UPDATE SKIP LOCKED) \
                     RETURNING event_id, call_sid, body, attempts",
                    &[&lease_secs, &limit],
                )
                .await?;
            Ok::<_, MediaError>(
                rows.iter()
                    .map(|r| Claimed {
                        event_id: r.get(0),
                        call_sid: r.get(1),
                        body: r.get(2),
                        attempts: r.get(3),
                    })
                    .collect(),
            )
        })
        .await
}

/// Time until the tenant's next pending event is due (zero when one is due now).
async fn next_due_in(rt: &Runtime, customer: CustomerId) -> Result<Option<Duration>, MediaError> {
    rt.db
        .tenant_tx(customer, async |tx| {
            let row = tx
                .query_one(
                    "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 \
                     FROM media.webhook_events WHERE delivered_at IS NULL AND dead_at IS NULL",
                    &[],
                )
                .await?;
            let secs: Option<f64> = row.get(0);
            Ok::<_, MediaError>(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
        })
        .await
}

/// One delivery attempt of one event.
async fn attempt(rt: &Runtime, customer: CustomerId, event: &Claimed) -> Outcome {
    let timestamp = Utc::now().timestamp();
    let signed = match rt
        .peers
        .sign_webhook_event(customer, timestamp, event.body.clone())
        .await
    {
        Ok(s) => s,
        Err(PeerError::Status(s)) if s.code() == tonic::Code::FailedPrecondition => {
            return Outcome::Failed {
                error: "webhook removed (no URL or secret)".into(),
                permanent: true,
            };
        }
        Err(e) => {
            return Outcome::Failed {
                error: format!("signing failed: {}", e.short()),
                permanent: e.is_permanent(),
            };
        }
    };
    if signed.signatures.is_empty() {
        return Outcome::Failed {
            error: "signing returned no signature".into(),
            permanent: false,
        };
    }
    let config = rt.webhooks.config();
    let url = match check_destination(&signed.webhook_url, config.allow_insecure) {
        Ok(u) => u,
        Err(error) => {
            return Outcome::Failed {
                error,
                permanent: false,
            };
        }
    };
    let signature = signed
        .signatures
        .iter()
        .map(|s| format!("v1={s}"))
        .collect::<Vec<_>>()
        .join(",");
    let sent = rt
        .webhooks
        .inner
        .http
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("NeuroSphere-Event-Id", event.event_id.to_string())
        .header("NeuroSphere-Timestamp", timestamp.to_string())
        .header("NeuroSphere-Signature", signature)
        .body(event.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Outcome::Delivered(response.status().as_u16())
        }
        Ok(response) if response.status() == reqwest::StatusCode::GONE => Outcome::Failed {
            error: "HTTP 410 (endpoint gone)".into(),
            permanent: true,
        },
        Ok(response) => Outcome::Failed {
            error: format!("HTTP {}", response.status().as_u16()),
            permanent: false,
        },
        Err(e) => Outcome::Failed {
            error: describe(&e),
            permanent: false,
        },
    }
}

/// A short description of a transport error without the URL (its query may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<NotAllowed>() {
            return NotAllowed.to_string();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_request() || e.is_body() {
        "request failed".into()
    } else {
        "transport error".into()
    }
}

/// The delay before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped, then a random
/// point in `[delay/2, delay]` so that events failing together do not retry together.
pub fn backoff(config: &WebhookConfig, attempts: i32) -> Duration {
    let shift = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let delay = config
        .base_backoff
        .saturating_mul(1u32 << shift)
        .min(config.max_backoff);
    let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let jittered = rand::thread_rng().gen_range(millis / 2..=millis);
    Duration::from_millis(jittered)
}

async fn record(
    rt: &Runtime,
    customer: CustomerId,
    event: &Claimed,
    outcome: Outcome,
) -> Result<(), MediaError> {
    match outcome {
        Outcome::Delivered(status) => {
            metrics::counter!("media_webhook_delivered_total").increment(1);
            tracing::info!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, status, "webhook event delivered");
            rt.db
                .tenant_tx(customer, async |tx| {
                    tx.execute(
                        "UPDATE media.webhook_events SET delivered_at = now(), last_error = NULL \
                         WHERE event_id = $1",
                        &[&event.event_id],
                    )
                    .await?;
                    Ok::<_, MediaError>(())
                })
                .await
        }
        Outcome::Failed { error, permanent } => {
            let delay = backoff(rt.webhooks.config(), event.attempts).as_secs_f64();
            let error: String = error.chars().take(500).collect();
            let dead: bool = rt
                .db
                .tenant_tx(customer, async |tx| {
                    let row = tx
                        .query_one(
                            "UPDATE media.webhook_events SET last_error = $2, \
                               dead_at = CASE WHEN $3 OR now() >= give_up_at THEN now() END, \
                               next_attempt_at = least(now() + make_interval(secs => $4), give_up_at) \
                             WHERE event_id = $1 RETURNING dead_at IS NOT NULL",
                            &[&event.event_id, &error, &permanent, &delay],
                        )
                        .await?;
                    Ok::<_, MediaError>(row.get(0))
                })
                .await?;
            metrics::counter!("media_webhook_failures_total", "permanent" => permanent.to_string())
                .increment(1);
            if dead {
                metrics::counter!("media_webhook_dead_lettered_total").increment(1);
                tracing::warn!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, %error, permanent, "webhook event dead-lettered");
            } else {
                tracing::info!(customer_id = customer.get(), event_id = %event.event_id, call_sid = %event.call_sid, attempt = event.attempts, %error, "webhook attempt failed; will retry");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_only() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn destination_checks() {
        assert!(check_destination("https://example.com/hook", false).is_ok());
        assert_eq!(
            check_destination("http://example.com/hook", false).unwrap_err(),
            "webhook URL scheme not allowed"
        );
        assert!(check_destination("http://127.0.0.1:9/hook", true).is_ok());
        assert_eq!(
            check_destination("https://127.0.0.1/hook", false).unwrap_err(),
            "destination address not allowed"
        );
        assert_eq!(
            check_destination("https://[::1]/hook", false).unwrap_err(),
            "destination address not allowed"
        );
        assert!(check_destination("https://u:p@example.com/", false).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let config = WebhookConfig {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..WebhookConfig::default()
        };
        for _ in 0..50 {
            let d1 = backoff(&config, 1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = backoff(&config, 3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d30 = backoff(&config, 30).as_millis();
            assert!((500..=1000).contains(&d30), "{d30}");
        }
    }

    #[test]
    fn caller_hash_is_keyed_and_per_tenant() {
        let key = [7u8; 32];
        let a = caller_hash(&key, CustomerId::new(1).unwrap(), "+15551234567");
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 64, "{a}");
        assert_eq!(
            a,
            caller_hash(&key, CustomerId::new(1).unwrap(), "+15551234567")
        );
        assert_ne!(
            a,
            caller_hash(&key, CustomerId::new(2).unwrap(), "+15551234567")
        );
        assert_ne!(
            a,
            caller_hash(&[8u8; 32], CustomerId::new(1).unwrap(), "+15551234567")
        );
    }

    #[test]
    fn oversized_transcripts_are_cut_to_fit() {
        let turn = || TurnPart {
            speaker: "caller",
            text: "x".repeat(8000),
            offset_ms: 0,
        };
        let event = EventBody {
            kind: "call.completed",
            event_id: Uuid::nil().to_string(),
            created_at: rfc3339(Utc::now()),
            customer_id: 1,
            call: CallPart {
                call_sid: "CA".into(),
                direction: "inbound",
                status: "completed",
                duration_seconds: 1,
                started_at: rfc3339(Utc::now()),
                ended_at: None,
                caller_number: None,
                caller_number_hash: Some(None),
                persona: None,
            },
            summary: "s",
            transcript: (0..500).map(|_| turn()).collect(),
            transcript_truncated: false,
        };
        let body = serialize_within_limit(event).unwrap();
        assert!(body.len() <= MAX_BODY);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["transcript_truncated"], true);
        let kept = v["transcript"].as_array().unwrap().len();
        assert!((120..131).contains(&kept), "{kept}");
        assert!(v["call"]["caller_number_hash"].is_null());
        assert!(v["call"].get("caller_number").is_none());
    }
}
