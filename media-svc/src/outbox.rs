//! The post-call outbox worker: delivers `media.outbox` rows (encoded `RecordCallRequest`s) to
//! memory-svc until they succeed, so a memory-svc outage loses nothing; and, for a call that left
//! a message, the owners' notice (`NotifyOwnersRequest`) to tenant-svc, retried the same way
//! while tenant-svc or its mail server is down (tenant-svc mails each owner once per task).
//!
//! Each round asks `media.outbox_due_tenants()` (ids only) which tenants have due rows, then per
//! tenant, inside that tenant's transaction, claims up to a batch of due rows by pushing their
//! `next_attempt_at` out by a lease (so a crash mid-delivery retries after the lease, and two
//! replicas never deliver the same row at once: `FOR UPDATE SKIP LOCKED`). Delivery happens
//! outside the transaction; success sets `delivered_at`, a transient failure schedules the next
//! attempt with doubling back-off (capped), and a permanent refusal (INVALID_ARGUMENT) moves the
//! row to `dead_at`. memory-svc's `RecordCall` is idempotent on the CallSid, so a delivery
//! repeated after a lost answer still records the call once.
//!
//! A successful `RecordCall` also queues the call's post-call webhook event (when the tenant has
//! a webhook URL) in the same transaction as the success; see [`crate::webhooks`] for its
//! delivery and `queue_webhook_event` for the ordering. When memory-svc answers that the caller
//! was erased after the call began (`erased`), the row counts as delivered and no event is queued.
//! Erasing a call deletes its outbox row (a foreign key with `ON DELETE CASCADE`, V15), so a row
//! claimed before an erasure finds nothing to mark afterwards.

use std::time::Duration;

use mesh::api::memory::{RecordCallRequest, RecordCallResponse};
use mesh::api::tenant::{MessageReason, NotifyOwnersRequest, OwnerNotice};
use mesh::domain::{CallSid, CustomerId};
use prost::Message as _;
use tokio::sync::watch;

use crate::error::MediaError;
use crate::peers::PeerError;
use crate::runtime::Runtime;
use crate::store::callback_tasks::Reason;
use crate::store::outbox::{self as sql, Claimed};
use crate::webhooks;

/// Retry pacing.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Time between two scans when nothing wakes the worker.
    pub poll_interval: Duration,
    /// First retry delay (doubles per attempt).
    pub base_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long a claimed row stays invisible to other rounds.
    pub lease: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            lease: Duration::from_secs(60),
        }
    }
}

/// How long the outcome of a delivery is retried while the database is unreachable (a
/// PostgreSQL restart), and the pause between two tries. An outcome never written leaves the row
/// claimed for the whole lease: a failure would wait the lease instead of its back-off, and a
/// success would be delivered again after it.
const OUTCOME_RETRY_BUDGET: Duration = Duration::from_secs(10);
const OUTCOME_RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Runs until `stop` turns true.
pub async fn run(rt: Runtime, config: OutboxConfig, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = round(&rt, &config, &stop).await {
            tracing::warn!(error = %e, "outbox round failed; retrying");
        }
        tokio::select! {
            _ = rt.outbox_wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Whether the tenant wants a webhook event for this call, asked right after `RecordCall`
/// succeeded and before the success is written (a network call must not hold a transaction).
/// `Ok(None)` when the tenant has no webhook URL. An error when tenant-svc cannot say: the
/// outbox row then stays pending and is retried like a failed delivery, so no call silently
/// loses its event (memory-svc's `RecordCall` is idempotent and answers the retry with the
/// stored summary).
async fn event_settings(
    rt: &Runtime,
    customer: CustomerId,
) -> Result<Option<webhooks::EventSettings>, String> {
    match rt.peers.outbound_settings(customer).await {
        Ok(r) => {
            Ok(r.settings
                .filter(|s| !s.webhook_url.is_empty())
                .map(|s| webhooks::EventSettings {
                    raw_numbers: s.webhook_raw_numbers,
                }))
        }
        Err(e) => {
            metrics::counter!("media_webhook_enqueue_failures_total").increment(1);
            Err(format!("webhook settings unavailable: {}", e.short()))
        }
    }
}

/// Queues the call's webhook event in the transaction that records the outbox success.
///
/// Ordering: the success (`delivered_at`) is written first and the event inside a savepoint of
/// the same transaction, so that
/// - both commit together: a crash before the commit leaves the row undelivered, the outbox
///   repeats `RecordCall` (idempotent in memory-svc, which answers with the stored summary) and
///   the event is built then; there is no window where the success is stored but the event was
///   never attempted;
/// - a failure to build or insert the event rolls back to the savepoint only: the outbox
///   success is never lost (nor retried) because of the webhook; the failure is logged and
///   counted;
/// - a repeated success (a retry after a lost answer) inserts nothing: one event per call
///   (UNIQUE `(customer_id, call_sid)`).
async fn queue_webhook_event(
    tx: &mesh::db::Tx<'_>,
    rt: &Runtime,
    customer: CustomerId,
    call_sid: &str,
    summary: &str,
    settings: webhooks::EventSettings,
) -> Result<Option<uuid::Uuid>, MediaError> {
    let Ok(sid) = CallSid::parse(call_sid) else {
        return Ok(None);
    };
    sql::begin_event(tx).await?;
    match webhooks::enqueue(tx, &rt.webhooks, customer, &sid, summary, settings).await {
        Ok(id) => {
            sql::keep_event(tx).await?;
            Ok(id)
        }
        Err(e) => {
            sql::undo_event(tx).await?;
            metrics::counter!("media_webhook_enqueue_failures_total").increment(1);
            tracing::error!(customer_id = customer.get(), %call_sid, error = %e, "post-call webhook event not queued");
            Ok(None)
        }
    }
}

/// One pass over every tenant with due rows; returns how many rows were delivered.
pub async fn round(
    rt: &Runtime,
    config: &OutboxConfig,
    stop: &watch::Receiver<bool>,
) -> Result<usize, MediaError> {
    let tenants = rt
        .db
        .service_tx(async |tx| sql::due_tenants(tx).await)
        .await?;
    let mut delivered = 0;
    for customer in tenants {
        delivered += deliver_tenant(rt, config, customer, stop).await?;
    }
    Ok(delivered)
}

/// Runs `write` (one transaction recording a delivery's outcome) again while the database is
/// unreachable, for up to [`OUTCOME_RETRY_BUDGET`] or until the worker is told to stop.
async fn until_written<T, Fut>(
    stop: &watch::Receiver<bool>,
    write: impl FnMut() -> Fut,
) -> Result<T, MediaError>
where
    Fut: Future<Output = Result<T, MediaError>>,
{
    crate::store::retry_while_unavailable(
        OUTCOME_RETRY_BUDGET,
        OUTCOME_RETRY_PAUSE,
        || *stop.borrow(),
        |_| metrics::counter!("media_outbox_outcome_retries_total").increment(1),
        write,
    )
    .await
}

/// Claims the tenant's due rows and delivers them one by one.
async fn deliver_tenant(
    rt: &Runtime,
    config: &OutboxConfig,
    customer: CustomerId,
    stop: &watch::Receiver<bool>,
) -> Result<usize, MediaError> {
    let claimed = rt
        .db
        .tenant_tx(customer, async |tx| sql::claim(tx, config.lease).await)
        .await?;
    let mut delivered = 0;
    for row in claimed {
        if row.kind == sql::OutboxKind::NotifyOwners.as_str()
            || row.kind == sql::OutboxKind::NotifyOwnersUsage.as_str()
        {
            match notify_owners(rt, customer, &row).await {
                Ok(()) => {
                    delivered += 1;
                    until_written(stop, || {
                        rt.db
                            .tenant_tx(customer, async |tx| sql::mark_delivered(tx, row.id).await)
                    })
                    .await?;
                }
                Err((permanent, error)) => {
                    failed_one(rt, config, customer, &row, permanent, error, stop).await?;
                }
            }
            continue;
        }
        match deliver(rt, customer, &row).await {
            Ok((response, event)) => {
                delivered += 1;
                delivered_one(rt, customer, &row, response, event, stop).await?;
            }
            Err((permanent, error)) => {
                failed_one(rt, config, customer, &row, permanent, error, stop).await?;
            }
        }
    }
    Ok(delivered)
}

/// What a delivery failed with: whether retrying cannot help, and a secret-free description.
type Failure = (bool, String);

/// Queues the owners' notice of a callback task inside the transaction that writes the task, so
/// it commits with it and is delivered with retries (once per call: the outbox is unique per
/// call and kind). The request carries ids and the reason's kind only.
pub async fn queue_owner_notice(
    tx: &mesh::db::Tx<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    task_id: uuid::Uuid,
    reason: Reason,
) -> Result<(), MediaError> {
    let reason = match reason {
        Reason::BackendDown => MessageReason::BackendDown,
        Reason::Busy => MessageReason::Busy,
        Reason::AfterHours => MessageReason::AfterHours,
        Reason::Agent => MessageReason::Agent,
    };
    let request = NotifyOwnersRequest {
        customer_id: customer.get(),
        kind: OwnerNotice::MessageTaken.into(),
        task_id: task_id.to_string(),
        reason: reason.into(),
        ..Default::default()
    };
    sql::enqueue(
        tx,
        sql::OutboxKind::NotifyOwners,
        call_sid,
        &request.encode_to_vec(),
    )
    .await
}

/// Sends one row's `NotifyOwners` (tenant-svc mails the tenant's owners that a caller left a
/// message; idempotent there per task and owner). An unknown customer (erased since) or a
/// refused request is permanent; a mail server that failed (UNAVAILABLE) is retried.
async fn notify_owners(rt: &Runtime, customer: CustomerId, row: &Claimed) -> Result<(), Failure> {
    let request = NotifyOwnersRequest::decode(row.payload.as_slice())
        .map_err(|_| (true, "undecodable payload".to_owned()))?;
    let response = rt.peers.notify_owners(request).await.map_err(|e| {
        let gone = matches!(&e, PeerError::Status(s) if s.code() == tonic::Code::NotFound);
        (gone || e.is_permanent(), e.short())
    })?;
    metrics::counter!("media_owner_notices_total").increment(1);
    tracing::info!(customer_id = customer.get(), call_sid = %row.call_sid, attempts = row.attempts, mail_configured = response.mail_configured, sent = response.sent, already_sent = response.already_sent, "owners' notice delivered to tenant-svc");
    Ok(())
}

/// Sends one row's `RecordCall` and, when it succeeded, asks whether the tenant wants a webhook
/// event for the call.
async fn deliver(
    rt: &Runtime,
    customer: CustomerId,
    row: &Claimed,
) -> Result<(RecordCallResponse, Option<webhooks::EventSettings>), Failure> {
    let request = RecordCallRequest::decode(row.payload.as_slice())
        .map_err(|_| (true, "undecodable payload".to_owned()))?;
    let response = rt
        .peers
        .record_call(customer, request)
        .await
        .map_err(|e| (e.is_permanent(), e.short()))?;
    if response.erased {
        // The caller was erased after the call began: memory-svc dropped the record, and no
        // event may carry what was erased.
        tracing::info!(customer_id = customer.get(), call_sid = %row.call_sid, "post-call record of an erased caller dropped by memory-svc");
        return Ok((response, None));
    }
    let event = event_settings(rt, customer).await.map_err(|e| (false, e))?;
    Ok((response, event))
}

/// Records a delivery and, in the same transaction, queues the call's webhook event.
async fn delivered_one(
    rt: &Runtime,
    customer: CustomerId,
    row: &Claimed,
    response: RecordCallResponse,
    event: Option<webhooks::EventSettings>,
    stop: &watch::Receiver<bool>,
) -> Result<(), MediaError> {
    metrics::counter!("media_outbox_delivered_total").increment(1);
    tracing::info!(customer_id = customer.get(), call_sid = %row.call_sid, attempts = row.attempts, already_recorded = response.already_recorded, "post-call record delivered to memory-svc");
    let summary = response.summary.map(|s| s.summary).unwrap_or_default();
    let queued = until_written(stop, || {
        rt.db.tenant_tx(customer, async |tx| {
            sql::mark_delivered(tx, row.id).await?;
            let Some(settings) = event else {
                return Ok::<_, MediaError>(None);
            };
            queue_webhook_event(tx, rt, customer, &row.call_sid, &summary, settings).await
        })
    })
    .await?;
    if let Some(event_id) = queued {
        metrics::counter!("media_webhook_enqueued_total").increment(1);
        tracing::info!(customer_id = customer.get(), call_sid = %row.call_sid, %event_id, "post-call webhook event queued");
        rt.webhooks.wake();
    }
    Ok(())
}

/// Records a failed delivery: dead when `permanent`, else due again after a doubling back-off.
async fn failed_one(
    rt: &Runtime,
    config: &OutboxConfig,
    customer: CustomerId,
    row: &Claimed,
    permanent: bool,
    error: String,
    stop: &watch::Receiver<bool>,
) -> Result<(), MediaError> {
    let shift = u32::try_from(row.attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let delay = config
        .base_backoff
        .saturating_mul(1 << shift)
        .min(config.max_backoff);
    metrics::counter!("media_outbox_failures_total", "permanent" => permanent.to_string())
        .increment(1);
    tracing::warn!(customer_id = customer.get(), call_sid = %row.call_sid, attempts = row.attempts, %error, permanent, "post-call record not delivered");
    until_written(stop, || {
        rt.db.tenant_tx(customer, async |tx| {
            sql::mark_failed(tx, row.id, &error, permanent, delay).await
        })
    })
    .await
}
