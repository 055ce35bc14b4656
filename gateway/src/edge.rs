//! The HTTP handlers: Twilio voice and status webhooks, the Media Streams WebSocket, and the
//! legacy memory REST endpoints. Everything that arrives is checked here (signature, size,
//! types) before anything leaves as a gRPC call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::{self as media_pb, stream_call_request, stream_call_response};
use mesh::api::memory as memory_pb;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::{ExchangeLegacyTokenRequest, ResolveNumberRequest};
use mesh::auth::{TokenSource, Verifier, with_bearer as bearer};
use mesh::domain::CallerNumber;
use mesh::identity::names;
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::limits::Limits;
use crate::twilio::{self, CallWebhook, StreamEvent};
use crate::{signature, twiml};

/// Everything the handlers share.
pub struct Edge {
    /// Public base URL (no trailing slash), e.g. `https://edge.example.com`.
    pub public_base_url: String,
    /// The `wss://` URL of the Media Streams endpoint.
    pub media_ws_url: String,
    /// Twilio Auth Token bytes.
    pub auth_token: secrecy::SecretSlice<u8>,
    /// tenant-svc client.
    pub tenant: EdgeServiceClient<Channel>,
    /// media-svc client.
    pub media: CallServiceClient<Channel>,
    /// memory-svc client.
    pub memory: MemoryServiceClient<Channel>,
    /// The channels to tenant-svc and media-svc, for readiness probes.
    pub peer_channels: [(&'static str, Channel); 2],
    /// The gateway's service tokens to tenant-svc.
    pub tenant_token: TokenSource,
    /// Verifies stream tokens (tenant tokens bound to the CallSid) on the WebSocket.
    pub stream_verifier: Verifier,
    /// The answer's time budget.
    pub budget: Duration,
    /// What callers hear when the number is unknown or the tenant suspended.
    pub unavailable_message: String,
    /// What callers hear when the platform cannot take the call.
    pub apology_message: String,
    /// What callers hear when the tenant is at its concurrent-call limit.
    pub busy_message: String,
    /// TwiML already answered per (AccountSid, CallSid), for Twilio's retries.
    pub answered: Mutex<HashMap<String, (Instant, String)>>,
    /// Rate limits.
    pub limits: Limits,
    /// Every Media Streams bridge holds a token of this tracker from the upgrade on: an upgraded
    /// connection leaves hyper's hands, so the drain on shutdown waits here for live calls.
    pub streams: tokio_util::task::TaskTracker,
    /// Cancelled when the drain deadline passes: bridges still running close their sockets with
    /// an error code (Twilio plays the apology) instead of vanishing with the process.
    pub drain_expired: tokio_util::sync::CancellationToken,
    /// Key for hashing phone numbers in logs.
    pub log_key: Vec<u8>,
}

/// How long a voice answer is remembered for retries of the same CallSid.
const ANSWER_MEMORY: Duration = Duration::from_secs(300);
/// Largest WebSocket message accepted from Twilio.
pub const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Bytes read from a Media Streams socket at a time. tungstenite zero-fills its read buffer to
/// this size before every read (128 KiB by default), which at 50 messages of ~300 bytes a second
/// per call cost more CPU than handling them; larger messages just take several reads.
pub const WS_READ_BUFFER: usize = 8 * 1024;

/// How long the gateway keeps trying an RPC of a call's set-up, or opening a call's stream to
/// media-svc, while no replica is available (then Twilio gets the apology, inside the 2-second
/// answer budget, or the socket is closed and Twilio plays it).
const RETRY_BUDGET: Duration = Duration::from_millis(1000);

/// Pause between two attempts of a call's set-up RPC or stream.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl Edge {
    /// A keyed hash of a phone number, for logs (never the number itself).
    pub fn hash_number(&self, number: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.log_key).expect("any key length");
        mac.update(number.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    /// Drops remembered answers older than [`ANSWER_MEMORY`]; called periodically, not per
    /// request, so a webhook never pays for scanning the whole map.
    pub fn forget_old_answers(&self) {
        self.answered
            .lock()
            .expect("not poisoned")
            .retain(|_, (at, _)| at.elapsed() < ANSWER_MEMORY);
    }

    fn signed_url(&self, uri: &Uri) -> String {
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        format!("{}{}", self.public_base_url, pq)
    }

    fn signature_ok(&self, headers: &HeaderMap, url: &str, params: &[(String, String)]) -> bool {
        let Some(sig) = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        signature::validate(self.auth_token.expose_secret(), url, params, sig)
    }
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

fn forbidden() -> Response {
    metrics::counter!("gateway_signature_failures_total").increment(1);
    (StatusCode::FORBIDDEN, "invalid Twilio signature\n").into_response()
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
}

/// `POST /twilio/voice` (and the old `/phone/incoming-realtime`).
pub async fn voice(
    State(edge): State<Arc<Edge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = edge.limits.check_ip(peer.ip()) {
        return r;
    }
    let Ok(params) = twilio::parse_form(&body) else {
        return bad_request("malformed form body");
    };
    if !edge.signature_ok(&headers, &edge.signed_url(&uri), &params) {
        tracing::warn!(path = uri.path(), "voice webhook with an invalid signature");
        return forbidden();
    }
    let hook = match CallWebhook::from_params(&params) {
        Ok(h) => h,
        Err(e) => return bad_request(e),
    };
    if let Some(r) = edge.limits.check_account(hook.account_sid.as_str()) {
        return r;
    }
    let key = format!("{}:{}", hook.account_sid, hook.call_sid);
    if let Some((_, answer)) = edge
        .answered
        .lock()
        .expect("not poisoned")
        .get(&key)
        .filter(|(at, _)| at.elapsed() < ANSWER_MEMORY)
    {
        return xml(answer.clone());
    }
    let started = Instant::now();
    let answer = match tokio::time::timeout(edge.budget, answer_call(&edge, &hook)).await {
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
            edge.answered
                .lock()
                .expect("not poisoned")
                .insert(key, (Instant::now(), doc.clone()));
            xml(doc)
        }
        Answer::Retryable(doc) => xml(doc),
    }
}

enum Answer {
    /// The same answer should be given to a retry.
    Final(String),
    /// A temporary failure: a retry may do better.
    Retryable(String),
}

async fn answer_call(edge: &Edge, hook: &CallWebhook) -> Answer {
    let apology = || Answer::Retryable(twiml::say_hangup(&edge.apology_message));
    let Ok(service_token) = edge.tenant_token.token() else {
        return apology();
    };
    // The tenant's own number is `To` on inbound calls and `From` on the calls it placed
    // (`outbound-api`); media-svc's `from` is always the other party.
    let (ours, remote) = if hook.direction == "outbound-api" {
        (&hook.from_raw, &hook.to)
    } else {
        (&hook.to, &hook.from_raw)
    };
    let began = Instant::now();
    let resolve = ResolveNumberRequest {
        called_number: ours.clone(),
        account_sid: hook.account_sid.to_string(),
        call_sid: hook.call_sid.to_string(),
    };
    let resolved = retry_unavailable(began, || {
        let mut tenant = edge.tenant.clone();
        let request = bearer(resolve.clone(), service_token.expose_secret());
        async move { tenant.resolve_number(request).await }
    })
    .await;
    let resolved = match resolved {
        Ok(r) => r.into_inner(),
        Err(s)
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
            return Answer::Final(twiml::say_hangup(&edge.unavailable_message));
        }
        Err(s) => {
            metrics::counter!("gateway_calls_refused_total", "reason" => "tenant-svc").increment(1);
            tracing::warn!(call_sid = %hook.call_sid, code = ?s.code(), "tenant-svc unavailable; apologising");
            return apology();
        }
    };
    let customer_id = resolved.customer_id;
    let register = media_pb::RegisterCallRequest {
        call_sid: hook.call_sid.to_string(),
        account_sid: hook.account_sid.to_string(),
        from: remote.clone(),
        to: ours.clone(),
        direction: direction(&hook.direction) as i32,
        status: media_pb::CallStatus::Ringing as i32,
    };
    // Idempotent on the CallSid, so a retry cannot register the call twice.
    let registered = retry_unavailable(began, || {
        let mut media = edge.media.clone();
        let request = bearer(register.clone(), &resolved.tenant_token);
        async move { media.register_call(request).await }
    })
    .await;
    if let Err(s) = &registered
        && s.code() == tonic::Code::ResourceExhausted
    {
        metrics::counter!("gateway_calls_refused_total", "reason" => "busy").increment(1);
        tracing::info!(customer_id, call_sid = %hook.call_sid, "tenant at its concurrent-call limit; busy message");
        return Answer::Final(twiml::say_hangup(&edge.busy_message));
    }
    if let Err(s) = registered {
        metrics::counter!("gateway_calls_refused_total", "reason" => "media-svc").increment(1);
        tracing::warn!(customer_id, call_sid = %hook.call_sid, code = ?s.code(), "media-svc could not register the call; apologising");
        return apology();
    }
    metrics::counter!("gateway_calls_started_total").increment(1);
    tracing::info!(
        customer_id,
        call_sid = %hook.call_sid,
        direction = %hook.direction,
        remote = %CallerNumber::from_network(remote).map(|n| edge.hash_number(n.as_str())).unwrap_or_else(|| "none".into()),
        "call answered"
    );
    Answer::Final(twiml::connect_stream(
        &edge.media_ws_url,
        &[("stream_token", &resolved.tenant_token)],
        &edge.apology_message,
    ))
}

/// Runs `rpc` again while it fails with `Unavailable` (no replica took it: one that just died
/// stays in the balancer until its health probe fails, within a second) and less than
/// [`RETRY_BUDGET`] has passed since `began`; the answer budget still bounds the whole.
async fn retry_unavailable<T, F>(
    began: Instant,
    mut rpc: impl FnMut() -> F,
) -> Result<T, tonic::Status>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match rpc().await {
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && began.elapsed() + RETRY_PAUSE < RETRY_BUDGET =>
            {
                metrics::counter!("gateway_rpc_retries_total").increment(1);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

fn direction(d: &str) -> media_pb::CallDirection {
    match d {
        "outbound-api" => media_pb::CallDirection::OutboundApi,
        "outbound-dial" => media_pb::CallDirection::OutboundDial,
        _ => media_pb::CallDirection::Inbound,
    }
}

fn status(s: &str) -> media_pb::CallStatus {
    use media_pb::CallStatus as S;
    match s {
        "initiated" => S::Initiated,
        "queued" => S::Queued,
        "ringing" => S::Ringing,
        "in-progress" => S::InProgress,
        "completed" => S::Completed,
        "busy" => S::Busy,
        "failed" => S::Failed,
        "no-answer" => S::NoAnswer,
        "canceled" => S::Canceled,
        _ => S::Unspecified,
    }
}

/// `POST /twilio/status`: forwards the status callback to media-svc.
pub async fn status_callback(
    State(edge): State<Arc<Edge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = edge.limits.check_ip(peer.ip()) {
        return r;
    }
    let Ok(params) = twilio::parse_form(&body) else {
        return bad_request("malformed form body");
    };
    if !edge.signature_ok(&headers, &edge.signed_url(&uri), &params) {
        return forbidden();
    }
    let hook = match CallWebhook::from_params(&params) {
        Ok(h) => h,
        Err(e) => return bad_request(e),
    };
    let work = async {
        let token = edge.tenant_token.token().ok()?;
        // The tenant's own number is `To` on inbound calls and `From` on calls it placed.
        let ours = if hook.direction == "inbound" {
            &hook.to
        } else {
            &hook.from_raw
        };
        let resolved = edge
            .tenant
            .clone()
            .resolve_number(bearer(
                ResolveNumberRequest {
                    called_number: ours.clone(),
                    account_sid: hook.account_sid.to_string(),
                    call_sid: hook.call_sid.to_string(),
                },
                token.expose_secret(),
            ))
            .await
            .ok()?
            .into_inner();
        let sent_at = chrono::Utc::now();
        edge.media
            .clone()
            .update_call_status(bearer(
                media_pb::UpdateCallStatusRequest {
                    call_sid: hook.call_sid.to_string(),
                    status: status(&hook.call_status) as i32,
                    sequence_number: hook.sequence.unwrap_or(0),
                    duration_seconds: hook.duration.unwrap_or(0),
                    event_time: Some(prost_types::Timestamp {
                        seconds: sent_at.timestamp(),
                        nanos: 0,
                    }),
                },
                &resolved.tenant_token,
            ))
            .await
            .map_err(|s| {
                tracing::warn!(customer_id = resolved.customer_id, call_sid = %hook.call_sid, code = ?s.code(), "status update not applied");
            })
            .ok()
    };
    if tokio::time::timeout(edge.budget, work)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::warn!(call_sid = %hook.call_sid, "status callback could not be forwarded");
    }
    xml(twiml::empty())
}

/// `GET /twilio/media`: the Media Streams WebSocket.
pub async fn media_stream(
    State(edge): State<Arc<Edge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(r) = edge.limits.check_ip(peer.ip()) {
        return r;
    }
    // Twilio signs the upgrade against the wss:// URL with no parameters.
    if !edge.signature_ok(&headers, &edge.media_ws_url, &[]) {
        tracing::warn!("Media Streams upgrade with an invalid signature");
        return forbidden();
    }
    let live = edge.streams.token();
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            bridge(edge, socket).await;
            drop(live);
        })
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Waits for `start`, checks the stream token, then relays both ways until either side ends.
async fn bridge(edge: Arc<Edge>, mut socket: WebSocket) {
    // 1. Until `start`: nothing is forwarded anywhere.
    let start = loop {
        let msg = match tokio::time::timeout(Duration::from_secs(10), socket.recv()).await {
            Ok(Some(Ok(m))) => m,
            _ => return,
        };
        match msg {
            Message::Text(t) => match twilio::parse_stream_message(&t) {
                Ok(StreamEvent::Start(s)) => break s,
                Ok(StreamEvent::Connected) => continue,
                _ => return close(socket, 1008, "expected start").await,
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => return close(socket, 1003, "text frames only").await,
        }
    };
    let Some(token) = start.custom_parameters.get("stream_token").cloned() else {
        metrics::counter!("gateway_stream_token_failures_total").increment(1);
        return close(socket, 1008, "missing stream token").await;
    };
    let caller = match edge.stream_verifier.verify(&token) {
        Ok(mesh::auth::Caller::Tenant(t)) if t.subject == start.call_sid => t,
        _ => {
            metrics::counter!("gateway_stream_token_failures_total").increment(1);
            tracing::warn!(
                "Media Streams start with an invalid, expired or mismatched stream token"
            );
            return close(socket, 1008, "invalid stream token").await;
        }
    };
    let customer_id = caller.customer_id.get();
    let stream_sid = start.stream_sid.clone();
    let span = tracing::info_span!("media_stream", customer_id, call_sid = %start.call_sid);
    let _entered = span.enter();

    // 2. Open the call stream to media-svc. `Unavailable` means no replica took the stream (a
    // replica that just died is still in the balancer until its health probe fails, within a
    // second): it is tried again, on a fresh stream, as set-up RPCs are (`retry_unavailable`).
    let mut custom = start.custom_parameters.clone();
    custom.remove("stream_token");
    let first = media_pb::StreamCallRequest {
        event: Some(stream_call_request::Event::Start(media_pb::StreamStart {
            call_sid: start.call_sid.clone(),
            stream_sid: start.stream_sid.clone(),
            account_sid: start.account_sid.clone(),
            caller: String::new(),
            custom_parameters: custom,
        })),
    };
    let opened = retry_unavailable(Instant::now(), || {
        let (to_media, rx) = mpsc::channel::<media_pb::StreamCallRequest>(64);
        to_media
            .try_send(first.clone())
            .expect("a fresh channel has room for its first message");
        let mut media = edge.media.clone();
        let request = bearer(tokio_stream::wrappers::ReceiverStream::new(rx), &token);
        async move {
            let stream = media.stream_call(request).await?.into_inner();
            Ok((to_media, stream))
        }
    })
    .await;
    let (to_media, mut from_media) = match opened {
        Ok(opened) => opened,
        Err(s) => {
            tracing::warn!(code = ?s.code(), "media-svc refused the call stream");
            return close(socket, 1011, "call unavailable").await;
        }
    };
    metrics::gauge!("gateway_active_streams").increment(1.0);
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    let outcome: &'static str = loop {
        tokio::select! {
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break "twilio-closed" };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break "twilio-closed",
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        metrics::counter!("gateway_frames_dropped_total", "reason" => "binary").increment(1);
                        continue;
                    }
                };
                let event = match twilio::parse_stream_message(&text) {
                    Ok(e) => e,
                    Err(_) => {
                        metrics::counter!("gateway_frames_dropped_total", "reason" => "malformed").increment(1);
                        continue;
                    }
                };
                let forward = match event {
                    StreamEvent::Media { payload, sequence, timestamp_ms } => {
                        metrics::counter!("gateway_frames_in_total").increment(1);
                        stream_call_request::Event::Audio(media_pb::AudioFrame { payload, sequence, timestamp_ms })
                    }
                    StreamEvent::Dtmf(digit) => stream_call_request::Event::Dtmf(media_pb::DtmfDigit { digit }),
                    StreamEvent::Mark(name) => stream_call_request::Event::Mark(media_pb::MarkPlayed { name }),
                    StreamEvent::Stop => {
                        let _ = to_media.send(media_pb::StreamCallRequest { event: Some(stream_call_request::Event::Stop(media_pb::StreamStop {})) }).await;
                        break "stop";
                    }
                    StreamEvent::Connected | StreamEvent::Start(_) => continue,
                    StreamEvent::Unknown => {
                        metrics::counter!("gateway_unknown_events_total").increment(1);
                        continue;
                    }
                };
                if to_media.send(media_pb::StreamCallRequest { event: Some(forward) }).await.is_err() {
                    break "media-closed";
                }
            }
            out = from_media.message() => {
                let event = match out {
                    Ok(Some(m)) => m.event,
                    Ok(None) => break "media-ended",
                    Err(s) => {
                        tracing::warn!(code = ?s.code(), "call stream from media-svc failed");
                        break "media-failed";
                    }
                };
                let text = match event {
                    Some(stream_call_response::Event::Audio(a)) => {
                        metrics::counter!("gateway_frames_out_total").increment(1);
                        twilio::outbound::media(&stream_sid, &a.payload)
                    }
                    Some(stream_call_response::Event::Mark(m)) => twilio::outbound::mark(&stream_sid, &m.name),
                    Some(stream_call_response::Event::Clear(_)) => twilio::outbound::clear(&stream_sid),
                    Some(stream_call_response::Event::Hangup(_)) => break "hangup",
                    Some(stream_call_response::Event::Transfer(_)) => break "transfer",
                    None => continue,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break "twilio-gone";
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break "twilio-gone";
                }
            }
            () = edge.drain_expired.cancelled() => break "drain-deadline",
        }
    };
    metrics::gauge!("gateway_active_streams").decrement(1.0);
    tracing::info!(outcome, "media stream ended");
    match outcome {
        // Abnormal end: close with an error so Twilio plays the apology verb.
        "media-failed" | "media-closed" | "media-ended" | "drain-deadline" => {
            close(socket, 1011, "call ended").await
        }
        _ => close(socket, 1000, "bye").await,
    }
}

// ----------------------------------------------------------------------------------------------
// Legacy REST (old memory service clients)
// ----------------------------------------------------------------------------------------------

/// A JSON error answer of the legacy endpoints: `{"success": false, "error": ...}`.
pub struct JsonError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "success": false, "error": self.message })),
        )
            .into_response()
    }
}

fn json_error(status: StatusCode, message: impl Into<String>) -> JsonError {
    JsonError {
        status,
        message: message.into(),
    }
}

fn unauthorized(message: &str) -> JsonError {
    json_error(StatusCode::UNAUTHORIZED, message)
}

fn grpc_error(s: tonic::Status) -> JsonError {
    match s.code() {
        tonic::Code::InvalidArgument => json_error(StatusCode::BAD_REQUEST, s.message()),
        tonic::Code::NotFound => json_error(StatusCode::NOT_FOUND, s.message()),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            unauthorized("invalid token")
        }
        tonic::Code::ResourceExhausted => json_error(StatusCode::TOO_MANY_REQUESTS, "rate limited"),
        _ => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory service unavailable",
        ),
    }
}

/// Exchanges the legacy bearer token for a tenant token (tenant-svc verifies it), then applies
/// the tenant's rate limit.
async fn legacy_token(edge: &Edge, headers: &HeaderMap) -> Result<(i64, String), Response> {
    let Some(raw) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized("missing bearer token").into_response());
    };
    let Some(token) = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
    else {
        return Err(unauthorized("missing bearer token").into_response());
    };
    let unavailable = || json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable").into_response();
    let service = edge.tenant_token.token().map_err(|_| unavailable())?;
    let r = tokio::time::timeout(
        edge.budget,
        edge.tenant.clone().exchange_legacy_token(bearer(
            ExchangeLegacyTokenRequest {
                legacy_token: token.trim().to_owned(),
            },
            service.expose_secret(),
        )),
    )
    .await
    .map_err(|_| unavailable())?;
    let (customer_id, token) = match r {
        Ok(r) => {
            let r = r.into_inner();
            (r.customer_id, r.tenant_token)
        }
        Err(s) if s.code() == tonic::Code::Unauthenticated => {
            return Err(unauthorized("invalid or expired token").into_response());
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            return Err(unauthorized(s.message()).into_response());
        }
        Err(s) => {
            tracing::warn!(code = ?s.code(), "legacy token exchange failed");
            return Err(unavailable());
        }
    };
    if let Some(r) = edge.limits.check_tenant(customer_id) {
        return Err(r);
    }
    Ok((customer_id, token))
}

fn parse_json(body: &Bytes) -> Result<serde_json::Value, JsonError> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, "body must be a JSON object"))
}

fn str_field(v: &serde_json::Value, name: &str) -> Result<String, JsonError> {
    v.get(name)
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .ok_or_else(|| json_error(StatusCode::BAD_REQUEST, format!("{name}: required string")))
}

/// A legacy request after authentication, rate limiting and body parsing.
struct LegacyCall {
    customer_id: i64,
    token: String,
    body: serde_json::Value,
    user_id: String,
}

/// The steps every legacy endpoint takes first: exchange the bearer token (tenant-svc verifies
/// it), apply the tenant's limit, parse the JSON object and its `user_id`.
async fn legacy_request(
    edge: &Edge,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<LegacyCall, Box<Response>> {
    let (customer_id, token) = legacy_token(edge, headers).await.map_err(Box::new)?;
    let body = parse_json(body).map_err(|e| Box::new(e.into_response()))?;
    let user_id = str_field(&body, "user_id").map_err(|e| Box::new(e.into_response()))?;
    Ok(LegacyCall {
        customer_id,
        token,
        body,
        user_id,
    })
}

fn to_prost_value(v: &serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(prost_types::ListValue {
            values: a.iter().map(to_prost_value).collect(),
        }),
        serde_json::Value::Object(o) => Kind::StructValue(prost_types::Struct {
            fields: o
                .iter()
                .map(|(k, v)| (k.clone(), to_prost_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn from_prost_value(v: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
        }
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(l)) => l.values.iter().map(from_prost_value).collect(),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), from_prost_value(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// `POST /memory/store` `{user_id, role, content, metadata}` -> `{success, id, memory_id, customer_id}`.
pub async fn legacy_store(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let LegacyCall {
        customer_id,
        token,
        body: v,
        user_id,
    } = match legacy_request(&edge, &headers, &body).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    let content = match str_field(&v, "content") {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let role = v
        .get("role")
        .and_then(|r| r.as_str())
        .unwrap_or("user")
        .to_owned();
    let metadata = v
        .get("metadata")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let mut value = serde_json::json!({ "role": role, "content": content, "metadata": metadata });
    if let Some(thread) = metadata.get("thread_id").and_then(|t| t.as_str()) {
        value["thread_id"] = thread.into();
    }
    let r = edge
        .memory
        .clone()
        .store_memory(bearer(
            memory_pb::StoreMemoryRequest {
                user_id,
                r#type: memory_pb::MemoryType::Conversation as i32,
                key: role.chars().take(200).collect(),
                value: Some(to_prost_value(&value)),
                scope: memory_pb::MemoryScope::User as i32,
                source: "legacy-rest".into(),
                ttl_days: 0,
            },
            &token,
        ))
        .await;
    match r {
        Ok(r) => {
            let id = r.into_inner().memory.map(|m| m.id).unwrap_or_default();
            axum::Json(serde_json::json!({ "success": true, "id": id, "memory_id": id, "customer_id": customer_id })).into_response()
        }
        Err(s) => grpc_error(s).into_response(),
    }
}

/// `POST /memory/retrieve` `{user_id, limit, thread_id}` -> `{success, memories, count, customer_id}`.
pub async fn legacy_retrieve(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let LegacyCall {
        customer_id,
        token,
        body: v,
        user_id,
    } = match legacy_request(&edge, &headers, &body).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    let limit = v.get("limit").and_then(|l| l.as_i64()).unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, "limit: must be between 1 and 500")
            .into_response();
    }
    let thread_id = v
        .get("thread_id")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_owned();
    let r = edge
        .memory
        .clone()
        .list_memories(bearer(
            memory_pb::ListMemoriesRequest {
                user_id,
                types: vec![],
                thread_id,
                page_size: limit as i32,
                page_token: String::new(),
            },
            &token,
        ))
        .await;
    match r {
        Ok(r) => {
            let memories: Vec<serde_json::Value> = r
                .into_inner()
                .memories
                .iter()
                .map(|m| {
                    let value = m.value.as_ref().map(from_prost_value).unwrap_or_default();
                    serde_json::json!({
                        "id": m.id,
                        "user_id": m.user_id,
                        "type": memory_pb::MemoryType::try_from(m.r#type).map(|t| t.as_str_name().trim_start_matches("MEMORY_TYPE_").to_ascii_lowercase()).unwrap_or_default(),
                        "key": m.key,
                        "value": value,
                        "created_at": m.create_time.as_ref().and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32)).map(|t| t.to_rfc3339()),
                    })
                })
                .collect();
            let count = memories.len();
            axum::Json(serde_json::json!({ "success": true, "memories": memories, "count": count, "customer_id": customer_id })).into_response()
        }
        Err(s) => grpc_error(s).into_response(),
    }
}

/// `POST /v2/context/enriched` `{user_id, num_summaries}` -> `{success, context, summary_count,
/// has_personality_data, customer_id}`.
pub async fn legacy_enriched(
    State(edge): State<Arc<Edge>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let LegacyCall {
        customer_id,
        token,
        body: v,
        user_id,
    } = match legacy_request(&edge, &headers, &body).await {
        Ok(call) => call,
        Err(r) => return *r,
    };
    let num_summaries = match v.get("num_summaries") {
        None | Some(serde_json::Value::Null) => None,
        Some(n) => match n.as_i64() {
            Some(n) if (0..=20).contains(&n) => Some(n as i32),
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "num_summaries: must be between 0 and 20",
                )
                .into_response();
            }
        },
    };
    let r = edge
        .memory
        .clone()
        .get_enriched_context(bearer(
            memory_pb::GetEnrichedContextRequest {
                user_id,
                num_summaries,
            },
            &token,
        ))
        .await;
    match r {
        Ok(r) => {
            let r = r.into_inner();
            axum::Json(serde_json::json!({
                "success": true,
                "context": r.rendered_text,
                "summary_count": r.summary_count,
                "has_personality_data": r.has_personality_data,
                "customer_id": customer_id,
            }))
            .into_response()
        }
        Err(s) => grpc_error(s).into_response(),
    }
}

/// Used by the readiness probe: the names of the peers the gateway needs.
pub const PEERS: [&str; 3] = [names::TENANT_SVC, names::MEDIA_SVC, names::MEMORY_SVC];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Arbitrary JSON values up to a few levels deep.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(Into::into),
            any::<i32>().prop_map(Into::into),
            "\\PC{0,16}".prop_map(Into::into),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Into::into),
                proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                    .prop_map(|m| { serde_json::Value::Object(m.into_iter().collect()) }),
            ]
        })
    }

    #[test]
    fn nesting_beyond_the_parser_limit_is_a_clean_400() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let body = Bytes::from(format!(r#"{{"user_id":"+15551111111","metadata":{deep}}}"#));
        let err = parse_json(&body).expect_err("refused");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    proptest! {
        #[test]
        fn legacy_bodies_of_arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            match parse_json(&Bytes::from(body)) {
                Ok(v) => prop_assert!(v.is_object()),
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
        }

        #[test]
        fn legacy_json_survives_the_trip_through_protobuf(v in json()) {
            // Integers become doubles on the way (protobuf's Value has one number type), so
            // compare after the same normalisation.
            let back = from_prost_value(&to_prost_value(&v));
            let normalised: serde_json::Value =
                serde_json::from_str(&serde_json::to_string(&back).unwrap()).unwrap();
            let expected = from_prost_value(&to_prost_value(&normalised));
            prop_assert_eq!(back, expected);
            if let serde_json::Value::Object(o) = &v {
                let body = Bytes::from(serde_json::to_vec(&v).unwrap());
                let Ok(parsed) = parse_json(&body) else { panic!("an object parses") };
                prop_assert_eq!(parsed.as_object().map(|m| m.len()), Some(o.len()));
                for name in ["user_id", "content"] {
                    match o.get(name).and_then(|x| x.as_str()) {
                        Some(s) => prop_assert_eq!(str_field(&parsed, name).ok(), Some(s.to_owned())),
                        None => prop_assert!(str_field(&parsed, name).is_err()),
                    }
                }
            }
        }

        #[test]
        fn webhook_params_of_any_shape_never_panic(pairs in proptest::collection::vec(
            (prop_oneof![Just("CallSid".to_owned()), Just("AccountSid".to_owned()), Just("From".to_owned()),
                         Just("To".to_owned()), Just("Direction".to_owned()), Just("CallStatus".to_owned()),
                         "\\PC{0,8}"], "\\PC{0,40}"), 0..10)) {
            let _ = CallWebhook::from_params(&pairs);
        }
    }
}
