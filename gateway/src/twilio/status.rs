//! `POST /twilio/status`: Twilio reports a call's progress (ringing, answered, completed, …).
//! The report is forwarded to media-svc's `UpdateCallStatus` with the call's tenant token, found
//! through the same "our number" rule as the voice webhook; Twilio always gets an empty
//! `<Response/>` (it does not retry status callbacks, and a failure here is logged instead).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use mesh::api::media as media_pb;
use mesh::auth::with_bearer as bearer;

use crate::extract::TwilioForm;
use crate::state::Edge;
use crate::twilio::CallWebhook;
use crate::twilio::voice::resolve;
use crate::twiml;

/// The status callback (behind the per-address limit).
pub async fn callback(
    State(edge): State<Arc<Edge>>,
    TwilioForm(hook): TwilioForm<CallWebhook>,
) -> Response {
    if tokio::time::timeout(edge.budget, forward(&edge, &hook))
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(call_sid = %hook.call_sid, "status callback could not be forwarded");
    }
    twiml::response(twiml::empty())
}

/// Resolves the call's tenant and forwards the status; `None` when it could not be done.
async fn forward(edge: &Edge, hook: &CallWebhook) -> Option<()> {
    let ours = hook.parties().ours?;
    let (customer_id, resolved) = resolve(edge, hook, &ours, Instant::now()).await.ok()?;
    let sent_at = chrono::Utc::now();
    let update = media_pb::UpdateCallStatusRequest {
        call_sid: hook.call_sid.to_string(),
        status: hook
            .call_status
            .map_or(media_pb::CallStatus::Unspecified, |s| s.to_proto()) as i32,
        sequence_number: hook.sequence.unwrap_or(0),
        duration_seconds: hook.duration.unwrap_or(0),
        event_time: Some(prost_types::Timestamp {
            seconds: sent_at.timestamp(),
            nanos: 0,
        }),
    };
    edge.media
        .clone()
        .update_call_status(bearer(update, &resolved.tenant_token))
        .await
        .map_err(|s| {
            tracing::warn!(customer_id = customer_id.get(), call_sid = %hook.call_sid, code = ?s.code(), "status update not applied");
        })
        .ok()
        .map(|_| ())
}
