//! Webhook events (`media.webhook_events`, migrations V10 and V23): at most one per call and
//! type (`call.completed`, `message.created`), inserted with its body fixed; claimed by the delivery worker under a lease; marked delivered, rescheduled or
//! dead (a dead letter), and requeued on request. Plus the database's caller-hash key.
//!
//! An event's state is in its timestamps: pending while `delivered_at` and `dead_at` are both
//! NULL, due when `next_attempt_at` has passed, dead once `dead_at` is set; [`EventState`] names
//! what a failed attempt leaves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::api::media::{DeadLetter, WebhookDelivery, WebhookDeliveryState};
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

/// An event's type: the text of `media.webhook_events.event_type`, also the body's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The post-call event (V10's, unchanged).
    CallCompleted,
    /// A callback task was created (V23).
    MessageCreated,
    /// A monthly cap of the tenant's package is 80 % used (V33).
    UsageWarning,
}

impl EventType {
    /// The column's (and the body's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallCompleted => "call.completed",
            Self::MessageCreated => "message.created",
            Self::UsageWarning => "usage.warning",
        }
    }
}

/// An event claimed for one delivery attempt.
#[derive(Debug)]
pub struct ClaimedEvent {
    /// The event.
    pub event_id: Uuid,
    /// The call it is about (for logs; empty for an event without a call).
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
    /// Its type.
    pub event_type: EventType,
    /// The call, when it is about one.
    pub call_sid: Option<&'a CallSid>,
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

/// Whether the call already has its event of this type.
pub async fn has_event(
    tx: &Tx<'_>,
    event_type: EventType,
    call_sid: &CallSid,
) -> Result<bool, MediaError> {
    let existing = tx
        .query_opt(
            "SELECT event_id FROM media.webhook_events WHERE call_sid = $1 AND event_type = $2",
            &[call_sid, &event_type.as_str()],
        )
        .await?;
    Ok(existing.is_some())
}

/// Inserts the event unless the call already has one of its type (UNIQUE `(customer_id,
/// event_type, call_sid)`); returns its id when it was inserted.
pub async fn insert_event(tx: &Tx<'_>, event: &NewEvent<'_>) -> Result<Option<Uuid>, MediaError> {
    let retry_for = event.retry_for.as_secs_f64();
    let inserted = tx
        .query_opt(
            "INSERT INTO media.webhook_events \
               (customer_id, event_id, call_sid, body, retry_for, give_up_at, created_at, \
                event_type) \
             VALUES (app.current_customer_id(), $1, $2, $3, make_interval(secs => $4), \
                     $5::timestamptz + make_interval(secs => $4), $5, $6) \
             ON CONFLICT (customer_id, event_type, call_sid) DO NOTHING RETURNING event_id",
            &[
                &event.event_id,
                &event.call_sid,
                &event.body,
                &retry_for,
                &event.created_at,
                &event.event_type.as_str(),
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
             RETURNING event_id, coalesce(call_sid, ''), body, attempts",
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

/// An HTTP status as stored (`smallint`, 100-599); anything else is stored as no answer.
fn response_code(status: Option<u16>) -> Option<i16> {
    status
        .filter(|s| (100..=599).contains(s))
        .and_then(|s| i16::try_from(s).ok())
}

/// Records a delivery and the receiver's status.
pub async fn mark_delivered(tx: &Tx<'_>, event_id: Uuid, status: u16) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.webhook_events SET delivered_at = now(), last_error = NULL, \
           last_response_code = $2, last_attempt_at = now() \
         WHERE event_id = $1",
        &[&event_id, &response_code(Some(status))],
    )
    .await?;
    Ok(())
}

/// A failed attempt: what went wrong, and the receiver's status when it answered.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// Short, secret-free description.
    pub error: &'a str,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Dead at once.
    pub permanent: bool,
}

/// Records a failed attempt: dead when permanent or past `give_up_at`, else due again after
/// `delay` (never later than `give_up_at`). Returns the event's state afterwards.
pub async fn mark_failed(
    tx: &Tx<'_>,
    event_id: Uuid,
    failure: Failure<'_>,
    delay: Duration,
) -> Result<EventState, MediaError> {
    let row = tx
        .query_one(
            "UPDATE media.webhook_events SET last_error = $2, \
               dead_at = CASE WHEN $3 OR now() >= give_up_at THEN now() END, \
               next_attempt_at = least(now() + make_interval(secs => $4), give_up_at), \
               last_response_code = $5, last_attempt_at = now() \
             WHERE event_id = $1 RETURNING dead_at IS NOT NULL",
            &[
                &event_id,
                &failure.error,
                &failure.permanent,
                &delay.as_secs_f64(),
                &response_code(failure.status),
            ],
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
            "SELECT event_id, coalesce(call_sid, ''), attempts, coalesce(last_error, ''), \
                    created_at, dead_at \
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

/// A position in the deliveries list: (created_at, event_id).
pub type DeliveryCursor = (DateTime<Utc>, Uuid);

/// One page of the tenant's webhook events, newest first, and the position after its last row
/// when another page exists.
pub async fn list_deliveries(
    tx: &Tx<'_>,
    after: Option<DeliveryCursor>,
    limit: i64,
) -> Result<(Vec<WebhookDelivery>, Option<DeliveryCursor>), MediaError> {
    let (after_time, after_id) = after.unzip();
    let rows = tx
        .query(
            "SELECT event_id, coalesce(call_sid, ''), attempts, \
                    coalesce(last_response_code, 0)::int4, coalesce(last_error, ''), created_at, \
                    last_attempt_at, delivered_at, dead_at, event_type \
             FROM media.webhook_events \
             WHERE $1::timestamptz IS NULL OR (created_at, event_id) < ($1, $2::uuid) \
             ORDER BY created_at DESC, event_id DESC LIMIT $3",
            &[&after_time, &after_id, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some((last.get(5), last.get(0))),
        _ => None,
    };
    let deliveries = rows
        .iter()
        .map(|r| {
            let delivered: Option<DateTime<Utc>> = r.get(7);
            let dead: Option<DateTime<Utc>> = r.get(8);
            let state = match (delivered, dead) {
                (Some(_), _) => WebhookDeliveryState::Delivered,
                (None, Some(_)) => WebhookDeliveryState::Dead,
                (None, None) => WebhookDeliveryState::Pending,
            };
            WebhookDelivery {
                event_id: r.get::<_, Uuid>(0).to_string(),
                call_sid: r.get(1),
                state: state as i32,
                attempts: r.get(2),
                last_response_code: r.get(3),
                last_error: r.get(4),
                create_time: Some(timestamp(r.get(5))),
                last_attempt_time: r.get::<_, Option<DateTime<Utc>>>(6).map(timestamp),
                finish_time: delivered.or(dead).map(timestamp),
                event_type: r.get(9),
            }
        })
        .collect();
    Ok((deliveries, next))
}

/// Per customer, how many webhook events are dead letters (V28's definer function: ids and
/// counts only; no tenant context).
pub async fn dead_letter_counts(tx: &Tx<'_>) -> Result<Vec<(i64, i64)>, MediaError> {
    Ok(tx
        .query(
            "SELECT customer_id, dead FROM media.dead_letter_counts()",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
