//! The statements behind the per-tenant call limits (see [`crate::outbound`] for why they are
//! shaped this way): the advisory lock that serialises counting and adding a call, the count of
//! calls in progress, the rolling-hour count of outbound calls, the short-lived reservations
//! (`media.outbound_reservations`) that hold a slot while Twilio is asked, and the per-address
//! charges of the public endpoint (`media.outbound_address_charges`, V14).

use mesh::api::media::{CallDirection, CallStatus};
use mesh::db::Tx;
use mesh::domain::CustomerId;
use tokio_postgres::types::Type;

use crate::error::MediaError;

/// How long a reservation of a call being placed counts towards the limits. Longer than the
/// whole Twilio request (10 s), short enough that one left behind by a crash blocks nothing for
/// long.
pub const RESERVATION_TTL_SECS: i64 = 60;

/// Calls created longer ago than this no longer count as in progress, so a call whose end never
/// reached us cannot block its tenant forever.
pub const IN_PROGRESS_WINDOW_HOURS: i64 = 4;

/// The id of a reservation row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationId(i64);

/// Takes the tenant's call-limit lock until the end of the transaction. Every path that counts
/// calls and then adds one (PlaceOutboundCall's reservation, RegisterCall's insert) holds it, so
/// two of them never both see the last free slot. The key is a 64-bit hash of a media-specific
/// name seeded with the tenant id: another tenant colliding with it would only wait, never
/// miscount.
pub async fn lock_call_limits(tx: &Tx<'_>, customer: CustomerId) -> Result<(), MediaError> {
    tx.query_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended('media.call_limits', $1))",
        &[(&customer, Type::INT8)],
    )
    .await?;
    Ok(())
}

/// The tenant's calls in progress: not final, created in the last [`IN_PROGRESS_WINDOW_HOURS`],
/// not taking a message (those are bounded by their own caps, [`super::message_calls`], and use
/// no agent, so a busy tenant's callers leaving messages never keep a freed slot from a normal
/// call), plus (when `with_reservations`) the outbound calls being placed right now.
pub async fn calls_in_progress(
    tx: &Tx<'_>,
    customer: CustomerId,
    with_reservations: bool,
) -> Result<i64, MediaError> {
    let rows = tx
        .query_typed(
            &format!(
                "SELECT (SELECT count(*) FROM media.calls \
                         WHERE customer_id = $1 AND status < {first_final} AND message_flow IS NULL \
                           AND created_at > now() - interval '{IN_PROGRESS_WINDOW_HOURS} hours') \
                      + (SELECT count(*) FROM media.outbound_reservations \
                         WHERE $2 AND customer_id = $1 \
                           AND created_at > now() - interval '{RESERVATION_TTL_SECS} seconds')",
                first_final = CallStatus::Completed as i32,
            ),
            &[(&customer, Type::INT8), (&with_reservations, Type::BOOL)],
        )
        .await?;
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

/// Outbound calls placed in the last rolling hour (calls with direction OUTBOUND_API plus live
/// reservations), and, when there are `limit` or more, the seconds until enough of them leave
/// the window for one more call to fit.
pub async fn outbound_last_hour(
    tx: &Tx<'_>,
    customer: CustomerId,
    limit: i64,
) -> Result<(i64, Option<u64>), MediaError> {
    let window = format!(
        "SELECT created_at FROM media.calls \
         WHERE customer_id = $1 AND direction = {outbound} AND created_at > now() - interval '1 hour' \
         UNION ALL \
         SELECT created_at FROM media.outbound_reservations \
         WHERE customer_id = $1 AND created_at > now() - interval '{RESERVATION_TTL_SECS} seconds'",
        outbound = CallDirection::OutboundApi as i32,
    );
    let placed: i64 = tx
        .query_one(&format!("SELECT count(*) FROM ({window}) w"), &[&customer])
        .await?
        .get(0);
    if placed < limit {
        return Ok((placed, None));
    }
    // With `placed - limit + 1` calls leaving, one more fits: the one at offset `placed - limit`
    // in age order is the last of them to leave.
    let row = tx
        .query_opt(
            &format!(
                "SELECT ceil(extract(epoch FROM (created_at + interval '1 hour' - now())))::bigint \
                 FROM ({window}) w ORDER BY created_at OFFSET $2 LIMIT 1"
            ),
            &[&customer, &(placed - limit)],
        )
        .await?;
    let secs = row.map_or(1, |r| r.get::<_, i64>(0)).max(1);
    Ok((placed, Some(u64::try_from(secs).unwrap_or(1))))
}

/// Reserves a slot for an outbound call being placed (and drops this tenant's stale
/// reservations); returns the reservation's id. Call with the limit lock held.
pub async fn reserve_outbound(
    tx: &Tx<'_>,
    customer: CustomerId,
) -> Result<ReservationId, MediaError> {
    tx.execute(
        &format!(
            "DELETE FROM media.outbound_reservations \
             WHERE customer_id = $1 AND created_at <= now() - interval '{RESERVATION_TTL_SECS} seconds'"
        ),
        &[&customer],
    )
    .await?;
    let row = tx
        .query_one(
            "INSERT INTO media.outbound_reservations (customer_id) VALUES ($1) RETURNING id",
            &[&customer],
        )
        .await?;
    Ok(ReservationId(row.get(0)))
}

/// Drops a reservation (the call was refused or failed, or is now stored).
pub async fn release_reservation(
    tx: &Tx<'_>,
    customer: CustomerId,
    reservation: ReservationId,
) -> Result<(), MediaError> {
    tx.execute(
        "DELETE FROM media.outbound_reservations WHERE customer_id = $1 AND id = $2",
        &[&customer, &reservation.0],
    )
    .await?;
    Ok(())
}

/// Calls charged to one address hash for this tenant within `window`, and, when there are
/// `limit` or more, the seconds until the oldest counted one leaves the window. Call with the
/// limit lock held.
pub async fn address_charges(
    tx: &Tx<'_>,
    customer: CustomerId,
    hash: &[u8; 32],
    window: std::time::Duration,
    limit: i64,
) -> Result<(i64, Option<u64>), MediaError> {
    let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            "WITH w AS (SELECT created_at FROM media.outbound_address_charges \
                        WHERE customer_id = $1 AND address_hash = $2 \
                          AND created_at > now() - make_interval(secs => $3::bigint)) \
             SELECT count(*), \
                    (SELECT ceil(extract(epoch FROM (created_at + make_interval(secs => $3::bigint) - now())))::bigint \
                     FROM w ORDER BY created_at DESC OFFSET greatest($4::bigint - 1, 0) LIMIT 1) \
             FROM w",
            &[&customer, &&hash[..], &window_secs, &limit],
        )
        .await?;
    let used: i64 = row.get(0);
    if used < limit {
        return Ok((used, None));
    }
    let secs = row.get::<_, Option<i64>>(1).unwrap_or(1).max(1);
    Ok((used, Some(u64::try_from(secs).unwrap_or(1))))
}

/// Charges one call to an address hash (and drops this tenant's charges older than `window`).
/// Call with the limit lock held.
pub async fn charge_address(
    tx: &Tx<'_>,
    customer: CustomerId,
    hash: &[u8; 32],
    window: std::time::Duration,
) -> Result<(), MediaError> {
    let window_secs = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    tx.execute(
        "DELETE FROM media.outbound_address_charges \
         WHERE customer_id = $1 AND created_at <= now() - make_interval(secs => $2::bigint)",
        &[&customer, &window_secs],
    )
    .await?;
    tx.execute(
        "INSERT INTO media.outbound_address_charges (customer_id, address_hash) VALUES ($1, $2)",
        &[&customer, &&hash[..]],
    )
    .await?;
    Ok(())
}
