//! The caps on message-taking calls, counted in PostgreSQL so they hold across media-svc
//! replicas (V24). A call holds a place while it is live (status before COMPLETED) and its
//! `message_flow_at` is within [`PLACE_WINDOW_SECS`]; the tenant's places are counted in its own
//! transaction (RLS), everyone's through `media.message_calls_in_progress` (SECURITY DEFINER, a
//! count only). Counting and taking a place happen under one advisory transaction lock
//! ([`lock`]), so two replicas never both take the last place.

use mesh::api::media::CallStatus;
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId};
use tokio_postgres::types::Type;

use super::callback_tasks::Reason;
use crate::error::MediaError;

/// How long a message-taking call holds its place at most: a message call lasts the prompt plus
/// the tenant's `message_max_seconds` (at most 300 s), so a live row older than this was left
/// behind by a replica that died mid-call and must not hold a place forever.
pub const PLACE_WINDOW_SECS: i64 = 600;

/// The caps: message-taking calls per tenant and platform-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Per tenant (`MEDIA_MESSAGE_CALLS_PER_TENANT`).
    pub per_tenant: u32,
    /// All tenants together (`MEDIA_MESSAGE_CALLS_MAX`).
    pub platform: u32,
}

/// What a check under the caps found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Under both caps: the place is taken (or was already held by this call).
    Taken,
    /// At a cap: the tenant's and the platform's message-taking calls in progress.
    Full {
        /// This tenant's.
        tenant: i64,
        /// Everyone's.
        platform: i64,
    },
}

/// Takes the platform-wide message-call lock until the end of the transaction. Every check and
/// mark of a place holds it. A path that also holds the tenant's call-limit lock
/// (`RegisterCall`) takes that one first; no path takes them the other way round.
pub async fn lock(tx: &Tx<'_>) -> Result<(), MediaError> {
    tx.query_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended('media.message_calls', 0))",
        &[],
    )
    .await?;
    Ok(())
}

/// The tenant's and the platform's message-taking calls in progress. Call with [`lock`] held.
pub async fn in_progress(tx: &Tx<'_>, customer: CustomerId) -> Result<(i64, i64), MediaError> {
    let row = tx
        .query_typed(
            &format!(
                "SELECT (SELECT count(*) FROM media.calls \
                         WHERE customer_id = $1 AND message_flow_at IS NOT NULL \
                           AND message_flow_at > now() - interval '{PLACE_WINDOW_SECS} seconds' \
                           AND status < {completed}), \
                        media.message_calls_in_progress(now() - interval '{PLACE_WINDOW_SECS} seconds')",
                completed = CallStatus::Completed as i32,
            ),
            &[(&customer, Type::INT8)],
        )
        .await?;
    Ok(row.first().map_or((0, 0), |r| (r.get(0), r.get(1))))
}

/// Whether both counts are under their caps.
pub fn fits(caps: Caps, tenant: i64, platform: i64) -> bool {
    tenant < i64::from(caps.per_tenant) && platform < i64::from(caps.platform)
}

/// Marks the call as taking messages for `reason` from now: it holds a place. A call already
/// marked keeps its first reason and time. Call with [`lock`] held.
pub async fn mark(tx: &Tx<'_>, call_sid: &CallSid, reason: Reason) -> Result<(), MediaError> {
    tx.execute(
        "UPDATE media.calls SET message_flow = coalesce(message_flow, $2), \
           message_flow_at = coalesce(message_flow_at, now()) \
         WHERE call_sid = $1",
        &[call_sid, &reason.as_str()],
    )
    .await?;
    Ok(())
}

/// Whether this call already holds a place (it was answered for the message flow at
/// `RegisterCall`, or a switch on another replica took one).
async fn holds_place(tx: &Tx<'_>, call_sid: &CallSid) -> Result<bool, MediaError> {
    let row = tx
        .query_opt(
            "SELECT message_flow_at IS NOT NULL FROM media.calls WHERE call_sid = $1",
            &[call_sid],
        )
        .await?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// A running call switching to the message flow: under the lock, takes a place for it when both
/// counts are under the caps (or it holds one already).
pub async fn take(
    tx: &Tx<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    reason: Reason,
    caps: Caps,
) -> Result<Place, MediaError> {
    lock(tx).await?;
    if holds_place(tx, call_sid).await? {
        return Ok(Place::Taken);
    }
    let (tenant, platform) = in_progress(tx, customer).await?;
    if !fits(caps, tenant, platform) {
        return Ok(Place::Full { tenant, platform });
    }
    mark(tx, call_sid, reason).await?;
    Ok(Place::Taken)
}
