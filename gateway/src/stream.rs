//! `GET /twilio/media`: the Media Streams bridge. Twilio opens a signed WebSocket per call; the
//! gateway waits for `start` (at most [`START_DEADLINE`] from the upgrade), exchanges the stream
//! ticket the TwiML carried for a grant bound to the CallSid and StreamSid (media-svc's
//! `OpenStream`, once per socket: a ticket that is invalid, expired, for another call, or
//! presented with a second StreamSid for the call is refused there, before any audio moves),
//! then opens one bidirectional `StreamCall` to media-svc with the grant and relays frames both
//! ways until either side ends. The relay runs in a `media_stream` span
//! carrying the tenant and the CallSid, so its log lines need not repeat them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use mesh::api::media::{self as media_pb, stream_call_request, stream_call_response};
use mesh::auth::with_bearer as bearer;
use mesh::domain::{CallSid, CustomerId, StreamSid};
use secrecy::ExposeSecret as _;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::extract::SignedUpgrade;
use crate::retry::retry_unavailable;
use crate::state::Edge;
use crate::twilio::media::{self as twilio, Start, StreamEvent};
use crate::twilio::voice::STREAM_TICKET_PARAMETER;

/// Largest WebSocket message accepted from Twilio.
pub const MAX_WS_MESSAGE: usize = 64 * 1024;

/// Bytes read from a Media Streams socket at a time. tungstenite zero-fills its read buffer to
/// this size before every read (128 KiB by default), which at 50 messages of ~300 bytes a second
/// per call cost more CPU than handling them; larger messages just take several reads.
pub const WS_READ_BUFFER: usize = 8 * 1024;

/// How long after the upgrade a socket has to send `start`, in total: `connected`, pings and
/// pongs before it do not extend it, so a socket that keeps talking but never starts is cut as
/// surely as a silent one.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

/// The upgrade (behind the per-address limit). The signature is checked after the upgrade
/// headers, as it always was, so a request that is no upgrade at all is told so first.
pub async fn media_stream(
    State(edge): State<Arc<Edge>>,
    ws: WebSocketUpgrade,
    _: SignedUpgrade,
) -> Response {
    let live = edge.streams.token();
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            bridge(edge, socket).await;
            drop(live);
        })
}

/// How long a closing socket waits for Twilio's answering close frame.
pub const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Sends the close frame, then reads (and drops) what Twilio still sends until its answering
/// close, for at most [`CLOSE_HANDSHAKE`]. Twilio sends a frame every 20 ms until it has read the
/// close; a socket dropped with frames unread is reset instead of closed, and the reset can beat
/// the close frame to Twilio, which then sees a broken connection with no code (and does not
/// play the apology that follows `<Connect>`).
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// A call whose `start` media-svc granted a stream for.
struct Granted {
    customer_id: CustomerId,
    call_sid: CallSid,
    stream_sid: StreamSid,
    grant: String,
    start: Start,
}

/// Waits for `start`, exchanges its ticket for a grant, then relays both ways in the call's
/// span.
async fn bridge(edge: Arc<Edge>, mut socket: WebSocket) {
    let Some(start) = wait_for_start(&mut socket).await else {
        return;
    };
    let call = match open_stream(&edge, start).await {
        Ok(call) => call,
        Err((code, reason)) => return close(&mut socket, code, reason).await,
    };
    let span = tracing::info_span!(
        "media_stream",
        customer_id = call.customer_id.get(),
        call_sid = %call.call_sid,
    );
    relay(edge, socket, call).instrument(span).await;
}

/// Until `start` nothing is forwarded anywhere; `None` once the socket was closed instead
/// (by the client, for a bad first message, or at [`START_DEADLINE`] after the upgrade).
async fn wait_for_start(socket: &mut WebSocket) -> Option<Start> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => return None,
            Err(_) => {
                metrics::counter!("gateway_streams_without_start_total").increment(1);
                // Bounded: a client that reads nothing must not hold the socket open here.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    close(socket, 1008, "no start in time"),
                )
                .await;
                return None;
            }
        };
        let (code, reason) = match msg {
            Message::Text(t) => match twilio::parse_stream_message(&t) {
                Ok(StreamEvent::Start(s)) => return Some(s),
                Ok(StreamEvent::Connected) => continue,
                _ => (1008, "expected start"),
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            _ => (1003, "text frames only"),
        };
        close(socket, code, reason).await;
        return None;
    }
}

/// The `start`'s ticket exchanged for a grant (`OpenStream`, tried again while no media-svc
/// replica answers); otherwise the close code and reason: 1008 when the ticket or the sids are
/// refused, 1011 when media-svc cannot say.
async fn open_stream(edge: &Edge, start: Start) -> Result<Granted, (u16, &'static str)> {
    let refused = |reason| {
        metrics::counter!("gateway_stream_token_failures_total").increment(1);
        (1008, reason)
    };
    let Some(ticket) = start.custom_parameters.get(STREAM_TICKET_PARAMETER) else {
        return Err(refused("missing stream ticket"));
    };
    let (Ok(call_sid), Ok(stream_sid)) = (
        CallSid::parse(&start.call_sid),
        StreamSid::parse(&start.stream_sid),
    ) else {
        return Err(refused("invalid call or stream sid"));
    };
    let Ok(service_token) = edge.media_token.token() else {
        return Err((1011, "call unavailable"));
    };
    let request = media_pb::OpenStreamRequest {
        stream_ticket: ticket.clone(),
        call_sid: call_sid.to_string(),
        account_sid: start.account_sid.clone(),
        stream_sid: stream_sid.to_string(),
    };
    let opened = retry_unavailable(Instant::now(), || {
        let mut media = edge.media.clone();
        let request = bearer(request.clone(), service_token.expose_secret());
        async move { media.open_stream(request).await }
    })
    .await;
    let opened = match opened {
        Ok(o) => o.into_inner(),
        Err(s) => {
            tracing::warn!(call_sid = %call_sid, code = ?s.code(), "media-svc refused to open the stream");
            return Err(match s.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::FailedPrecondition
                | tonic::Code::InvalidArgument
                | tonic::Code::NotFound => refused("stream refused"),
                _ => (1011, "call unavailable"),
            });
        }
    };
    let Ok(customer_id) = CustomerId::new(opened.customer_id) else {
        return Err((1011, "call unavailable"));
    };
    Ok(Granted {
        customer_id,
        call_sid,
        stream_sid,
        grant: opened.stream_grant,
        start,
    })
}

type MediaStream = tonic::Streaming<media_pb::StreamCallResponse>;

/// Opens the call stream to media-svc with the grant. `Unavailable` means no replica took the
/// stream (a replica that just died is still in the balancer until its health probe fails,
/// within a second): it is tried again, on a fresh stream, as set-up RPCs are.
async fn open(
    edge: &Edge,
    call: &Granted,
) -> Result<(mpsc::Sender<media_pb::StreamCallRequest>, MediaStream), tonic::Status> {
    let mut custom = call.start.custom_parameters.clone();
    custom.remove(STREAM_TICKET_PARAMETER);
    let first = media_pb::StreamCallRequest {
        event: Some(stream_call_request::Event::Start(media_pb::StreamStart {
            call_sid: call.call_sid.to_string(),
            stream_sid: call.stream_sid.to_string(),
            account_sid: call.start.account_sid.clone(),
            caller: String::new(),
            custom_parameters: custom,
            stream_grant: call.grant.clone(),
        })),
    };
    let service_token = edge
        .media_token
        .token()
        .map_err(|_| tonic::Status::unavailable("no service token"))?;
    retry_unavailable(Instant::now(), || {
        let (to_media, rx) = mpsc::channel::<media_pb::StreamCallRequest>(64);
        to_media
            .try_send(first.clone())
            .expect("a fresh channel has room for its first message");
        let mut media = edge.media.clone();
        let request = bearer(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            service_token.expose_secret(),
        );
        async move {
            let stream = media.stream_call(request).await?.into_inner();
            Ok((to_media, stream))
        }
    })
    .await
}

/// What one message from Twilio asks of the relay.
enum FromTwilio {
    /// Forward this to media-svc.
    Forward(stream_call_request::Event),
    /// Nothing to forward.
    Skip,
    /// The call ends, for this reason (after telling media-svc, on `stop`).
    End(&'static str),
}

fn from_twilio(msg: Option<Result<Message, axum::Error>>) -> FromTwilio {
    let Some(Ok(msg)) = msg else {
        return FromTwilio::End("twilio-closed");
    };
    let text = match msg {
        Message::Text(t) => t,
        Message::Close(_) => return FromTwilio::End("twilio-closed"),
        Message::Ping(_) | Message::Pong(_) => return FromTwilio::Skip,
        Message::Binary(_) => {
            metrics::counter!("gateway_frames_dropped_total", "reason" => "binary").increment(1);
            return FromTwilio::Skip;
        }
    };
    let Ok(event) = twilio::parse_stream_message(&text) else {
        metrics::counter!("gateway_frames_dropped_total", "reason" => "malformed").increment(1);
        return FromTwilio::Skip;
    };
    FromTwilio::Forward(match event {
        StreamEvent::Media {
            payload,
            sequence,
            timestamp_ms,
        } => {
            metrics::counter!("gateway_frames_in_total").increment(1);
            stream_call_request::Event::Audio(media_pb::AudioFrame {
                payload,
                sequence,
                timestamp_ms,
            })
        }
        StreamEvent::Dtmf(digit) => stream_call_request::Event::Dtmf(media_pb::DtmfDigit { digit }),
        StreamEvent::Mark(name) => stream_call_request::Event::Mark(media_pb::MarkPlayed { name }),
        StreamEvent::Stop => stream_call_request::Event::Stop(media_pb::StreamStop {}),
        StreamEvent::Connected | StreamEvent::Start(_) => return FromTwilio::Skip,
        StreamEvent::Unknown => {
            metrics::counter!("gateway_unknown_events_total").increment(1);
            return FromTwilio::Skip;
        }
    })
}

/// The text frame for Twilio that one message from media-svc becomes (`Ok(None)`: nothing to
/// send), or why the call ends.
fn to_twilio(
    out: Result<Option<media_pb::StreamCallResponse>, tonic::Status>,
    stream_sid: &StreamSid,
) -> Result<Option<String>, &'static str> {
    let event = match out {
        Ok(Some(m)) => m.event,
        Ok(None) => return Err("media-ended"),
        Err(s) => {
            tracing::warn!(code = ?s.code(), "call stream from media-svc failed");
            return Err("media-failed");
        }
    };
    Ok(Some(match event {
        Some(stream_call_response::Event::Audio(a)) => {
            metrics::counter!("gateway_frames_out_total").increment(1);
            twilio::outbound::media(stream_sid, &a.payload)
        }
        Some(stream_call_response::Event::Mark(m)) => twilio::outbound::mark(stream_sid, &m.name),
        Some(stream_call_response::Event::Clear(_)) => twilio::outbound::clear(stream_sid),
        Some(stream_call_response::Event::Hangup(_)) => return Err("hangup"),
        Some(stream_call_response::Event::Transfer(_)) => return Err("transfer"),
        None => return Ok(None),
    }))
}

/// Relays frames both ways until either side ends, then closes the socket: with an error code
/// when the call ended abnormally, so Twilio plays the apology that follows `<Connect>`.
async fn relay(edge: Arc<Edge>, mut socket: WebSocket, call: Granted) {
    let (to_media, mut from_media) = match open(&edge, &call).await {
        Ok(opened) => opened,
        Err(s) => {
            tracing::warn!(code = ?s.code(), "media-svc refused the call stream");
            return close(&mut socket, 1011, "call unavailable").await;
        }
    };
    metrics::gauge!("gateway_active_streams").increment(1.0);
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    let outcome: &'static str = loop {
        tokio::select! {
            msg = socket.recv() => match from_twilio(msg) {
                FromTwilio::Skip => {}
                FromTwilio::End(outcome) => break outcome,
                FromTwilio::Forward(event) => {
                    let stop = matches!(event, stream_call_request::Event::Stop(_));
                    let sent = to_media.send(media_pb::StreamCallRequest { event: Some(event) }).await;
                    if stop {
                        break "stop";
                    }
                    if sent.is_err() {
                        break "media-closed";
                    }
                }
            },
            out = from_media.message() => match to_twilio(out, &call.stream_sid) {
                Ok(None) => {}
                Ok(Some(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "twilio-gone";
                    }
                }
                Err(outcome) => break outcome,
            },
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
            close(&mut socket, 1011, "call ended").await
        }
        _ => close(&mut socket, 1000, "bye").await,
    }
}
