//! The call rows (`media.calls`): registered by the gateway's voice webhook or an outbound
//! placement, moved forward by status callbacks and by the stream's start and end, listed,
//! exported and erased. A row reads back as a [`CallRow`] whose ids are domain types and whose
//! `direction`, `status` and `end_reason` columns are Rust enums.

use chrono::{DateTime, Utc};
use mesh::api::media::{Call, CallDirection, CallStatus};
use mesh::db::Tx;
use mesh::domain::{AccountSid, CallSid, CallerNumber, CustomerId, PhoneNumber};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::consent::{Consent, Policy};
use super::limits::{ReservationId, release_reservation};
use super::timestamp;
use super::usage::count_usage;
use crate::error::MediaError;

pub(super) const CALL_COLUMNS: &str = "call_sid, account_sid, stream_sid, caller, called, direction, status, \
     created_at, answered_at, ended_at, duration_seconds, backend, end_reason, usage_counted, \
     persona, context, ticket_issued_at, stream_started_at, recording_policy, recording_consent, \
     recording_consent_at, recorded_seconds, recording_offset_ms, message_flow";

/// Why a call ended: the text of `media.calls.end_reason` ('' while it has not ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller hung up (`stop`, or the edge closed the stream cleanly).
    CallerHangup,
    /// The agent transferred the call.
    Transfer,
    /// The AI backend failed or went away.
    BackendError,
    /// The edge's stream broke.
    StreamClosed,
    /// The service's drain deadline passed with the call still running.
    Shutdown,
    /// The call reached its tenant's maximum duration and media-svc hung it up.
    MaxDuration,
    /// A status callback ended it: completed.
    Completed,
    /// A status callback ended it: busy.
    Busy,
    /// A status callback ended it: failed.
    Failed,
    /// A status callback ended it: no answer.
    NoAnswer,
    /// A status callback ended it: canceled.
    Canceled,
    /// Refused at registration: the tenant was at its concurrent-call limit.
    CallLimit,
    /// The caller's message (the message flow) reached the tenant's maximum length.
    MessageLimit,
    /// After the tenant's opening hours, with the message flow refused by its caps.
    AfterHours,
}

impl EndReason {
    const ALL: [EndReason; 14] = [
        Self::CallerHangup,
        Self::Transfer,
        Self::BackendError,
        Self::StreamClosed,
        Self::Shutdown,
        Self::MaxDuration,
        Self::Completed,
        Self::Busy,
        Self::Failed,
        Self::NoAnswer,
        Self::Canceled,
        Self::CallLimit,
        Self::MessageLimit,
        Self::AfterHours,
    ];

    /// The column's (and the wire's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallerHangup => "caller-hangup",
            Self::Transfer => "transfer",
            Self::BackendError => "backend-error",
            Self::StreamClosed => "stream-closed",
            Self::Shutdown => "shutdown",
            Self::MaxDuration => "max-duration",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
            Self::CallLimit => "call-limit",
            Self::MessageLimit => "message-limit",
            Self::AfterHours => "after-hours",
        }
    }

    /// The reason a column value names; `None` for '' (not ended).
    pub fn from_column(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The reason a final status given by a status callback records.
    pub fn of_status(status: CallStatus) -> Self {
        match status {
            CallStatus::Busy => Self::Busy,
            CallStatus::Failed => Self::Failed,
            CallStatus::NoAnswer => Self::NoAnswer,
            CallStatus::Canceled => Self::Canceled,
            _ => Self::Completed,
        }
    }
}

/// A call row.
#[derive(Debug, Clone)]
pub struct CallRow {
    /// CallSid.
    pub call_sid: CallSid,
    /// AccountSid.
    pub account_sid: AccountSid,
    /// Stream sid once the stream started.
    pub stream_sid: Option<String>,
    /// Caller, E.164, when known.
    pub caller: Option<String>,
    /// Called number.
    pub called: String,
    /// Direction.
    pub direction: CallDirection,
    /// Status.
    pub status: CallStatus,
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
    /// Why it ended (`None` while it runs).
    pub end_reason: Option<EndReason>,
    /// Whether usage already counts it.
    pub usage_counted: bool,
    /// Outbound calls: the persona the agent presents as ('' = the agent profile's name).
    pub persona: String,
    /// Outbound calls: the website's context, markup already stripped ('' = none).
    pub context: String,
    /// When the call was first answered with a stream: its stream ticket's `iat`.
    pub ticket_issued_at: Option<DateTime<Utc>>,
    /// When its one stream started.
    pub stream_started_at: Option<DateTime<Utc>>,
    /// The recording policy it ran under (`V21`: '' unknown, 'off', 'on', 'on_with_consent').
    pub recording_policy: String,
    /// The caller's consent answer ('' not asked, 'agreed', 'declined', 'no_answer') and when.
    pub recording_consent: String,
    /// When the consent answer was given.
    pub recording_consent_at: Option<DateTime<Utc>>,
    /// Seconds recorded, once the call ended.
    pub recorded_seconds: Option<i32>,
    /// Media time (ms) at which the recording begins.
    pub recording_offset_ms: Option<i64>,
    /// Why the call went to the message flow (V23's `message_flow`: 'busy' from `RegisterCall`
    /// at the tenant's concurrent-call limit; 'backend_down', 'after_hours' from the switch).
    pub message_flow: Option<String>,
}

impl CallRow {
    /// Reads a row of [`CALL_COLUMNS`]. The ids were validated when they were stored; one that no
    /// longer parses is an internal error, not a panic.
    pub(super) fn from_row(r: &Row) -> Result<Self, MediaError> {
        let stored = |what: &str| MediaError::Internal(format!("stored {what} is invalid"));
        Ok(Self {
            call_sid: CallSid::parse(r.get(0)).map_err(|_| stored("call sid"))?,
            account_sid: AccountSid::parse(r.get(1)).map_err(|_| stored("account sid"))?,
            stream_sid: r.get(2),
            caller: r.get(3),
            called: r.get(4),
            direction: CallDirection::try_from(i32::from(r.get::<_, i16>(5)))
                .unwrap_or(CallDirection::Unspecified),
            status: CallStatus::try_from(i32::from(r.get::<_, i16>(6)))
                .unwrap_or(CallStatus::Unspecified),
            created_at: r.get(7),
            answered_at: r.get(8),
            ended_at: r.get(9),
            duration_seconds: r.get(10),
            backend: r.get(11),
            end_reason: EndReason::from_column(r.get(12)),
            usage_counted: r.get(13),
            persona: r.get(14),
            context: r.get(15),
            ticket_issued_at: r.get(16),
            stream_started_at: r.get(17),
            recording_policy: r.get(18),
            recording_consent: r.get(19),
            recording_consent_at: r.get(20),
            recorded_seconds: r.get(21),
            recording_offset_ms: r.get(22),
            message_flow: r.get(23),
        })
    }

    pub(super) fn from_rows(rows: &[Row]) -> Result<Vec<Self>, MediaError> {
        rows.iter().map(Self::from_row).collect()
    }

    /// The wire form.
    pub fn to_proto(&self) -> Call {
        Call {
            call_sid: self.call_sid.as_str().to_owned(),
            account_sid: self.account_sid.as_str().to_owned(),
            stream_sid: self.stream_sid.clone().unwrap_or_default(),
            caller: self.caller.clone().unwrap_or_default(),
            called: self.called.clone(),
            direction: self.direction as i32,
            status: self.status as i32,
            create_time: Some(timestamp(self.created_at)),
            answer_time: self.answered_at.map(timestamp),
            end_time: self.ended_at.map(timestamp),
            duration_seconds: self.duration_seconds,
            backend: self.backend.clone(),
            end_reason: self
                .end_reason
                .map(EndReason::as_str)
                .unwrap_or_default()
                .to_owned(),
            persona: self.persona.clone(),
            recording_policy: Policy::proto_of(&self.recording_policy) as i32,
            recording_consent: Consent::proto_of(&self.recording_consent) as i32,
            recording_consent_time: self.recording_consent_at.map(timestamp),
            recorded_seconds: self.recorded_seconds.unwrap_or(0),
            recording_offset_ms: self.recording_offset_ms.unwrap_or(0),
            recording: None,
            recordings: Vec::new(),
            has_message: false,
        }
    }

    /// Whether the business placed this call through `PlaceOutboundCall` (or Twilio's REST API).
    pub fn is_outbound_api(&self) -> bool {
        self.direction == CallDirection::OutboundApi
    }

    /// Whether the status is one of the final states.
    pub fn is_final(&self) -> bool {
        status_rank(self.status) >= FINAL_RANK
    }

    /// Whether the call still runs (or rings): not final and not ended.
    pub fn is_live(&self) -> bool {
        !self.is_final() && self.ended_at.is_none()
    }

    /// Whether the call was answered for the message flow at registration: the tenant was at
    /// its concurrent-call limit (no agent; the call driver goes straight to the message flow).
    pub fn answered_busy(&self) -> bool {
        self.message_flow.as_deref() == Some("busy")
    }

    /// Whether the call was refused at registration (the tenant's concurrent-call limit).
    pub fn was_refused(&self) -> bool {
        self.end_reason == Some(EndReason::CallLimit)
    }
}

pub(super) const FINAL_RANK: u8 = 5;

/// Where a status stands in a call's life: calls only move to a higher rank, and the final
/// states share the top rank so one final state never replaces another.
pub fn status_rank(status: CallStatus) -> u8 {
    match status {
        CallStatus::Initiated => 1,
        CallStatus::Queued => 2,
        CallStatus::Ringing => 3,
        CallStatus::InProgress => 4,
        CallStatus::Completed
        | CallStatus::Busy
        | CallStatus::Failed
        | CallStatus::NoAnswer
        | CallStatus::Canceled => FINAL_RANK,
        CallStatus::Unspecified => 0,
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

/// Inserts the call, answered with a stream from now (`ticket_issued_at`), unless this tenant
/// already has the CallSid; returns the row (see [`answer_with_stream`]) and whether it was
/// created.
pub async fn register_call(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &NewCall,
) -> Result<(CallRow, bool), MediaError> {
    // Typed parameters: one round trip, no separate prepare (this runs for every new call).
    let inserted = tx
        .query_typed(
            &format!(
                "INSERT INTO media.calls \
                   (customer_id, call_sid, account_sid, caller, called, direction, status, ticket_issued_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
                 ON CONFLICT (customer_id, call_sid) DO NOTHING RETURNING {CALL_COLUMNS}"
            ),
            &[
                (&customer, Type::INT8),
                (&call.call_sid, Type::TEXT),
                (&call.account_sid, Type::TEXT),
                (&call.caller, Type::TEXT),
                (&call.called, Type::TEXT),
                (&(call.direction as i32 as i16), Type::INT2),
                (&(call.status as i32 as i16), Type::INT2),
            ],
        )
        .await?
        .into_iter()
        .next();
    match inserted {
        Some(row) => Ok((CallRow::from_row(&row)?, true)),
        None => {
            let existing = get_call(tx, &call.call_sid, false)
                .await?
                .ok_or(MediaError::NotFound)?;
            Ok((answer_with_stream(tx, existing).await?, false))
        }
    }
}

/// A registered call answered again: a live call that was never answered with a stream (an
/// outbound call Twilio now fetches the TwiML of) is from now; one that was keeps its first
/// time, so its ticket stays the same. Other rows are returned as they are.
pub async fn answer_with_stream(tx: &Tx<'_>, call: CallRow) -> Result<CallRow, MediaError> {
    if !call.is_live() || call.ticket_issued_at.is_some() {
        return Ok(call);
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET ticket_issued_at = coalesce(ticket_issued_at, now()) \
                 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}"
            ),
            &[&call.call_sid],
        )
        .await?;
    CallRow::from_row(&row)
}

/// Records a call refused at the tenant's concurrent-call limit: final status BUSY, ended now,
/// end reason [`EndReason::CallLimit`], usage not counted (nothing was served). A repeat of the
/// CallSid then finds it and gets the same answer.
pub async fn register_refused(
    tx: &Tx<'_>,
    customer: CustomerId,
    call: &NewCall,
) -> Result<CallRow, MediaError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, \
                   status, ended_at, end_reason, usage_counted) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now(), $8, true) \
                 ON CONFLICT (customer_id, call_sid) DO UPDATE SET call_sid = EXCLUDED.call_sid \
                 RETURNING {CALL_COLUMNS}"
            ),
            &[
                &customer,
                &call.call_sid,
                &call.account_sid,
                &call.caller,
                &call.called,
                &(call.direction as i32 as i16),
                &(CallStatus::Busy as i32 as i16),
                &EndReason::CallLimit.as_str(),
            ],
        )
        .await?;
    CallRow::from_row(&row)
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
    reservation: ReservationId,
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
                &customer,
                &call.call_sid,
                &call.account_sid,
                &call.callee,
                &call.from,
                &(CallDirection::OutboundApi as i32 as i16),
                &(CallStatus::Queued as i32 as i16),
                &call.persona,
                &call.context,
            ],
        )
        .await?;
    CallRow::from_row(&row)
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
            &[(call_sid, Type::TEXT)],
        )
        .await?;
    rows.first().map(CallRow::from_row).transpose()
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
    let new = update.status;
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
                call_sid,
                &(new as i32 as i16),
                &i32::try_from(update.sequence).unwrap_or(i32::MAX),
                &now,
                &(status_rank(new) >= FINAL_RANK),
                &update.duration_seconds,
                &EndReason::of_status(update.status).as_str(),
            ],
        )
        .await?;
    let mut call = CallRow::from_row(&row)?;
    if call.is_final() {
        count_usage(tx, customer, &mut call).await?;
    }
    Ok((call, true))
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
            &[caller],
        )
        .await?;
    CallRow::from_rows(&rows)
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
            let row_is_final = status_rank(status) >= FINAL_RANK;
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

    #[test]
    fn end_reasons_read_back_as_they_are_written() {
        for reason in EndReason::ALL {
            assert_eq!(EndReason::from_column(reason.as_str()), Some(reason));
        }
        assert_eq!(
            EndReason::from_column(""),
            None,
            "a call that has not ended"
        );
        assert_eq!(
            EndReason::of_status(CallStatus::NoAnswer).as_str(),
            "no-answer"
        );
        assert_eq!(
            EndReason::of_status(CallStatus::Completed).as_str(),
            "completed"
        );
    }
}
