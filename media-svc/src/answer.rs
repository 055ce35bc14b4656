//! What the edge answers Twilio for a call, decided once from the call row, and the exchange of
//! the call's stream ticket for the grant of its one stream.
//!
//! [`of`]: a live call is answered with its stream ticket, whose `iat` is the row's
//! `ticket_issued_at`, so every repeat of the webhook gets the identical ticket (never a new
//! credential); a call that ended gets "hang up". A call answered at the concurrent-call limit
//! for the message flow (`busy`) is live and gets the same kind of ticket: the gateway's TwiML
//! connects its stream as usual, and the call driver reads the mark from the row. (A call
//! refused at the limit never gets here: `RegisterCall` refuses it, and its repeats, with
//! RESOURCE_EXHAUSTED.)
//!
//! [`open_stream`] (`OpenStream`, the gateway on Twilio's `start`): the ticket must verify (this
//! service's key, its type, unexpired) and name the `start`'s CallSid and AccountSid; the first
//! StreamSid presented is bound to the call and the same one again is accepted (the edge
//! retrying), another one is refused before any audio and changes nothing. The grant it returns
//! authenticates `StreamCall` ([`crate::call::start`]).

use mesh::api::media::{CallAnswer, OpenStreamRequest};
use mesh::auth::{StreamCredentials, StreamGrant, StreamTicket};
use mesh::domain::{AccountSid, CallSid, CustomerId, StreamSid};
use tonic::Status;

use crate::error::MediaError;
use crate::runtime::Runtime;
use crate::store::{self, CallRow};

/// The answer to a call and, for a stream, its ticket.
pub fn of(
    streams: &StreamCredentials,
    customer: CustomerId,
    row: &CallRow,
) -> Result<(CallAnswer, String), MediaError> {
    let issued_at = match row.ticket_issued_at {
        Some(at) if row.is_live() => at,
        _ => return Ok((CallAnswer::Ended, String::new())),
    };
    let ticket = streams
        .ticket(&StreamTicket {
            customer_id: customer,
            call_sid: row.call_sid.clone(),
            account_sid: row.account_sid.clone(),
            issued_at: issued_at.timestamp(),
        })
        .map_err(|e| MediaError::Internal(format!("stream ticket not signed: {e}")))?;
    Ok((CallAnswer::Stream, ticket))
}

/// `OpenStream`: the tenant of the ticket's call and a grant for its stream.
pub async fn open_stream(
    rt: &Runtime,
    r: &OpenStreamRequest,
) -> Result<(CustomerId, String), Status> {
    let call_sid = CallSid::parse(&r.call_sid).map_err(|e| MediaError::invalid("call_sid", e))?;
    let account_sid =
        AccountSid::parse(&r.account_sid).map_err(|e| MediaError::invalid("account_sid", e))?;
    let stream_sid =
        StreamSid::parse(&r.stream_sid).map_err(|e| MediaError::invalid("stream_sid", e))?;
    let ticket = rt.streams.verify_ticket(&r.stream_ticket).map_err(|e| {
        metrics::counter!("media_stream_tickets_refused_total", "reason" => "invalid").increment(1);
        tracing::warn!(error = %e, "stream ticket refused");
        Status::unauthenticated("invalid or expired stream ticket")
    })?;
    let customer = ticket.customer_id;
    mesh::telemetry::record_customer(customer);
    if ticket.call_sid != call_sid || ticket.account_sid != account_sid {
        metrics::counter!("media_stream_tickets_refused_total", "reason" => "other-call")
            .increment(1);
        tracing::warn!(customer_id = customer.get(), call_sid = %call_sid, "stream ticket presented for another call");
        return Err(
            MediaError::PermissionDenied("the stream ticket is for another call".into()).into(),
        );
    }
    rt.db
        .tenant_tx(customer, async |tx| {
            store::streams::bind_stream(tx, &call_sid, &stream_sid).await
        })
        .await
        .inspect_err(|e| {
            metrics::counter!("media_stream_tickets_refused_total", "reason" => "call").increment(1);
            tracing::warn!(customer_id = customer.get(), call_sid = %call_sid, error = %e, "stream not opened");
        })?;
    let grant = rt
        .streams
        .grant(&StreamGrant {
            customer_id: customer,
            call_sid,
            stream_sid,
        })
        .map_err(|e| MediaError::Internal(format!("stream grant not signed: {e}")))?;
    Ok((customer, grant))
}
