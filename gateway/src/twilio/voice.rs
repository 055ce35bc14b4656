//! `POST /twilio/voice` (and the old `/phone/incoming-realtime`): Twilio asks what to do with a
//! call. The answer is TwiML within the 2-second budget, whatever happens behind: resolve the
//! tenant's number (tenant-svc), register the call (media-svc), then `<Connect><Stream>` with
//! the call's tenant token as stream token. A final answer is remembered per (AccountSid,
//! CallSid), so Twilio's retries get the same TwiML and register nothing twice.

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

/// The voice webhook (behind the per-address and per-account limits).
pub async fn answer(
    State(edge): State<Arc<Edge>>,
    TwilioForm(hook): TwilioForm<CallWebhook>,
) -> Response {
    let key = format!("{}:{}", hook.account_sid, hook.call_sid);
    if let Some(answer) = edge.remembered_answer(&key) {
        return twiml::response(answer);
    }
    let started = Instant::now();
    let answer = match tokio::time::timeout(edge.budget, set_up(&edge, &hook)).await {
        Ok(answer) => answer,
        Err(_) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "timeout").increment(1);
            tracing::warn!(call_sid = %hook.call_sid, "call set-up exceeded its budget; apologising");
            Answer::Retryable(twiml::say_hangup(&edge.apology_message))
        }
    };
    metrics::histogram!("gateway_call_setup_seconds").record(started.elapsed().as_secs_f64());
    match answer {
        Answer::Final(doc) => {
            edge.remember_answer(key, doc.clone());
            twiml::response(doc)
        }
        Answer::Retryable(doc) => twiml::response(doc),
    }
}

enum Answer {
    /// The same answer should be given to a retry.
    Final(String),
    /// A temporary failure: a retry may do better.
    Retryable(String),
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
async fn set_up(edge: &Edge, hook: &CallWebhook) -> Answer {
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
    // Idempotent on the CallSid, so a retry cannot register the call twice.
    let registered = retry_unavailable(began, || {
        let mut media = edge.media.clone();
        let request = bearer(register.clone(), &resolved.tenant_token);
        async move { media.register_call(request).await }
    })
    .await;
    let customer_id = customer_id.get();
    match registered {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "busy").increment(1);
            tracing::info!(customer_id, call_sid = %hook.call_sid, "tenant at its concurrent-call limit; busy message");
            return Answer::Final(twiml::say_hangup(&edge.busy_message));
        }
        Err(s) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "media-svc").increment(1);
            tracing::warn!(customer_id, call_sid = %hook.call_sid, code = ?s.code(), "media-svc could not register the call; apologising");
            return Answer::Retryable(twiml::say_hangup(&edge.apology_message));
        }
    }
    metrics::counter!("gateway_calls_started_total").increment(1);
    tracing::info!(
        customer_id,
        call_sid = %hook.call_sid,
        direction = %hook.direction,
        remote = %CallerNumber::from_network(parties.remote).map(|n| edge.hash_number(n.as_str())).unwrap_or_else(|| "none".into()),
        "call answered"
    );
    Answer::Final(twiml::connect_stream(
        &edge.media_ws_url,
        &[("stream_token", &resolved.tenant_token)],
        &edge.apology_message,
    ))
}

/// The tenant owning `ours`, or the answer a caller gets when there is none (the "not
/// available" message, final) or tenant-svc cannot say (the apology, worth a retry).
async fn tenant_of(
    edge: &Edge,
    hook: &CallWebhook,
    ours: Option<PhoneNumber>,
    began: Instant,
) -> Result<(PhoneNumber, CustomerId, ResolveNumberResponse), Answer> {
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
            Err(Answer::Final(twiml::say_hangup(&edge.unavailable_message)))
        }
        (_, resolved) => {
            let code = resolved.err().map(|s| s.code());
            metrics::counter!("gateway_calls_refused_total", "reason" => "tenant-svc").increment(1);
            tracing::warn!(call_sid = %hook.call_sid, ?code, "tenant-svc unavailable; apologising");
            Err(Answer::Retryable(twiml::say_hangup(&edge.apology_message)))
        }
    }
}
