//! A call's one media stream, on its row in `media.calls`: bound by `OpenStream` to the first
//! StreamSid presented ([`bind_stream`]), started once by `StreamCall` ([`start_stream`]) and
//! ended with the final status, reason, duration and usage ([`finish_stream`]).

use mesh::api::media::CallStatus;
use mesh::db::Tx;
use mesh::domain::{CallSid, CustomerId, StreamSid};

use super::calls::{CALL_COLUMNS, CallRow, EndReason, get_call};
use super::usage::count_usage;
use crate::error::MediaError;

/// The call's row, locked for the rest of the transaction; NOT_FOUND for an unknown CallSid,
/// FAILED_PRECONDITION for a call that ended.
async fn live_call(tx: &Tx<'_>, call_sid: &CallSid) -> Result<CallRow, MediaError> {
    let current = get_call(tx, call_sid, true)
        .await?
        .ok_or(MediaError::NotFound)?;
    if !current.is_live() {
        return Err(MediaError::FailedPrecondition(
            "the call has already ended".into(),
        ));
    }
    Ok(current)
}

/// Binds `stream_sid` to the call (`OpenStream`): the first StreamSid presented is the call's
/// one stream; the same one again is accepted (the edge retrying); another one, or a call that
/// ended, is refused and nothing changes.
pub async fn bind_stream(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    stream_sid: &StreamSid,
) -> Result<CallRow, MediaError> {
    let current = live_call(tx, call_sid).await?;
    match current.stream_sid.as_deref() {
        Some(bound) if bound == stream_sid.as_str() => Ok(current),
        Some(_) => Err(MediaError::FailedPrecondition(
            "the call already has a media stream".into(),
        )),
        None => {
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE media.calls SET stream_sid = $2 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}"
                    ),
                    &[call_sid, stream_sid],
                )
                .await?;
            CallRow::from_row(&row)
        }
    }
}

/// Marks the call's one stream as started (answered). Refuses a call that ended, a stream that
/// is not the one bound to the call, and a second start of it.
pub async fn start_stream(
    tx: &Tx<'_>,
    call_sid: &CallSid,
    stream_sid: &StreamSid,
    backend: &str,
) -> Result<CallRow, MediaError> {
    let current = live_call(tx, call_sid).await?;
    if current.stream_sid.as_deref() != Some(stream_sid.as_str()) {
        return Err(MediaError::FailedPrecondition(
            "this stream was not opened for the call".into(),
        ));
    }
    if current.stream_started_at.is_some() {
        return Err(MediaError::FailedPrecondition(
            "the call's stream has already started".into(),
        ));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET stream_started_at = now(), backend = $2, \
                   answered_at = coalesce(answered_at, now()), \
                   status = CASE WHEN status < {in_progress} THEN {in_progress} ELSE status END \
                 WHERE call_sid = $1 RETURNING {CALL_COLUMNS}",
                in_progress = CallStatus::InProgress as i32
            ),
            &[call_sid, &backend],
        )
        .await?;
    CallRow::from_row(&row)
}

/// Ends the call after its stream: final status (unless a callback already set one), end time,
/// reason, duration and usage.
pub async fn finish_stream(
    tx: &Tx<'_>,
    customer: CustomerId,
    call_sid: &CallSid,
    end_reason: EndReason,
) -> Result<CallRow, MediaError> {
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.calls SET \
                   status = CASE WHEN status IN ({finals}) THEN status ELSE {completed} END, \
                   ended_at = coalesce(ended_at, now()), \
                   end_reason = CASE WHEN end_reason = '' OR end_reason = '{completed_reason}' THEN $2 ELSE end_reason END, \
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
                completed_reason = EndReason::Completed.as_str(),
            ),
            &[call_sid, &end_reason.as_str()],
        )
        .await?;
    let mut call = CallRow::from_row(&row)?;
    count_usage(tx, customer, &mut call).await?;
    Ok(call)
}
