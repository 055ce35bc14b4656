//! SQL over media-svc's tables (`migrations/V4__media.sql`). Every function takes a transaction
//! opened by `Db::tenant_tx`, so row-level security confines it to one tenant; only domain values
//! and plain numbers reach the queries.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use mesh::api::common::{Speaker, TableCount, TranscriptTurn};
use mesh::api::media::{Call, CallDirection, CallStatus};
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber, StreamSid};
use tokio_postgres::{Row, Transaction};

use crate::error::MediaError;

const CALL_COLUMNS: &str = "call_sid, account_sid, stream_sid, caller, called, direction, status, \
     created_at, answered_at, ended_at, duration_seconds, backend, end_reason, usage_counted";

/// A call row.
#[derive(Debug, Clone)]
pub struct CallRow {
    /// CallSid.
    pub call_sid: String,
    /// AccountSid.
    pub account_sid: String,
    /// Stream sid once the stream started.
    pub stream_sid: Option<String>,
    /// Caller, E.164, when known.
    pub caller: Option<String>,
    /// Called number.
    pub called: String,
    /// Direction (proto number).
    pub direction: i16,
    /// Status (proto number).
    pub status: i16,
    /// Registered.
    pub created_at: DateTime<Utc>,
    /// Stream started.
    pub answered_at: Option<DateTime<Utc>>,
    /// Ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds.
    pub duration_seconds: i32,
    /// Backend used.
    pub backend: String,
    /// Why it ended.
    pub end_reason: String,
    /// Whether usage already counts it.
    pub usage_counted: bool,
}

impl CallRow {
    fn from_row(r: &Row) -> Self {
        Self {
            call_sid: r.get(0),
            account_sid: r.get(1),
            stream_sid: r.get(2),
            caller: r.get(3),
            called: r.get(4),
            direction: r.get(5),
            status: r.get(6),
            created_at: r.get(7),
            answered_at: r.get(8),
            ended_at: r.get(9),
            duration_seconds: r.get(10),
            backend: r.get(11),
            end_reason: r.get(12),
            usage_counted: r.get(13),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> Call {
        Call {
            call_sid: self.call_sid.clone(),
            account_sid: self.account_sid.clone(),
            stream_sid: self.stream_sid.clone().unwrap_or_default(),
            caller: self.caller.clone().unwrap_or_default(),
            called: self.called.clone(),
            direction: i32::from(self.direction),
            status: i32::from(self.status),
            create_time: Some(timestamp(self.created_at)),
            answer_time: self.answered_at.map(timestamp),
            end_time: self.ended_at.map(timestamp),
            duration_seconds: self.duration_seconds,
            backend: self.backend.clone(),
            end_reason: self.end_reason.clone(),
            persona: String::new(),
        }
    }

    /// Whether the status is one of the four final states.
    pub fn is_final(&self) -> bool {
        status_rank(self.status) >= FINAL_RANK
    }
}

/// Proto timestamp of a UTC time.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// UTC time of a proto timestamp (`None` when out of range).
pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

const FINAL_RANK: u8 = 5;

/// Where a status stands in a call's life: calls only move to a higher rank, and the final
/// states share the top rank so one final state never replaces another.
pub fn status_rank(status: i16) -> u8 {
    match CallStatus::try_from(i32::from(status)) {
        Ok(CallStatus::Initiated) => 1,
        Ok(CallStatus::Queued) => 2,
        Ok(CallStatus::Ringing) => 3,
        Ok(CallStatus::InProgress) => 4,
        Ok(
            CallStatus::Completed
            | CallStatus::Busy
            | CallStatus::Failed
            | CallStatus::NoAnswer
            | CallStatus::Canceled,
        ) => FINAL_RANK,
        _ => 0,
    }
}

/// A call to register.
pub struct NewCall {
    /// CallSid.
    pub call_sid: CallSid,
    /// AccountSid.
    pub account_sid: AccountSid,
    /// Caller, when the network gave an E.164 number.
    pub caller: Option<CallerNumber>,
    /// Called number.
    pub called: PhoneNumber,
    /// Direction.
    pub direction: CallDirection,
    /// Initial status.
    pub status: CallStatus,
}

/// Inserts the call unless this tenant already has the CallSid; returns the row and whether it
/// was created.
pub async fn register_call(
    tx: &Transaction<'_>,
    customer: CustomerId,
    call: &NewCall,
) -> Result<(CallRow, bool), MediaError> {
    let inserted = tx
        .query_opt(
            &format!(
                "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (customer_id, call_sid) DO NOTHING RETURNING {CALL_COLUMNS}"
            ),
            &[
                &customer.get(),
                &call.call_sid.as_str(),
                &call.account_sid.as_str(),
                &call.caller.as_ref().map(CallerNumber::as_str),
                &call.called.as_str(),
                &(call.direction as i32 as i16),
                &(call.status as i32 as i16),
            ],
        )
        .await?;
    match inserted {
        Some(row) => Ok((CallRow::from_row(&row), true)),
        None => {
            let existing = get_call(tx, &call.call_sid, false)
                .await?
                .ok_or(MediaError::NotFound)?;
            Ok((existing, false))
        }
    }
}

/// One call of the current tenant (`for_update` locks it).
pub async fn get_call(
    tx: &Transaction<'_>,
    call_sid: &CallSid,
    for_update: bool,
) -> Result<Option<CallRow>, MediaError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row = tx
        .query_opt(
            &format!("SELECT {CALL_COLUMNS} FROM media.calls WHERE call_sid = $1{lock}"),
            &[&call_sid.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(CallRow::from_row))
}

/// A status callback.
pub struct StatusUpdate {
    /// The new status.
    pub status: CallStatus,
    /// Twilio's sequence number.
    pub sequence: u32,
    /// `CallDuration`, when Twilio sent one.
    pub duration_seconds: Option<i32>,
    /// Twilio's event time.
    pub event_time: Option<DateTime<Utc>>,
}

/// Applies a status callback unless it would move the call backwards (or sideways between final
/// states). Reaching a final state for the first time ends the call and counts its usage.
pub async fn update_status(
    tx: &Transaction<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    update: &StatusUpdate,
) -> Result<(CallRow, bool), MediaError> {
    let current = get_call(tx, call_sid, true)
        .await?
        .ok_or(MediaError::NotFound)?;
    let new = update.status as i32 as i16;
    if current.is_final() || status_rank(new) <= status_rank(current.status) {
        return Ok((current, false));
    }
    let now = update.event_time.unwrap_or_else(Utc::now);
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET status = $2::smallint, status_sequence = $3, \
                   answered_at = CASE WHEN $2::smallint = {in_progress} THEN coalesce(answered_at, $4) ELSE answered_at END, \
                   ended_at = CASE WHEN $5 THEN coalesce(ended_at, $4) ELSE ended_at END, \
                   duration_seconds = CASE WHEN $6::integer IS NOT NULL THEN $6 ELSE duration_seconds END, \
                   end_reason = CASE WHEN $5 AND end_reason = '' THEN $7 ELSE end_reason END \
                 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}",
                in_progress = CallStatus::InProgress as i32
            ),
            &[
                &call_sid.as_str(),
                &new,
                &i32::try_from(update.sequence).unwrap_or(i32::MAX),
                &now,
                &(status_rank(new) >= FINAL_RANK),
                &update.duration_seconds,
                &status_end_reason(update.status),
            ],
        )
        .await?;
    let mut call = CallRow::from_row(&row);
    if call.is_final() {
        count_usage(tx, customer, &mut call).await?;
    }
    Ok((call, true))
}

fn status_end_reason(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Busy => "busy",
        CallStatus::Failed => "failed",
        CallStatus::NoAnswer => "no-answer",
        CallStatus::Canceled => "canceled",
        _ => "completed",
    }
}

/// Adds an ended call to its month's usage, once.
async fn count_usage(
    tx: &Transaction<'_>,
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
        &[&customer.get(), &month, &seconds, &minutes],
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
    /// Continue after this (created_at, call_sid).
    pub after: Option<(DateTime<Utc>, String)>,
    /// Page size.
    pub limit: i64,
}

/// Calls newest first; one more than `limit` is fetched to know whether a next page exists.
pub async fn list_calls(
    tx: &Transaction<'_>,
    f: &ListFilter,
) -> Result<(Vec<CallRow>, bool), MediaError> {
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
                   AND ($5::timestamptz IS NULL OR (created_at, call_sid) < ($5, $6::text)) \
                 ORDER BY created_at DESC, call_sid DESC LIMIT $7"
            ),
            &[
                &f.start,
                &f.end,
                &f.caller.as_ref().map(CallerNumber::as_str),
                &f.status.map(|s| s as i32 as i16),
                &after_time,
                &after_sid,
                &(f.limit + 1),
            ],
        )
        .await?;
    let mut calls: Vec<CallRow> = rows.iter().map(CallRow::from_row).collect();
    let more = calls.len() as i64 > f.limit;
    calls.truncate(f.limit as usize);
    Ok((calls, more))
}

/// The transcript of one call, in order.
pub async fn turns(
    tx: &Transaction<'_>,
    call_sid: &str,
) -> Result<Vec<TranscriptTurn>, MediaError> {
    let rows = tx
        .query(
            "SELECT speaker, text, offset_ms FROM media.transcript_turns \
             WHERE call_sid = $1 ORDER BY seq",
            &[&call_sid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TranscriptTurn {
            speaker: i32::from(r.get::<_, i16>(0)),
            text: r.get(1),
            offset_ms: u32::try_from(r.get::<_, i64>(2)).unwrap_or(u32::MAX),
        })
        .collect())
}

/// Usage of one month: (calls, minutes, seconds).
pub async fn usage(tx: &Transaction<'_>, month: NaiveDate) -> Result<(i64, i64, i64), MediaError> {
    let row = tx
        .query_opt(
            "SELECT total_calls, total_minutes, total_seconds FROM media.usage_monthly WHERE month = $1",
            &[&month],
        )
        .await?;
    Ok(row.map_or((0, 0, 0), |r| (r.get(0), r.get(1), r.get(2))))
}

/// Every call of one caller, newest first.
pub async fn calls_of_caller(
    tx: &Transaction<'_>,
    caller: &CallerNumber,
) -> Result<Vec<CallRow>, MediaError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {CALL_COLUMNS} FROM media.calls WHERE caller = $1 \
                 ORDER BY created_at DESC, call_sid DESC"
            ),
            &[&caller.as_str()],
        )
        .await?;
    Ok(rows.iter().map(CallRow::from_row).collect())
}

/// Deletes one caller's transcript turns, outbox rows and calls.
pub async fn erase_caller(
    tx: &Transaction<'_>,
    caller: &CallerNumber,
) -> Result<Vec<TableCount>, MediaError> {
    let turns = tx
        .execute(
            "DELETE FROM media.transcript_turns t USING media.calls c \
             WHERE t.call_sid = c.call_sid AND c.caller = $1",
            &[&caller.as_str()],
        )
        .await?;
    let outbox = tx
        .execute(
            "DELETE FROM media.outbox o USING media.calls c \
             WHERE o.call_sid = c.call_sid AND c.caller = $1",
            &[&caller.as_str()],
        )
        .await?;
    let calls = tx
        .execute(
            "DELETE FROM media.calls WHERE caller = $1",
            &[&caller.as_str()],
        )
        .await?;
    Ok(vec![
        count("media.transcript_turns", turns),
        count("media.outbox", outbox),
        count("media.calls", calls),
    ])
}

/// Deletes every media row of the current tenant.
pub async fn erase_tenant(tx: &Transaction<'_>) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for table in [
        "media.transcript_turns",
        "media.outbox",
        "media.usage_monthly",
        "media.calls",
    ] {
        // RLS confines the DELETE to the tenant of this transaction; the WHERE repeats it so the
        // statement would be harmless even without the policy.
        let n = tx
            .execute(
                &format!("DELETE FROM {table} WHERE customer_id = app.current_customer_id()"),
                &[],
            )
            .await?;
        counts.push(count(table, n));
    }
    Ok(counts)
}

fn count(table: &str, rows: u64) -> TableCount {
    TableCount {
        table: table.to_owned(),
        rows: i64::try_from(rows).unwrap_or(i64::MAX),
    }
}

/// Marks the stream as started (answered); refuses a call that already ended.
pub async fn start_stream(
    tx: &Transaction<'_>,
    call_sid: &CallSid,
    stream_sid: &StreamSid,
    backend: &str,
) -> Result<CallRow, MediaError> {
    let current = get_call(tx, call_sid, true)
        .await?
        .ok_or(MediaError::NotFound)?;
    if current.is_final() || current.ended_at.is_some() {
        return Err(MediaError::FailedPrecondition(
            "the call has already ended".into(),
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET stream_sid = $2, backend = $3, \
                   answered_at = coalesce(answered_at, now()), \
                   status = CASE WHEN status < {in_progress} THEN {in_progress} ELSE status END \
                 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}",
                in_progress = CallStatus::InProgress as i32
            ),
            &[&call_sid.as_str(), &stream_sid.as_str(), &backend],
        )
        .await?;
    Ok(CallRow::from_row(&row))
}

/// Appends one transcript turn.
pub async fn append_turn(
    tx: &Transaction<'_>,
    call_sid: &CallSid,
    seq: i32,
    speaker: Speaker,
    text: &str,
    offset_ms: u32,
) -> Result<(), MediaError> {
    let text: String = text.chars().take(8000).collect();
    tx.execute(
        "INSERT INTO media.transcript_turns (customer_id, call_sid, seq, speaker, text, offset_ms) \
         VALUES (app.current_customer_id(), $1, $2, $3, $4, $5)",
        &[
            &call_sid.as_str(),
            &seq,
            &(speaker as i32 as i16),
            &text,
            &i64::from(offset_ms),
        ],
    )
    .await?;
    Ok(())
}

/// Ends the call after its stream: final status (unless a callback already set one), end time,
/// reason, duration and usage.
pub async fn finish_stream(
    tx: &Transaction<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    end_reason: &str,
) -> Result<CallRow, MediaError> {
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET \
                   status = CASE WHEN status IN ({finals}) THEN status ELSE {completed} END, \
                   ended_at = coalesce(ended_at, now()), \
                   end_reason = CASE WHEN end_reason = '' OR end_reason = 'completed' THEN $2 ELSE end_reason END, \
                   duration_seconds = CASE WHEN duration_seconds > 0 THEN duration_seconds \
                     ELSE greatest(0, ceil(extract(epoch FROM (coalesce(ended_at, now()) - coalesce(answered_at, created_at)))))::integer END \
                 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}",
                finals = [
                    CallStatus::Completed,
                    CallStatus::Busy,
                    CallStatus::Failed,
                    CallStatus::NoAnswer,
                    CallStatus::Canceled
                ]
                .map(|s| (s as i32).to_string())
                .join(", "),
                completed = CallStatus::Completed as i32,
            ),
            &[&call_sid.as_str(), &end_reason],
        )
        .await?;
    let mut call = CallRow::from_row(&row);
    count_usage(tx, customer, &mut call).await?;
    Ok(call)
}

/// Queues post-call work (idempotent per call and kind).
pub async fn enqueue_outbox(
    tx: &Transaction<'_>,
    kind: &str,
    call_sid: &CallSid,
    payload: &[u8],
) -> Result<(), MediaError> {
    tx.execute(
        "INSERT INTO media.outbox (customer_id, kind, call_sid, payload) \
         VALUES (app.current_customer_id(), $1, $2, $3) \
         ON CONFLICT (customer_id, kind, call_sid) DO NOTHING",
        &[&kind, &call_sid.as_str(), &payload],
    )
    .await?;
    Ok(())
}

/// The first day of a month, validated.
pub fn month_start(year: i32, month: i32) -> Option<NaiveDate> {
    if !(2000..=2200).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, 1)
}
