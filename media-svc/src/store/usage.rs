//! Monthly usage (`media.usage_monthly`): calls, seconds and billed minutes per tenant and month,
//! each call counted once (`media.calls.usage_counted`) whichever path ends it first.

use chrono::{Datelike as _, NaiveDate, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;

use super::CallRow;
use crate::error::MediaError;

/// Usage of one month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Calls that ended in the month.
    pub calls: i64,
    /// Billed minutes (each call rounded up).
    pub minutes: i64,
    /// Seconds.
    pub seconds: i64,
    /// Recorded seconds (V21).
    pub recorded_seconds: i64,
    /// Recorded minutes (each call's recording rounded up).
    pub recorded_minutes: i64,
}

/// Adds an ended call to its month's usage, once.
pub(super) async fn count_usage(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &mut CallRow,
) -> Result<(), MediaError> {
    if call.usage_counted {
        return Ok(());
    }
    let ended = call.ended_at.unwrap_or_else(Utc::now);
    let month = NaiveDate::from_ymd_opt(ended.year(), ended.month(), 1).expect("valid month");
    let seconds = i64::from(call.duration_seconds.max(0));
    let minutes = (seconds + 59) / 60;
    tx.execute(
        "INSERT INTO media.usage_monthly (customer_id, month, total_calls, total_seconds, total_minutes) \
         VALUES ($1, $2, 1, $3, $4) \
         ON CONFLICT (customer_id, month) DO UPDATE SET \
           total_calls = media.usage_monthly.total_calls + 1, \
           total_seconds = media.usage_monthly.total_seconds + EXCLUDED.total_seconds, \
           total_minutes = media.usage_monthly.total_minutes + EXCLUDED.total_minutes",
        &[&customer, &month, &seconds, &minutes],
    )
    .await?;
    tx.execute(
        "UPDATE media.calls SET usage_counted = true WHERE call_sid = $1",
        &[&call.call_sid],
    )
    .await?;
    call.usage_counted = true;
    Ok(())
}

/// Usage of one month (zero when nothing was counted).
pub async fn usage(tx: &Tx<'_>, month: NaiveDate) -> Result<Usage, MediaError> {
    let row = tx
        .query_opt(
            "SELECT total_calls, total_minutes, total_seconds, recorded_seconds, recorded_minutes \
             FROM media.usage_monthly WHERE month = $1",
            &[&month],
        )
        .await?;
    Ok(row.map_or(Usage::default(), |r| Usage {
        calls: r.get(0),
        minutes: r.get(1),
        seconds: r.get(2),
        recorded_seconds: r.get(3),
        recorded_minutes: r.get(4),
    }))
}
