//! `POST /twilio/voice` (and the old `/phone/incoming-realtime`): Twilio asks what to do with a
//! call. The answer is TwiML within the 2-second budget, whatever happens behind: resolve the
//! tenant's number (tenant-svc), register the call (media-svc), then answer what media-svc
//! decided: `<Connect><Stream>` with the call's stream ticket as its one `<Parameter>`, the busy
//! message (a call refused at the tenant's concurrent-call limit), or `<Hangup/>` for a call that
//! already ended. media-svc decides once per CallSid
//! (the call row is the record), so Twilio's retries, a replay, another replica or this one
//! after a restart all get the same answer, with the identical ticket and never a new one; the
//! gateway remembers nothing.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use mesh::api::media as media_pb;
use mesh::api::tenant::{ResolveNumberRequest, ResolveNumberResponse};
use mesh::auth::with_bearer as bearer;
use mesh::domain::{CallerNumber, CustomerId, PhoneNumber};
use secrecy::ExposeSecret;

use crate::extract::TwilioForm;
use crate::retry::retry_unavailable;
use crate::state::Edge;
use crate::twilio::{CallStatus, CallWebhook};
use crate::twiml;

/// The name of the TwiML `<Parameter>` carrying the stream ticket (Twilio sends it back in
/// `start.customParameters`).
pub const STREAM_TICKET_PARAMETER: &str = "stream_ticket";

/// The voice webhook (behind the per-address and per-account limits).
pub async fn answer(
    State(edge): State<Arc<Edge>>,
    TwilioForm(hook): TwilioForm<CallWebhook>,
) -> Response {
    let started = Instant::now();
    let answer = match tokio::time::timeout(edge.budget, set_up(&edge, &hook)).await {
        Ok(answer) => answer,
        Err(_) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "timeout").increment(1);
            tracing::warn!(call_sid = %hook.call_sid, "call set-up exceeded its budget; apologising");
            twiml::say_hangup(&edge.apology_message)
        }
    };
    metrics::histogram!("gateway_call_setup_seconds").record(started.elapsed().as_secs_f64());
    twiml::response(answer)
}

/// Resolves the tenant's number (tried again while no tenant-svc replica answers). The status
/// callback resolves the same way, with the same "our number" rule.
pub(crate) async fn resolve(
    edge: &Edge,
    hook: &CallWebhook,
    ours: &PhoneNumber,
    began: Instant,
) -> Result<(CustomerId, ResolveNumberResponse), tonic::Status> {
    let service_token = edge
        .tenant_token
        .token()
        .map_err(|_| tonic::Status::unavailable("no service token"))?;
    let resolve = ResolveNumberRequest {
        called_number: ours.as_str().to_owned(),
        account_sid: hook.account_sid.to_string(),
        call_sid: hook.call_sid.to_string(),
    };
    let resolved = retry_unavailable(began, || {
        let mut tenant = edge.tenant.clone();
        let request = bearer(resolve.clone(), service_token.expose_secret());
        async move { tenant.resolve_number(request).await }
    })
    .await?
    .into_inner();
    let customer_id = CustomerId::new(resolved.customer_id)
        .map_err(|e| tonic::Status::internal(format!("tenant-svc answered {e}")))?;
    Ok((customer_id, resolved))
}

/// The call's set-up, answered as TwiML.
async fn set_up(edge: &Edge, hook: &CallWebhook) -> String {
    let parties = hook.parties();
    let began = Instant::now();
    let (ours, customer_id, resolved) = match tenant_of(edge, hook, parties.ours, began).await {
        Ok(resolved) => resolved,
        Err(answer) => return answer,
    };
    let register = media_pb::RegisterCallRequest {
        call_sid: hook.call_sid.to_string(),
        account_sid: hook.account_sid.to_string(),
        from: parties.remote.to_owned(),
        to: ours.as_str().to_owned(),
        direction: hook.direction.to_proto() as i32,
        status: CallStatus::Ringing.to_proto() as i32,
    };
    // Idempotent on the CallSid: a retry registers nothing and gets the recorded answer.
    let registered = retry_unavailable(began, || {
        let mut media = edge.media.clone();
        let request = bearer(register.clone(), &resolved.tenant_token);
        async move { media.register_call(request).await }
    })
    .await;
    let customer_id = customer_id.get();
    let registered = match registered {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "busy").increment(1);
            tracing::info!(customer_id, call_sid = %hook.call_sid, "tenant at its concurrent-call limit; busy message");
            return twiml::say_hangup(&edge.busy_message);
        }
        Err(s) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "media-svc").increment(1);
            tracing::warn!(customer_id, call_sid = %hook.call_sid, code = ?s.code(), "media-svc could not register the call; apologising");
            return twiml::say_hangup(&edge.apology_message);
        }
    };
    match (registered.answer(), registered.stream_ticket.as_str()) {
        (media_pb::CallAnswer::Stream, ticket) if !ticket.is_empty() => {}
        (media_pb::CallAnswer::Ended, _) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "ended").increment(1);
            tracing::info!(customer_id, call_sid = %hook.call_sid, "webhook for a call that already ended; hanging up");
            return twiml::hangup();
        }
        (answer, _) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "media-svc").increment(1);
            tracing::warn!(customer_id, call_sid = %hook.call_sid, ?answer, "media-svc gave no usable answer; apologising");
            return twiml::say_hangup(&edge.apology_message);
        }
    }
    if registered.created {
        metrics::counter!("gateway_calls_started_total").increment(1);
    }
    tracing::info!(
        customer_id,
        call_sid = %hook.call_sid,
        direction = %hook.direction,
        repeat = !registered.created,
        remote = %CallerNumber::from_network(parties.remote).map(|n| edge.hash_number(n.as_str())).unwrap_or_else(|| "none".into()),
        "call answered"
    );
    twiml::connect_stream(
        &edge.media_ws_url,
        &[(STREAM_TICKET_PARAMETER, &registered.stream_ticket)],
        &edge.apology_message,
    )
}

/// The tenant owning `ours`, or the answer a caller gets when there is none (the "not
/// available" message) or tenant-svc cannot say (the apology).
async fn tenant_of(
    edge: &Edge,
    hook: &CallWebhook,
    ours: Option<PhoneNumber>,
    began: Instant,
) -> Result<(PhoneNumber, CustomerId, ResolveNumberResponse), String> {
    let resolved = match &ours {
        // Not a number at all: no tenant owns it (tenant-svc would refuse it as invalid).
        None => Err(tonic::Status::invalid_argument(
            "called_number: not a number",
        )),
        Some(ours) => resolve(edge, hook, ours, began).await,
    };
    match (ours, resolved) {
        (Some(ours), Ok((customer_id, resolved))) => Ok((ours, customer_id, resolved)),
        (_, Err(s))
            if matches!(
                s.code(),
                tonic::Code::NotFound
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::InvalidArgument
            ) =>
        {
            metrics::counter!("gateway_calls_refused_total", "reason" => "unknown-or-suspended")
                .increment(1);
            tracing::info!(call_sid = %hook.call_sid, code = ?s.code(), "call to an unknown number or suspended tenant");
            Err(twiml::say_hangup(&edge.unavailable_message))
        }
        (_, resolved) => {
            let code = resolved.err().map(|s| s.code());
            metrics::counter!("gateway_calls_refused_total", "reason" => "tenant-svc").increment(1);
            tracing::warn!(call_sid = %hook.call_sid, ?code, "tenant-svc unavailable; apologising");
            Err(twiml::say_hangup(&edge.apology_message))
        }
    }
}
