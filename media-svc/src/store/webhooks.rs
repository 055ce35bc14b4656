//! Post-call webhook events (`media.webhook_events`, migration V10): one per call, inserted with
//! its body fixed; claimed by the delivery worker under a lease; marked delivered, rescheduled or
//! dead (a dead letter), and requeued on request. Plus the database's caller-hash key.
//!
//! An event's state is in its timestamps: pending while `delivered_at` and `dead_at` are both
//! NULL, due when `next_attempt_at` has passed, dead once `dead_at` is set; [`EventState`] names
//! what a failed attempt leaves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::api::media::DeadLetter;
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};
use uuid::Uuid;

use super::timestamp;
use crate::error::MediaError;

/// Where an event stands, as its `delivered_at` / `dead_at` columns say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Still to be delivered (retried until `give_up_at`).
    Pending,
    /// Given up on: a dead letter until redelivered.
    Dead,
}

/// An event claimed for one delivery attempt.
#[derive(Debug)]
pub struct ClaimedEvent {
    /// The event.
    pub event_id: Uuid,
    /// The call it is about (for logs).
    pub call_sid: String,
    /// The body, signed and sent as it is.
    pub body: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// A new event, its body built.
pub struct NewEvent<'a> {
    /// Its id (also in the body).
    pub event_id: Uuid,
    /// The call.
    pub call_sid: &'a CallSid,
    /// The JSON body.
    pub body: &'a [u8],
    /// How long it is retried before it is dead-lettered.
    pub retry_for: Duration,
    /// When it was built (also in the body).
    pub created_at: DateTime<Utc>,
}

/// The database's caller-hash key (V10), used when no key is configured.
pub async fn caller_hash_key(tx: &Tx<'_>) -> Result<Vec<u8>, MediaError> {
    let row = tx
        .query_one("SELECT key FROM media.caller_hash_key", &[])
        .await?;
    Ok(row.get(0))
}

/// Whether the call already has its event.
pub async fn has_event(tx: &Tx<'_>, call_sid: &CallSid) -> Result<bool, MediaError> {
    let existing = tx
        .query_opt(
            "SELECT event_id FROM media.webhook_events WHERE call_sid = $1",
            &[call_sid],
        )
        .await?;
    Ok(existing.is_some())
}

/// Inserts the event unless the call already has one (UNIQUE `(customer_id, call_sid)`);
/// returns its id when it was inserted.
pub async fn insert_event(tx: &Tx<'_>, event: &NewEvent<'_>) -> Result<Option<Uuid>, MediaError> {
    let retry_for = event.retry_for.as_secs_f64();
    let inserted = tx
        .query_opt(
            "INSERT INTO media.webhook_events \
               (customer_id, event_id, call_sid, body, retry_for, give_up_at, created_at) \
             VALUES (app.current_customer_id(), $1, $2, $3, make_interval(secs => $4), \
                     $5::timestamptz + make_interval(secs => $4), $5) \
             ON CONFLICT (customer_id, call_sid) DO NOTHING RETURNING event_id",
            &[
                &event.event_id,
                &event.call_sid,
                &event.body,
                &retry_for,
                &event.created_at,
            ],
        )
        .await?;
    Ok(inserted.map(|r| r.get(0)))
}

/// The tenants with due events, at most `max` (ids only: `media.webhook_due_tenants()` is the
/// worker's one cross-tenant read). Runs in a service transaction.
pub async fn due_tenants(tx: &Tx<'_>, max: usize) -> Result<Vec<CustomerId>, MediaError> {
    let max = i32::try_from(max).unwrap_or(i32::MAX);
    let rows = tx
        .query(
            "SELECT customer_id FROM media.webhook_due_tenants($1)",
            &[&max],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| CustomerId::new(r.get(0)).ok())
        .collect())
}

/// Claims up to `limit` due events: attempts + 1 and `next_attempt_at` pushed out by `lease`.
pub async fn claim(
    tx: &Tx<'_>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<ClaimedEvent>, MediaError> {
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
            &[&lease.as_secs_f64(), &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ClaimedEvent {
            event_id: r.get(0),
            call_sid: r.get(1),
            body: r.get(2),
            attempts: r.get(3),
        })
        .collect())
}

/// Time until the tenant's next pending event is due (zero when one is due now).
pub async fn next_due_in(tx: &Tx<'_>) -> Result<Option<Duration>, MediaError> {
    let row = tx
        .query_one(
            "SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 \
             FROM media.webhook_events WHERE delivered_at IS NULL AND dead_at IS NULL",
            &[],
        )
        .await?;
    let secs: Option<f64> = row.get(0);
    Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// Records a delivery.
pub async fn mark_delivered(tx: &Tx<'_>, event_id: Uuid) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.webhook_events SET delivered_at = now(), last_error = NULL \
         WHERE event_id = $1",
        &[&event_id],
    )
    .await?;
    Ok(())
}

/// Records a failed attempt: dead when `permanent` or past `give_up_at`, else due again after
/// `delay` (never later than `give_up_at`). Returns the event's state afterwards.
pub async fn mark_failed(
    tx: &Tx<'_>,
    event_id: Uuid,
    error: &str,
    permanent: bool,
    delay: Duration,
) -> Result<EventState, MediaError> {
    let row = tx
        .query_one(
            "UPDATE media.webhook_events SET last_error = $2, \
               dead_at = CASE WHEN $3 OR now() >= give_up_at THEN now() END, \
               next_attempt_at = least(now() + make_interval(secs => $4), give_up_at) \
             WHERE event_id = $1 RETURNING dead_at IS NOT NULL",
            &[&event_id, &error, &permanent, &delay.as_secs_f64()],
        )
        .await?;
    Ok(if row.get(0) {
        EventState::Dead
    } else {
        EventState::Pending
    })
}

/// A position in the dead-letter list: (dead_at, event_id).
pub type DeadLetterCursor = (DateTime<Utc>, Uuid);

/// One page of the tenant's dead letters, newest dead first, and the position after its last
/// row when another page exists.
pub async fn list_dead_letters(
    tx: &Tx<'_>,
    after: Option<DeadLetterCursor>,
    limit: i64,
) -> Result<(Vec<DeadLetter>, Option<DeadLetterCursor>), MediaError> {
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
            create_time: Some(timestamp(r.get(4))),
            dead_time: Some(timestamp(r.get(5))),
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
