//! `memory.call_summaries` and recording a finished call: the summary (idempotent on the
//! CallSid) and, only when it is new, the call's personality row, the profile's counters and the
//! averages, all in the caller's one transaction so a redelivered or concurrent RecordCall
//! changes nothing twice.

use chrono::{DateTime, Utc};
use mesh::api::memory::CallSummary;
use mesh::db::Tx;
use mesh::domain::{CallSid, CallerNumber, CustomerId};
use serde_json::Value as Json;

use super::personality;
use super::rows::{self, SUMMARY_COLS};
use crate::error::{MemoryError, Result};
use crate::summarizer::CallAnalysis;

/// A finished call to record.
pub struct CallRecord<'a> {
    /// Caller.
    pub user: &'a CallerNumber,
    /// The call.
    pub call: &'a CallSid,
    /// When it happened (also when its scores were measured).
    pub at: DateTime<Utc>,
    /// Seconds.
    pub duration_seconds: i32,
    /// The summarizer's analysis.
    pub analysis: &'a CallAnalysis,
}

/// A stored summary by CallSid.
pub async fn get_summary(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &CallSid,
) -> Result<Option<CallSummary>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {SUMMARY_COLS} FROM memory.call_summaries \
                 WHERE customer_id = $1 AND call_sid = $2"
            ),
            &[&customer, call],
        )
        .await?;
    Ok(rows.first().map(rows::summary))
}

/// Records a call (see the module docs). Returns the summary and whether it was already
/// recorded.
pub async fn record_call(
    tx: &Tx<'_>,
    customer: CustomerId,
    rec: &CallRecord<'_>,
) -> Result<(CallSummary, bool)> {
    let Some(summary) = insert_summary(tx, customer, rec).await? else {
        // Recorded before (possibly concurrently): change nothing, answer with the stored one.
        let existing = get_summary(tx, customer, rec.call)
            .await?
            .ok_or_else(|| MemoryError::Internal("conflicting summary vanished".into()))?;
        return Ok((existing, true));
    };
    personality::insert_metrics(tx, customer, rec).await?;
    count_call(tx, customer, rec).await?;
    personality::refresh_averages(tx, customer, rec.user).await?;
    Ok((summary, false))
}

/// Inserts the summary; `None` when this CallSid already has one.
async fn insert_summary(
    tx: &Tx<'_>,
    customer: CustomerId,
    rec: &CallRecord<'_>,
) -> Result<Option<CallSummary>> {
    let a = rec.analysis;
    let topics = Json::from(a.key_topics.clone());
    let vars = Json::Object(a.key_variables.clone());
    let inserted = tx
        .query(
            &format!(
                "INSERT INTO memory.call_summaries (customer_id, call_sid, user_id, call_at, \
                     summary, key_topics, key_variables, sentiment, duration_seconds, \
                     resolution_status, summarizer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (customer_id, call_sid) DO NOTHING \
                 RETURNING {SUMMARY_COLS}"
            ),
            &[
                &customer,
                rec.call,
                rec.user,
                &rec.at,
                &a.summary,
                &topics,
                &vars,
                &a.sentiment,
                &rec.duration_seconds,
                &a.resolution_status,
                &a.summarizer,
            ],
        )
        .await?;
    Ok(inserted.first().map(rows::summary))
}

/// Counts the call on the caller's profile (creating it on the first call). A learned name fills
/// an empty preferred name; it never overwrites one set on purpose.
async fn count_call(tx: &Tx<'_>, customer: CustomerId, rec: &CallRecord<'_>) -> Result<()> {
    tx.execute(
        "INSERT INTO memory.caller_profiles AS p (customer_id, user_id, first_call_at, \
             last_call_at, total_calls, preferred_name) \
         VALUES ($1, $2, $3, $3, 1, coalesce($4::text, '')) \
         ON CONFLICT (customer_id, user_id) DO UPDATE SET \
             first_call_at = LEAST(p.first_call_at, EXCLUDED.first_call_at), \
             last_call_at = GREATEST(p.last_call_at, EXCLUDED.last_call_at), \
             total_calls = p.total_calls + 1, \
             preferred_name = CASE WHEN p.preferred_name = '' THEN EXCLUDED.preferred_name \
                                   ELSE p.preferred_name END, \
             updated_at = now()",
        &[&customer, rec.user, &rec.at, &rec.analysis.preferred_name],
    )
    .await?;
    Ok(())
}

/// Full-text search over one caller's summaries, best match first.
pub async fn search_summaries(
    tx: &Tx<'_>,
    customer: CustomerId,
    user: &CallerNumber,
    query: &str,
    limit: i64,
) -> Result<Vec<CallSummary>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {SUMMARY_COLS} FROM memory.call_summaries, \
                     websearch_to_tsquery('english', $3) AS q \
                 WHERE customer_id = $1 AND user_id = $2 \
                   AND to_tsvector('english', summary) @@ q \
                 ORDER BY ts_rank(to_tsvector('english', summary), q) DESC, call_at DESC \
                 LIMIT $4"
            ),
            &[&customer, user, &query, &limit],
        )
        .await?;
    Ok(rows.iter().map(rows::summary).collect())
}
