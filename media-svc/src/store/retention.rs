//! What the retention task (`crate::retention`) reads and deletes: the tenants that have calls
//! older than the shortest retention (`media.retention_tenants`, V22, ids only, in a service
//! transaction under the round's advisory lock), then per tenant, inside that tenant's own
//! transaction, the transcript turns of its calls older than the tenant's retention.
//! Recordings are deleted through `Recordings::delete` (object, spool and row); the id lists
//! here serve retention, caller erasure and export, and tenant erasure.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};
use uuid::Uuid;

use crate::error::MediaError;

/// The key of the advisory lock one replica's round holds (`pg_try_advisory_xact_lock`), so
/// that one replica runs retention at a time. Arbitrary, fixed: "retn" in ASCII.
const LOCK_KEY: i64 = 0x7265_746e;

/// Takes the round's lock for the rest of `tx` (a service transaction); false when another
/// replica holds it.
pub async fn try_lock(tx: &Tx<'_>) -> Result<bool, MediaError> {
    Ok(tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?
        .get(0))
}

/// Keeps the lock's transaction from counting as idle (the pool's idle-in-transaction timeout)
/// between two tenants.
pub async fn keep_alive(tx: &Tx<'_>) -> Result<(), MediaError> {
    tx.execute("SELECT 1", &[]).await?;
    Ok(())
}

/// Tenants with a call created before `older_than`, at most `max` (ids only).
pub async fn tenants(
    tx: &Tx<'_>,
    older_than: DateTime<Utc>,
    max: i32,
) -> Result<Vec<CustomerId>, MediaError> {
    let rows = tx
        .query(
            "SELECT customer_id FROM media.retention_tenants($1, $2)",
            &[&older_than, &max],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| CustomerId::new(r.get(0)).ok())
        .collect())
}

/// Deletes up to `batch` transcript turns of the current tenant's calls created before
/// `cutoff`; returns how many went.
pub async fn delete_expired_turns(
    tx: &Tx<'_>,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> Result<u64, MediaError> {
    Ok(tx
        .execute(
            "DELETE FROM media.transcript_turns t \
             WHERE (t.customer_id, t.call_sid, t.seq) IN ( \
               SELECT u.customer_id, u.call_sid, u.seq FROM media.transcript_turns u \
               JOIN media.calls c ON c.customer_id = u.customer_id AND c.call_sid = u.call_sid \
               WHERE c.created_at < $1 LIMIT $2)",
            &[&cutoff, &batch],
        )
        .await?)
}

/// Ids of the current tenant's finished recordings of calls created before `cutoff`, oldest
/// first, at most `limit`.
pub async fn expired_recordings(
    tx: &Tx<'_>,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Uuid>, MediaError> {
    let rows = tx
        .query(
            "SELECT r.id FROM media.recordings r \
             JOIN media.calls c ON c.customer_id = r.customer_id AND c.call_sid = r.call_sid \
             WHERE c.created_at < $1 AND r.state <> 'recording' \
             ORDER BY r.started_at LIMIT $2",
            &[&cutoff, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Ids of the current tenant's recordings of `caller`'s calls (caller erasure and export).
pub async fn caller_recordings(
    tx: &Tx<'_>,
    caller: &CallerNumber,
) -> Result<Vec<Uuid>, MediaError> {
    let rows = tx
        .query(
            "SELECT r.id FROM media.recordings r \
             JOIN media.calls c ON c.customer_id = r.customer_id AND c.call_sid = r.call_sid \
             WHERE c.caller = $1 ORDER BY r.started_at",
            &[caller],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Ids of every recording of the current tenant (tenant erasure).
pub async fn tenant_recordings(tx: &Tx<'_>) -> Result<Vec<Uuid>, MediaError> {
    let rows = tx
        .query("SELECT id FROM media.recordings ORDER BY started_at", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
