//! `memory.erasures` (migration V15): when a caller, or a whole tenant, was last erased, so a
//! post-call record of a call that began before that erasure is dropped instead of putting the
//! caller's memory back. Keyed by the audit hash of the caller (`''` for the tenant): no number.
//!
//! Erasing a caller and recording one of their calls both take [`lock_caller`] first (a tenant's
//! erasure [`lock_tenant`]), so the two transactions run one after the other: a record that committed first is deleted by the erase,
//! and a record that comes second sees the marker.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::{CallerNumber, CustomerId};

use crate::error::Result;

/// The marker's subject for a whole tenant.
pub const TENANT: &str = "";

/// Serialises the erase of one caller with the recording of their calls: transaction-scoped
/// advisory locks (released at commit or rollback), the tenant's shared (see [`lock_tenant`])
/// then the caller's exclusive.
pub async fn lock_caller(tx: &Tx<'_>, customer: CustomerId, user: &CallerNumber) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('memory.tenant:' || $1::bigint::text, 0)), \
                pg_advisory_xact_lock(hashtextextended('memory.caller:' || $1::bigint::text || ':' || $2::text, 0))",
        &[&customer, user],
    )
    .await?;
    Ok(())
}

/// Serialises a tenant's erasure with every recording of its calls (the tenant's advisory lock,
/// exclusive; recordings hold it shared).
pub async fn lock_tenant(tx: &Tx<'_>, customer: CustomerId) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('memory.tenant:' || $1::bigint::text, 0))",
        &[&customer],
    )
    .await?;
    Ok(())
}

/// Records that `subject_hash` (or [`TENANT`]) was erased now; returns that time.
pub async fn mark_erased(
    tx: &Tx<'_>,
    customer: CustomerId,
    subject_hash: &str,
) -> Result<DateTime<Utc>> {
    let row = tx
        .query_one(
            "INSERT INTO memory.erasures (customer_id, subject_hash, erased_at) \
             VALUES ($1, $2, now()) \
             ON CONFLICT (customer_id, subject_hash) DO UPDATE SET erased_at = EXCLUDED.erased_at \
             RETURNING erased_at",
            &[&customer, &subject_hash],
        )
        .await?;
    Ok(row.get(0))
}

/// When the caller or the whole tenant was last erased (the later of the two), if ever.
pub async fn erased_at(
    tx: &Tx<'_>,
    customer: CustomerId,
    subject_hash: &str,
) -> Result<Option<DateTime<Utc>>> {
    let row = tx
        .query_one(
            "SELECT max(erased_at) FROM memory.erasures \
             WHERE customer_id = $1 AND subject_hash IN ($2, '')",
            &[&customer, &subject_hash],
        )
        .await?;
    Ok(row.get(0))
}
