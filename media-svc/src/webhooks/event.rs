//! The body of a post-call event (`call.completed`): the call as Twilio spells it, the summary
//! memory-svc returned, the transcript, and the caller as a number or its keyed hash. Built once
//! when the event is queued ([`build`]) and never again: every attempt signs and sends the same
//! bytes, cut to [`MAX_BODY`] by dropping transcript turns from the end.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac as _};
use mesh::api::common::{Speaker, TranscriptTurn};
use mesh::api::media::{CallDirection, CallStatus};
use mesh::domain::CustomerId;
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::error::MediaError;
use crate::store::CallRow;

/// Largest body tenant-svc signs (`SignWebhookEvent`); the transcript is cut to fit.
pub const MAX_BODY: usize = 1 << 20;

/// `"hmac-sha256:" + hex(HMAC-SHA256(key, "<customer_id>:<number>"))`: stable per tenant and
/// number (a tenant can match repeat callers), different across tenants, and not reversible by
/// enumerating phone numbers without the key.
pub fn caller_hash(key: &[u8], customer: CustomerId, number: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(customer.get().to_string().as_bytes());
    mac.update(b":");
    mac.update(number.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// How the caller appears in the event.
pub enum CallerField {
    /// The number itself (`webhook_raw_numbers`), `None` when the network withheld it.
    Raw(Option<String>),
    /// Its keyed hash ([`caller_hash`]), `None` when the network withheld it.
    Hashed(Option<String>),
}

/// The event body of `call` (JSON, at most [`MAX_BODY`] bytes).
pub fn build(
    event_id: Uuid,
    created_at: DateTime<Utc>,
    customer: CustomerId,
    call: &CallRow,
    caller: CallerField,
    summary: &str,
    turns: Vec<TranscriptTurn>,
) -> Result<Vec<u8>, MediaError> {
    let (caller_number, caller_number_hash) = match caller {
        CallerField::Raw(n) => (Some(n), None),
        CallerField::Hashed(h) => (None, Some(h)),
    };
    let persona = call.persona.clone();
    serialize_within_limit(EventBody {
        kind: "call.completed",
        event_id: event_id.to_string(),
        created_at: rfc3339(created_at),
        customer_id: customer.get(),
        call: CallPart {
            call_sid: call.call_sid.as_str().to_owned(),
            direction: direction_name(call.direction),
            status: status_name(call.status),
            duration_seconds: call.duration_seconds,
            started_at: rfc3339(call.answered_at.unwrap_or(call.created_at)),
            ended_at: call.ended_at.map(rfc3339),
            caller_number,
            caller_number_hash,
            persona: (!persona.is_empty()).then_some(persona),
        },
        summary,
        transcript: turns
            .into_iter()
            .map(|t| TurnPart {
                speaker: speaker_name(t.speaker),
                text: t.text,
                offset_ms: t.offset_ms,
            })
            .collect(),
        transcript_truncated: false,
    })
}

/// The body of a `message.created` event (JSON): the task, never its transcript or audio, and
/// the caller as its keyed hash (`null` when the network withheld the number).
pub fn build_message(
    event_id: Uuid,
    created_at: DateTime<Utc>,
    customer: CustomerId,
    portal_base_url: &str,
    message: &super::MessageEvent<'_>,
    caller_number_hash: Option<String>,
) -> Result<Vec<u8>, MediaError> {
    let body = MessageBody {
        kind: "message.created",
        event_id: event_id.to_string(),
        created_at: rfc3339(created_at),
        customer_id: customer.get(),
        message: MessagePart {
            task_id: message.task_id.to_string(),
            reason: message.reason.as_str(),
            created_at: rfc3339(message.created_at),
            call_sid: message.call_sid.as_str().to_owned(),
            caller_number_hash,
            portal_url: format!(
                "{}/portal/messages#task-{}",
                portal_base_url.trim_end_matches('/'),
                message.task_id
            ),
        },
    };
    serde_json::to_vec(&body).map_err(|e| MediaError::Internal(format!("event JSON: {e}")))
}

#[derive(Serialize)]
struct MessageBody {
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: String,
    created_at: String,
    customer_id: i64,
    message: MessagePart,
}

#[derive(Serialize)]
struct MessagePart {
    task_id: String,
    reason: &'static str,
    created_at: String,
    call_sid: String,
    caller_number_hash: Option<String>,
    portal_url: String,
}

#[derive(Serialize)]
pub(super) struct EventBody<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) event_id: String,
    pub(super) created_at: String,
    pub(super) customer_id: i64,
    pub(super) call: CallPart,
    pub(super) summary: &'a str,
    pub(super) transcript: Vec<TurnPart>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(super) transcript_truncated: bool,
}

#[derive(Serialize)]
pub(super) struct CallPart {
    pub(super) call_sid: String,
    pub(super) direction: &'static str,
    pub(super) status: &'static str,
    pub(super) duration_seconds: i32,
    pub(super) started_at: String,
    pub(super) ended_at: Option<String>,
    // Exactly one of the two is present (`null` when the network withheld the number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) caller_number: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) caller_number_hash: Option<Option<String>>,
    pub(super) persona: Option<String>,
}

#[derive(Serialize)]
pub(super) struct TurnPart {
    pub(super) speaker: &'static str,
    pub(super) text: String,
    pub(super) offset_ms: u32,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Twilio's spelling of a direction.
pub fn direction_name(direction: CallDirection) -> &'static str {
    match direction {
        CallDirection::OutboundApi => "outbound-api",
        CallDirection::OutboundDial => "outbound-dial",
        _ => "inbound",
    }
}

/// Twilio's spelling of a status (a recorded call is in a final state; the others are spelled
/// out anyway rather than guessed).
pub fn status_name(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Initiated => "initiated",
        CallStatus::Queued => "queued",
        CallStatus::Ringing => "ringing",
        CallStatus::InProgress => "in-progress",
        CallStatus::Busy => "busy",
        CallStatus::Failed => "failed",
        CallStatus::NoAnswer => "no-answer",
        CallStatus::Canceled => "canceled",
        _ => "completed",
    }
}

fn speaker_name(speaker: i32) -> &'static str {
    match Speaker::try_from(speaker) {
        Ok(Speaker::Caller) => "caller",
        Ok(Speaker::Agent) => "agent",
        // DTMF digits and transfers the platform wrote into the transcript.
        _ => "system",
    }
}

/// Serializes the event, cutting transcript turns from the end (and saying so) when the whole
/// would exceed [`MAX_BODY`].
pub(super) fn serialize_within_limit(mut event: EventBody<'_>) -> Result<Vec<u8>, MediaError> {
    let to_vec = |e: &EventBody<'_>| {
        serde_json::to_vec(e).map_err(|e| MediaError::Internal(format!("event JSON: {e}")))
    };
    let body = to_vec(&event)?;
    if body.len() <= MAX_BODY {
        return Ok(body);
    }
    let turns = std::mem::take(&mut event.transcript);
    event.transcript_truncated = true;
    let mut size = to_vec(&event)?.len();
    let mut kept = Vec::new();
    for turn in turns {
        let len = serde_json::to_vec(&turn)
            .map_err(|e| MediaError::Internal(format!("event JSON: {e}")))?
            .len()
            + 1;
        if size + len > MAX_BODY {
            break;
        }
        size += len;
        kept.push(turn);
    }
    event.transcript = kept;
    let body = to_vec(&event)?;
    debug_assert!(body.len() <= MAX_BODY);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_hash_is_keyed_and_per_tenant() {
        let key = [7u8; 32];
        let a = caller_hash(&key, CustomerId::new(1).unwrap(), "+15551234567");
        assert!(a.starts_with("hmac-sha256:") && a.len() == 12 + 64, "{a}");
        assert_eq!(
            a,
            caller_hash(&key, CustomerId::new(1).unwrap(), "+15551234567")
        );
        assert_ne!(
            a,
            caller_hash(&key, CustomerId::new(2).unwrap(), "+15551234567")
        );
        assert_ne!(
            a,
            caller_hash(&[8u8; 32], CustomerId::new(1).unwrap(), "+15551234567")
        );
    }

    #[test]
    fn oversized_transcripts_are_cut_to_fit() {
        let turn = || TurnPart {
            speaker: "caller",
            text: "x".repeat(8000),
            offset_ms: 0,
        };
        let event = EventBody {
            kind: "call.completed",
            event_id: Uuid::nil().to_string(),
            created_at: rfc3339(Utc::now()),
            customer_id: 1,
            call: CallPart {
                call_sid: "CA".into(),
                direction: "inbound",
                status: "completed",
                duration_seconds: 1,
                started_at: rfc3339(Utc::now()),
                ended_at: None,
                caller_number: None,
                caller_number_hash: Some(None),
                persona: None,
            },
            summary: "s",
            transcript: (0..500).map(|_| turn()).collect(),
            transcript_truncated: false,
        };
        let body = serialize_within_limit(event).unwrap();
        assert!(body.len() <= MAX_BODY);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["transcript_truncated"], true);
        let kept = v["transcript"].as_array().unwrap().len();
        assert!((120..131).contains(&kept), "{kept}");
        assert!(v["call"]["caller_number_hash"].is_null());
        assert!(v["call"].get("caller_number").is_none());
    }
}
