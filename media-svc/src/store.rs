//! SQL over media-svc's tables (`migrations/V4__media.sql`, `V7__outbound_calls.sql`). Every
//! function takes a transaction opened by `Db::tenant_tx`, so row-level security confines it to
//! one tenant; only domain values and plain numbers reach the queries.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use mesh::api::common::{Speaker, TableCount, TranscriptTurn};
use mesh::api::media::{Call, CallDirection, CallStatus};
use mesh::db::Tx;
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber, StreamSid};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use crate::error::MediaError;

const CALL_COLUMNS: &str = "call_sid, account_sid, stream_sid, caller, called, direction, status, \
     created_at, answered_at, ended_at, duration_seconds, backend, end_reason, usage_counted, \
     persona, context";

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
    /// Outbound calls: the persona the agent presents as ('' = the agent profile's name).
    pub persona: String,
    /// Outbound calls: the website's context, markup already stripped ('' = none).
    pub context: String,
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
            persona: r.get(14),
            context: r.get(15),
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
            persona: self.persona.clone(),
        }
    }

    /// Whether the business placed this call through `PlaceOutboundCall` (or Twilio's REST API).
    pub fn is_outbound_api(&self) -> bool {
        i32::from(self.direction) == CallDirection::OutboundApi as i32
    }

    /// Whether the status is one of the final states.
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
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &NewCall,
) -> Result<(CallRow, bool), MediaError> {
    // Typed parameters: one round trip, no separate prepare (this runs for every new call).
    let inserted = tx
        .query_typed(
            &format!(
                "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (customer_id, call_sid) DO NOTHING RETURNING {CALL_COLUMNS}"
            ),
            &[
                (&customer.get(), Type::INT8),
                (&call.call_sid.as_str(), Type::TEXT),
                (&call.account_sid.as_str(), Type::TEXT),
                (&call.caller.as_ref().map(CallerNumber::as_str), Type::TEXT),
                (&call.called.as_str(), Type::TEXT),
                (&(call.direction as i32 as i16), Type::INT2),
                (&(call.status as i32 as i16), Type::INT2),
            ],
        )
        .await?
        .into_iter()
        .next();
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

/// How long a reservation of a call being placed counts towards the limits. Longer than the
/// whole Twilio request (10 s), short enough that one left behind by a crash blocks nothing for
/// long.
pub const RESERVATION_TTL_SECS: i64 = 60;

/// Calls created longer ago than this no longer count as in progress, so a call whose end never
/// reached us cannot block its tenant forever.
pub const IN_PROGRESS_WINDOW_HOURS: i64 = 4;

/// Takes the tenant's call-limit lock until the end of the transaction. Every path that counts
/// calls and then adds one (PlaceOutboundCall's reservation, RegisterCall's insert) holds it, so
/// two of them never both see the last free slot. The key is a 64-bit hash of a media-specific
/// name seeded with the tenant id: another tenant colliding with it would only wait, never
/// miscount.
pub async fn lock_call_limits(tx: &Tx<'_>, customer: CustomerId) -> Result<(), MediaError> {
    tx.query_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended('media.call_limits', $1))",
        &[(&customer.get(), Type::INT8)],
    )
    .await?;
    Ok(())
}

/// The tenant's calls in progress: not final, created in the last [`IN_PROGRESS_WINDOW_HOURS`],
/// plus (when `with_reservations`) the outbound calls being placed right now.
pub async fn calls_in_progress(
    tx: &Tx<'_>,
    customer: CustomerId,
    with_reservations: bool,
) -> Result<i64, MediaError> {
    let rows = tx
        .query_typed(
            &format!(
                "SELECT (SELECT count(*) FROM media.calls \
                         WHERE customer_id = $1 AND status < {first_final} \
                           AND created_at > now() - interval '{IN_PROGRESS_WINDOW_HOURS} hours') \
                      + (SELECT count(*) FROM media.outbound_reservations \
                         WHERE $2 AND customer_id = $1 \
                           AND created_at > now() - interval '{RESERVATION_TTL_SECS} seconds')",
                first_final = CallStatus::Completed as i32,
            ),
            &[
                (&customer.get(), Type::INT8),
                (&with_reservations, Type::BOOL),
            ],
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
        .query_one(
            &format!("SELECT count(*) FROM ({window}) w"),
            &[&customer.get()],
        )
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
            &[&customer.get(), &(placed - limit)],
        )
        .await?;
    let secs = row.map_or(1, |r| r.get::<_, i64>(0)).max(1);
    Ok((placed, Some(u64::try_from(secs).unwrap_or(1))))
}

/// Reserves a slot for an outbound call being placed (and drops this tenant's stale
/// reservations); returns the reservation's id. Call with the limit lock held.
pub async fn reserve_outbound(tx: &Tx<'_>, customer: CustomerId) -> Result<i64, MediaError> {
    tx.execute(
        &format!(
            "DELETE FROM media.outbound_reservations \
             WHERE customer_id = $1 AND created_at <= now() - interval '{RESERVATION_TTL_SECS} seconds'"
        ),
        &[&customer.get()],
    )
    .await?;
    let row = tx
        .query_one(
            "INSERT INTO media.outbound_reservations (customer_id) VALUES ($1) RETURNING id",
            &[&customer.get()],
        )
        .await?;
    Ok(row.get(0))
}

/// Drops a reservation (the call was refused or failed, or is now stored).
pub async fn release_reservation(
    tx: &Tx<'_>,
    customer: CustomerId,
    reservation: i64,
) -> Result<(), MediaError> {
    tx.execute(
        "DELETE FROM media.outbound_reservations WHERE customer_id = $1 AND id = $2",
        &[&customer.get(), &reservation],
    )
    .await?;
    Ok(())
}

/// An outbound call Twilio accepted.
pub struct NewOutboundCall {
    /// Twilio's CallSid.
    pub call_sid: CallSid,
    /// The account that placed it.
    pub account_sid: AccountSid,
    /// The person called: stored as `caller`, the remote party, as for inbound calls.
    pub callee: PhoneNumber,
    /// The tenant's number it is placed from: stored as `called`, the tenant's side.
    pub from: PhoneNumber,
    /// Persona ('' = the agent profile).
    pub persona: String,
    /// Context, already stripped.
    pub context: String,
}

/// Swaps the reservation for the call row, direction OUTBOUND_API and status QUEUED. The gateway's
/// `RegisterCall` for the same CallSid may have stored the row first (Twilio fetched the TwiML
/// before we got its answer): then the row is kept with its status and gets the direction,
/// persona and context.
pub async fn store_outbound_call(
    tx: &Tx<'_>,
    customer: CustomerId,
    reservation: i64,
    call: &NewOutboundCall,
) -> Result<CallRow, MediaError> {
    release_reservation(tx, customer, reservation).await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO media.calls \
                   (customer_id, call_sid, account_sid, caller, called, direction, status, persona, context) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (customer_id, call_sid) DO UPDATE SET \
                   direction = EXCLUDED.direction, persona = EXCLUDED.persona, context = EXCLUDED.context, \
                   caller = coalesce(media.calls.caller, EXCLUDED.caller) \
                 RETURNING {CALL_COLUMNS}"
            ),
            &[
                &customer.get(),
                &call.call_sid.as_str(),
                &call.account_sid.as_str(),
                &call.callee.as_str(),
                &call.from.as_str(),
                &(CallDirection::OutboundApi as i32 as i16),
                &(CallStatus::Queued as i32 as i16),
                &call.persona,
                &call.context,
            ],
        )
        .await?;
    Ok(CallRow::from_row(&row))
}

/// One call of the current tenant (`for_update` locks it).
pub async fn get_call(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    for_update: bool,
) -> Result<Option<CallRow>, MediaError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let rows = tx
        .query_typed(
            &format!("SELECT {CALL_COLUMNS} FROM media.calls WHERE call_sid = $1{lock}"),
            &[(&call_sid.as_str(), Type::TEXT)],
        )
        .await?;
    Ok(rows.first().map(CallRow::from_row))
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
    tx: &Tx<'_>,
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
pub async fn turns(tx: &Tx<'_>, call_sid: &str) -> Result<Vec<TranscriptTurn>, MediaError> {
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
pub async fn usage(tx: &Tx<'_>, month: NaiveDate) -> Result<(i64, i64, i64), MediaError> {
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
    tx: &Tx<'_>,
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
    tx: &Tx<'_>,
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
pub async fn erase_tenant(tx: &Tx<'_>) -> Result<Vec<TableCount>, MediaError> {
    let mut counts = Vec::new();
    for table in [
        "media.transcript_turns",
        "media.outbox",
        "media.usage_monthly",
        "media.outbound_reservations",
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
    tx: &Tx<'_>,
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
    tx: &Tx<'_>,
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
    tx: &Tx<'_>,
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

/// Runs `write` again while PostgreSQL is unreachable (a restart, a failover), every `pause`,
/// until `budget` has passed or `give_up` says so; `on_retry` sees each refusal that is retried.
/// Any other outcome is returned at once. Only for writes that are safe to repeat: a commit whose
/// connection was lost may have been applied.
pub async fn retry_while_unavailable<T, Fut>(
    budget: std::time::Duration,
    pause: std::time::Duration,
    give_up: impl Fn() -> bool,
    mut on_retry: impl FnMut(&mesh::db::DbError),
    mut write: impl FnMut() -> Fut,
) -> Result<T, MediaError>
where
    Fut: Future<Output = Result<T, MediaError>>,
{
    let began = std::time::Instant::now();
    loop {
        match write().await {
            Err(MediaError::Db(e))
                if e.is_unavailable() && !give_up() && began.elapsed() + pause < budget =>
            {
                on_retry(&e);
                tokio::time::sleep(pause).await;
            }
            other => return other,
        }
    }
}

/// Queues post-call work (idempotent per call and kind).
pub async fn enqueue_outbox(
    tx: &Tx<'_>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_progress_means_a_status_below_the_first_final_one() {
        // `calls_in_progress` and the V7 partial index count `status < Completed`: every
        // non-final status must be below it and every final one at or above it.
        for n in 1..=9 {
            let status = CallStatus::try_from(n).unwrap();
            let row_is_final = status_rank(n as i16) >= FINAL_RANK;
            assert_eq!(
                row_is_final,
                n >= CallStatus::Completed as i32,
                "{status:?}"
            );
        }
        assert_eq!(
            CallStatus::Completed as i32,
            5,
            "V7's index says `status < 5`"
        );
        assert_eq!(
            CallDirection::OutboundApi as i32,
            2,
            "V7's index says `direction = 2`"
        );
    }
}
