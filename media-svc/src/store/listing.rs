//! Reading a tenant's calls in bulk: the `ListCalls` page (filters on time, caller, status and
//! direction, keyset pagination on `calls_newest_idx`) and the dashboard's figures
//! (`GetCallStats`), counted in SQL over one range of `calls_created_covering` (V18) in the
//! tenant's time zone.

use chrono::{DateTime, Utc};
use mesh::api::media::{CallDirection, CallStatus, DailyCalls};
use mesh::db::Tx;
use mesh::domain::{CallSid, CallerNumber, CustomerId};
use tokio_postgres::types::{ToSql, Type};

use super::CallRow;
use super::calls::CALL_COLUMNS;
use super::limits::calls_in_progress;
use crate::error::MediaError;

/// Filters and page of `ListCalls`.
pub struct ListFilter {
    /// Created at or after.
    pub start: Option<DateTime<Utc>>,
    /// Created before.
    pub end: Option<DateTime<Utc>>,
    /// From this caller.
    pub caller: Option<CallerNumber>,
    /// In this status.
    pub status: Option<CallStatus>,
    /// In this direction.
    pub direction: Option<CallDirection>,
    /// Continue after this (created_at, call_sid).
    pub after: Option<(DateTime<Utc>, CallSid)>,
    /// Page size.
    pub limit: i64,
}

/// Calls newest first; one more than `limit` is fetched to know whether a next page exists.
pub async fn list_calls(tx: &Tx<'_>, f: &ListFilter) -> Result<(Vec<CallRow>, bool), MediaError> {
    let (after_time, after_sid) = match &f.after {
        Some((t, s)) => (Some(*t), Some(s.as_str())),
        None => (None, None),
    };
    let rows = tx
        .query(
            &format!(
                "SELECT {CALL_COLUMNS} FROM media.calls \
                 WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
                   AND ($2::timestamptz IS NULL OR created_at < $2) \
                   AND ($3::text IS NULL OR caller = $3) \
                   AND ($4::smallint IS NULL OR status = $4) \
                   AND ($8::smallint IS NULL OR direction = $8) \
                   AND ($5::timestamptz IS NULL OR (created_at, call_sid) < ($5, $6::text)) \
                 ORDER BY created_at DESC, call_sid DESC LIMIT $7"
            ),
            &[
                &f.start,
                &f.end,
                &f.caller,
                &f.status.map(|s| s as i32 as i16),
                &after_time,
                &after_sid,
                &(f.limit + 1),
                &f.direction.map(|d| d as i32 as i16),
            ],
        )
        .await?;
    let mut calls = CallRow::from_rows(&rows)?;
    let more = calls.len() as i64 > f.limit;
    calls.truncate(f.limit as usize);
    Ok((calls, more))
}

/// The dashboard's figures (see `GetCallStatsResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls since local midnight.
    pub today: i64,
    /// Calls since local Monday midnight.
    pub this_week: i64,
    /// Billed minutes of the calls since the first of the local month.
    pub minutes_this_month: i64,
    /// Calls not final yet.
    pub in_progress: i64,
    /// The last 30 local days, oldest first.
    pub days: Vec<DailyCalls>,
}

/// Local midnights of today, this Monday and the first of the month, as instants (PostgreSQL's
/// `AT TIME ZONE` resolves a midnight that a daylight-saving change skips).
const BOUNDS: &str = "WITH z AS (SELECT (now() AT TIME ZONE $1)::date AS d), \
     b AS (SELECT d::timestamp AT TIME ZONE $1 AS from_today, \
                  date_trunc('week', d::timestamp) AT TIME ZONE $1 AS from_week, \
                  date_trunc('month', d::timestamp) AT TIME ZONE $1 AS from_month \
           FROM z) ";

/// Counts the dashboard's figures in `time_zone` (an IANA name the caller validated).
pub async fn call_stats(
    tx: &Tx<'_>,
    customer: CustomerId,
    time_zone: &str,
) -> Result<CallStats, MediaError> {
    let params: [(&(dyn ToSql + Sync), Type); 2] =
        [(&time_zone, Type::TEXT), (&customer, Type::INT8)];
    let totals = format!(
        "{BOUNDS}SELECT count(*) FILTER (WHERE c.created_at >= b.from_today), \
                count(*) FILTER (WHERE c.created_at >= b.from_week), \
                coalesce(sum((c.duration_seconds + 59) / 60) \
                         FILTER (WHERE c.created_at >= b.from_month), 0) \
         FROM b JOIN media.calls c \
           ON c.customer_id = $2 AND c.created_at >= least(b.from_week, b.from_month)"
    );
    let per_day = "WITH z AS (SELECT (now() AT TIME ZONE $1)::date AS d), \
         days AS (SELECT z.d - i AS day FROM z, generate_series(0, 29) AS i), \
         per AS (SELECT (c.created_at AT TIME ZONE $1)::date AS day, count(*) AS calls, \
                        sum((c.duration_seconds + 59) / 60) AS minutes \
                 FROM z JOIN media.calls c \
                   ON c.customer_id = $2 AND c.created_at >= (z.d - 29)::timestamp AT TIME ZONE $1 \
                 GROUP BY 1) \
         SELECT to_char(days.day, 'YYYY-MM-DD'), coalesce(per.calls, 0), coalesce(per.minutes, 0) \
         FROM days LEFT JOIN per USING (day) ORDER BY days.day";
    let (totals, days, in_progress) = futures::try_join!(
        async { Ok::<_, MediaError>(tx.query_typed(&totals, &params).await?) },
        async { Ok::<_, MediaError>(tx.query_typed(per_day, &params).await?) },
        calls_in_progress(tx, customer, false),
    )?;
    let totals = totals
        .first()
        .ok_or_else(|| MediaError::Internal("call stats returned no row".into()))?;
    Ok(CallStats {
        today: totals.get(0),
        this_week: totals.get(1),
        minutes_this_month: totals.get(2),
        in_progress,
        days: days
            .iter()
            .map(|r| DailyCalls {
                date: r.get(0),
                calls: r.get(1),
                minutes: r.get(2),
            })
            .collect(),
    })
}
