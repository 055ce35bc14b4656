//! V28's `tenant.offboardings`: a customer an operator offboarded (suspended at once, erased at
//! `erase_at` unless cancelled). Tenant data, read and written in the customer's own transaction;
//! the background task finds the due customers through the SECURITY DEFINER
//! `tenant.due_offboardings`, which returns ids only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;

use crate::error::Result;

/// A scheduled offboarding.
#[derive(Debug, Clone)]
pub struct Offboarding {
    /// Who asked (`operator:<id>`).
    pub requested_by: String,
    /// When the erasure runs.
    pub erase_at: DateTime<Utc>,
    /// When the task began it (then it can no longer be cancelled).
    pub started_at: Option<DateTime<Utc>>,
}

/// The current tenant's scheduled offboarding, if any.
pub async fn get(tx: &Tx<'_>, id: CustomerId) -> Result<Option<Offboarding>> {
    Ok(tx
        .query_opt(
            "SELECT requested_by, erase_at, started_at FROM tenant.offboardings WHERE customer_id = $1",
            &[&id],
        )
        .await?
        .map(|r| Offboarding {
            requested_by: r.get(0),
            erase_at: r.get(1),
            started_at: r.get(2),
        }))
}

/// Schedules the current tenant's erasure `grace` from now (or keeps an earlier schedule);
/// the erase time.
pub async fn schedule(
    tx: &Tx<'_>,
    id: CustomerId,
    by: &str,
    grace: Duration,
) -> Result<DateTime<Utc>> {
    Ok(tx
        .query_one(
            "INSERT INTO tenant.offboardings (customer_id, requested_by, erase_at) \
             VALUES ($1, $2, now() + $3::float8 * interval '1 second') \
             ON CONFLICT (customer_id) DO UPDATE \
             SET erase_at = least(tenant.offboardings.erase_at, excluded.erase_at) \
             RETURNING erase_at",
            &[&id, &by, &grace.as_secs_f64()],
        )
        .await?
        .get(0))
}

/// Cancels the current tenant's offboarding if its erasure has not begun; whether it did.
pub async fn cancel(tx: &Tx<'_>, id: CustomerId) -> Result<bool> {
    Ok(tx
        .execute(
            "DELETE FROM tenant.offboardings WHERE customer_id = $1 AND started_at IS NULL",
            &[&id],
        )
        .await?
        == 1)
}

/// Marks the current tenant's due offboarding as begun (no longer cancellable); whether it is
/// due (false: cancelled, or not yet due).
pub async fn begin(tx: &Tx<'_>, id: CustomerId) -> Result<bool> {
    Ok(tx
        .execute(
            "UPDATE tenant.offboardings SET started_at = coalesce(started_at, now()) \
             WHERE customer_id = $1 AND erase_at <= now()",
            &[&id],
        )
        .await?
        == 1)
}

/// Customers whose grace has passed (definer function; no tenant context).
pub async fn due(tx: &Tx<'_>, limit: i32) -> Result<Vec<CustomerId>> {
    Ok(tx
        .query(
            "SELECT customer_id FROM tenant.due_offboardings($1)",
            &[&limit],
        )
        .await?
        .iter()
        .filter_map(|r| r.try_get::<_, CustomerId>(0).ok())
        .collect())
}
