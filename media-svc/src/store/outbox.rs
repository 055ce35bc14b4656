//! The post-call outbox (`media.outbox`): rows queued in the call's final transaction (memory-svc's
//! `RecordCall`; tenant-svc's `NotifyOwners` when the call left a message), claimed by
//! the worker under a lease (`FOR UPDATE SKIP LOCKED`, so replicas never deliver one row at
//! once), then marked delivered, rescheduled or dead. Also the savepoint the worker wraps the
//! webhook event in, so a failed event never undoes the delivery it follows.

use std::time::Duration;

use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};

use crate::error::MediaError;

/// What an outbox row asks for: the text of `media.outbox.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// `RecordCall` to memory-svc (payload: the encoded `RecordCallRequest`).
    RecordCall,
    /// `NotifyOwners` to tenant-svc: mail the tenant's owners that a caller left a message
    /// (payload: the encoded `NotifyOwnersRequest`).
    NotifyOwners,
    /// `NotifyOwners` to tenant-svc about a monthly cap 80 % used (payload: the encoded
    /// `NotifyOwnersRequest`); its own kind, so a call that left a message and crossed the
    /// threshold queues both (the outbox is unique per kind and call).
    NotifyOwnersUsage,
}

impl OutboxKind {
    /// The column's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecordCall => "record_call",
            Self::NotifyOwners => "notify_owners",
            Self::NotifyOwnersUsage => "notify_owners_usage",
        }
    }
}

/// The id of an outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxId(i64);

/// A row claimed for delivery.
#[derive(Debug)]
pub struct Claimed {
    /// The row.
    pub id: OutboxId,
    /// What it asks for (`OutboxKind::as_str`).
    pub kind: String,
    /// The call it is about (for logs).
    pub call_sid: String,
    /// The encoded request.
    pub payload: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// Rows claimed per tenant and round.
const CLAIM_BATCH: i64 = 20;

/// Tenants scanned per round.
const DUE_TENANTS: i32 = 100;

/// Queues post-call work (idempotent per call and kind).
pub async fn enqueue(
    tx: &Tx<'_>,
    kind: OutboxKind,
    call_sid: &CallSid,
    payload: &[u8],
) -> Result<(), MediaError> {
    tx.execute(
        "INSERT INTO media.outbox (customer_id, kind, call_sid, payload) \
         VALUES (app.current_customer_id(), $1, $2, $3) \
         ON CONFLICT (customer_id, kind, call_sid) DO NOTHING",
        &[&kind.as_str(), call_sid, &payload],
    )
    .await?;
    Ok(())
}

/// The tenants with due rows (ids only: `media.outbox_due_tenants()` is the worker's one
/// cross-tenant read). Runs in a service transaction.
pub async fn due_tenants(tx: &Tx<'_>) -> Result<Vec<CustomerId>, MediaError> {
    let rows = tx
        .query(
            "SELECT customer_id FROM media.outbox_due_tenants($1)",
            &[&DUE_TENANTS],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| CustomerId::new(r.get(0)).ok())
        .collect())
}

/// Claims up to a batch of the tenant's due rows: attempts + 1 and `next_attempt_at` pushed out
/// by `lease`, so a crash mid-delivery retries after it.
pub async fn claim(tx: &Tx<'_>, lease: Duration) -> Result<Vec<Claimed>, MediaError> {
    let lease_ms = lease.as_millis() as f64;
    let rows = tx
        .query(
            "UPDATE media.outbox SET attempts = attempts + 1, \
               next_attempt_at = now() + make_interval(secs => $1::float8 / 1000.0) \
             WHERE id IN (SELECT id FROM media.outbox \
                          WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now() \
                          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING id, call_sid, payload, attempts, kind",
            &[&lease_ms, &CLAIM_BATCH],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Claimed {
            id: OutboxId(r.get(0)),
            call_sid: r.get(1),
            payload: r.get(2),
            attempts: r.get(3),
            kind: r.get(4),
        })
        .collect())
}

/// Records a delivery.
pub async fn mark_delivered(tx: &Tx<'_>, id: OutboxId) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.outbox SET delivered_at = now(), last_error = NULL WHERE id = $1",
        &[&id.0],
    )
    .await?;
    Ok(())
}

/// Records a failed attempt: dead at once when `permanent`, else due again after `delay`.
pub async fn mark_failed(
    tx: &Tx<'_>,
    id: OutboxId,
    error: &str,
    permanent: bool,
    delay: Duration,
) -> Result<(), MediaError> {
    let delay_ms = delay.as_millis() as f64;
    tx.execute(
        "UPDATE media.outbox SET last_error = $2, \
           dead_at = CASE WHEN $3 THEN now() ELSE NULL END, \
           next_attempt_at = now() + make_interval(secs => $4::float8 / 1000.0) \
         WHERE id = $1",
        &[&id.0, &error, &permanent, &delay_ms],
    )
    .await?;
    Ok(())
}

/// Opens the savepoint the webhook event is written in.
pub async fn begin_event(tx: &Tx<'_>) -> Result<(), MediaError> {
    tx.batch_execute("SAVEPOINT webhook_event").await?;
    Ok(())
}

/// Keeps what was written since [`begin_event`].
pub async fn keep_event(tx: &Tx<'_>) -> Result<(), MediaError> {
    tx.batch_execute("RELEASE SAVEPOINT webhook_event").await?;
    Ok(())
}

/// Undoes what was written since [`begin_event`], and only that.
pub async fn undo_event(tx: &Tx<'_>) -> Result<(), MediaError> {
    tx.batch_execute("ROLLBACK TO SAVEPOINT webhook_event")
        .await?;
    Ok(())
}
