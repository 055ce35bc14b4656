//! What Twilio sends us, parsed into typed values at the edge: form-encoded webhooks (strict
//! percent-decoding; every parameter kept for the signature) and Media Streams JSON messages.

use std::collections::HashMap;

use base64::Engine as _;
use mesh::domain::{AccountSid, CallSid, CallerNumber};
use serde::Deserialize;

/// Why a request from the Twilio side was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// The body is not valid `application/x-www-form-urlencoded` UTF-8.
    #[error("malformed form body: {0}")]
    Form(&'static str),
    /// A required parameter is missing.
    #[error("missing parameter {0}")]
    Missing(&'static str),
    /// A parameter has an invalid value.
    #[error("invalid parameter {0}: {1}")]
    Invalid(&'static str, String),
}

/// Decodes a form body strictly: `+` is a space, `%XX` must be valid hex, the result must be
/// UTF-8. Parameter order and repeats are kept (the signature covers all of them).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, InputError> {
    let text = std::str::from_utf8(body).map_err(|_| InputError::Form("not UTF-8"))?;
    let mut out = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, InputError> {
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if c == b'%' && !(hex(i + 1) && hex(i + 2)) {
            return Err(InputError::Form("bad percent-escape"));
        }
    }
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| InputError::Form("percent-escapes are not UTF-8"))
}

/// The parameters of a voice or status webhook we act on.
#[derive(Debug, Clone)]
pub struct CallWebhook {
    /// `CallSid`.
    pub call_sid: CallSid,
    /// `AccountSid`.
    pub account_sid: AccountSid,
    /// `From` as received (E.164, `client:…`, `anonymous`, …).
    pub from_raw: String,
    /// `From` when it is an E.164 number (callers without one get no memory).
    pub from: Option<CallerNumber>,
    /// `To` as received.
    pub to: String,
    /// `CallStatus`.
    pub call_status: String,
    /// `Direction` (`inbound`, `outbound-api`, `outbound-dial`).
    pub direction: String,
    /// `CallDuration` (status callbacks), seconds.
    pub duration: Option<i32>,
    /// `SequenceNumber` (status callbacks).
    pub sequence: Option<u32>,
}

impl CallWebhook {
    /// Picks and checks the parameters (the first value of each name).
    pub fn from_params(params: &[(String, String)]) -> Result<Self, InputError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let req = |name: &'static str| get(name).ok_or(InputError::Missing(name));
        let call_sid = CallSid::parse(req("CallSid")?)
            .map_err(|e| InputError::Invalid("CallSid", e.to_string()))?;
        let account_sid = AccountSid::parse(req("AccountSid")?)
            .map_err(|e| InputError::Invalid("AccountSid", e.to_string()))?;
        let from_raw = get("From").unwrap_or_default().to_owned();
        let to = req("To")?.to_owned();
        let call_status = get("CallStatus").unwrap_or_default().to_owned();
        const STATUSES: [&str; 10] = [
            "",
            "queued",
            "initiated",
            "ringing",
            "in-progress",
            "completed",
            "busy",
            "failed",
            "no-answer",
            "canceled",
        ];
        if !STATUSES.contains(&call_status.as_str()) {
            return Err(InputError::Invalid("CallStatus", "unknown status".into()));
        }
        let direction = get("Direction").unwrap_or("inbound").to_owned();
        let duration = get("CallDuration")
            .map(|d| {
                d.parse::<i32>()
                    .map_err(|_| InputError::Invalid("CallDuration", "not a number".into()))
            })
            .transpose()?;
        let sequence = get("SequenceNumber")
            .map(|d| {
                d.parse::<u32>()
                    .map_err(|_| InputError::Invalid("SequenceNumber", "not a number".into()))
            })
            .transpose()?;
        Ok(Self {
            call_sid,
            account_sid,
            from: CallerNumber::from_network(&from_raw),
            from_raw,
            to,
            call_status,
            direction,
            duration,
            sequence,
        })
    }
}

/// A Media Streams message from Twilio, as far as we use it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// `connected`.
    Connected,
    /// `start`.
    Start(Start),
    /// `media`: decoded mu-law bytes.
    Media {
        /// Raw mu-law.
        payload: Vec<u8>,
        /// `sequenceNumber`.
        sequence: u64,
        /// `media.timestamp`, ms of media time.
        timestamp_ms: u32,
    },
    /// `dtmf`.
    Dtmf(String),
    /// `mark` echoed back.
    Mark(String),
    /// `stop`.
    Stop,
    /// Anything else (ignored and counted).
    Unknown,
}

/// The `start` event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// `accountSid`.
    #[serde(default)]
    pub account_sid: String,
    /// `streamSid`.
    pub stream_sid: String,
    /// `callSid`.
    pub call_sid: String,
    /// `<Parameter>` values.
    #[serde(default)]
    pub custom_parameters: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Raw<'a> {
    event: &'a str,
    #[serde(default, rename = "sequenceNumber")]
    sequence_number: Option<&'a str>,
    #[serde(default)]
    start: Option<Start>,
    #[serde(default)]
    media: Option<RawMedia<'a>>,
    #[serde(default)]
    dtmf: Option<RawDtmf>,
    #[serde(default)]
    mark: Option<RawMark>,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(default)]
    track: Option<&'a str>,
    #[serde(default)]
    timestamp: Option<&'a str>,
    payload: &'a str,
}

#[derive(Deserialize)]
struct RawDtmf {
    digit: String,
}

#[derive(Deserialize)]
struct RawMark {
    name: String,
}

/// Largest decoded audio payload accepted in one frame (Twilio sends 160 bytes per 20 ms).
pub const MAX_FRAME_AUDIO: usize = 16 * 1024;

/// Parses one text frame. Malformed JSON or fields: `Err`; unknown events: `Unknown`.
pub fn parse_stream_message(text: &str) -> Result<StreamEvent, InputError> {
    let raw: Raw<'_> = serde_json::from_str(text)
        .map_err(|_| InputError::Form("not a Media Streams JSON message"))?;
    let seq = raw
        .sequence_number
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(match raw.event {
        "connected" => StreamEvent::Connected,
        "start" => StreamEvent::Start(raw.start.ok_or(InputError::Missing("start"))?),
        "media" => {
            let m = raw.media.ok_or(InputError::Missing("media"))?;
            if m.track
                .is_some_and(|t| t != "inbound" && t != "inbound_track")
            {
                return Ok(StreamEvent::Unknown);
            }
            if m.payload.len() > MAX_FRAME_AUDIO * 4 / 3 + 4 {
                return Err(InputError::Invalid(
                    "media.payload",
                    "frame too large".into(),
                ));
            }
            let payload = base64::engine::general_purpose::STANDARD
                .decode(m.payload)
                .map_err(|_| InputError::Invalid("media.payload", "not base64".into()))?;
            StreamEvent::Media {
                payload,
                sequence: seq,
                timestamp_ms: m.timestamp.and_then(|t| t.parse().ok()).unwrap_or(0),
            }
        }
        "dtmf" => {
            let d = raw.dtmf.ok_or(InputError::Missing("dtmf"))?;
            if d.digit.len() != 1
                || !d
                    .digit
                    .chars()
                    .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
            {
                return Err(InputError::Invalid("dtmf.digit", "not a DTMF key".into()));
            }
            StreamEvent::Dtmf(d.digit)
        }
        "mark" => {
            let m = raw.mark.ok_or(InputError::Missing("mark"))?;
            if m.name.len() > 256 {
                return Err(InputError::Invalid("mark.name", "too long".into()));
            }
            StreamEvent::Mark(m.name)
        }
        "stop" => StreamEvent::Stop,
        _ => StreamEvent::Unknown,
    })
}

/// Messages we send to Twilio.
pub mod outbound {
    use base64::Engine as _;

    /// `media` with raw mu-law audio.
    pub fn media(stream_sid: &str, payload: &[u8]) -> String {
        serde_json::json!({
            "event": "media",
            "streamSid": stream_sid,
            "media": { "payload": base64::engine::general_purpose::STANDARD.encode(payload) },
        })
        .to_string()
    }

    /// `mark`.
    pub fn mark(stream_sid: &str, name: &str) -> String {
        serde_json::json!({ "event": "mark", "streamSid": stream_sid, "mark": { "name": name } })
            .to_string()
    }

    /// `clear`.
    pub fn clear(stream_sid: &str) -> String {
        serde_json::json!({ "event": "clear", "streamSid": stream_sid }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms_decode_strictly() {
        let p = parse_form(b"CallSid=CA1&From=%2B14155550100&Caller=a+b&Empty=&Flag").unwrap();
        assert_eq!(p[1], ("From".into(), "+14155550100".into()));
        assert_eq!(p[2].1, "a b");
        assert_eq!(p[3].1, "");
        assert_eq!(p[4], ("Flag".into(), String::new()));
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%4").is_err());
        assert!(parse_form(b"a=%ff").is_err());
        assert!(parse_form(&[0xff, 0xfe]).is_err());
    }

    fn webhook(pairs: &[(&str, &str)]) -> Result<CallWebhook, InputError> {
        let p: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CallWebhook::from_params(&p)
    }

    #[test]
    fn webhooks_are_typed() {
        let ok = webhook(&[
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("From", "anonymous"),
            ("To", "+14155550101"),
            ("CallStatus", "ringing"),
        ])
        .unwrap();
        assert!(ok.from.is_none());
        assert_eq!(ok.direction, "inbound");
        let bad = webhook(&[
            ("CallSid", "XX0123456789abcdef0123456789abcdef"),
            ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
            ("To", "+14155550101"),
        ]);
        assert!(matches!(bad, Err(InputError::Invalid("CallSid", _))));
        assert_eq!(
            webhook(&[("CallSid", "CA0123456789abcdef0123456789abcdef")]).unwrap_err(),
            InputError::Missing("AccountSid")
        );
    }

    #[test]
    fn media_stream_messages() {
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"stream_token":"t"}},"streamSid":"MZ1"}"#;
        match parse_stream_message(start).unwrap() {
            StreamEvent::Start(s) => assert_eq!(s.custom_parameters["stream_token"], "t"),
            other => panic!("{other:?}"),
        }
        let media = r#"{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"},"streamSid":"MZ1"}"#;
        assert_eq!(
            parse_stream_message(media).unwrap(),
            StreamEvent::Media {
                payload: vec![0, 1, 2],
                sequence: 4,
                timestamp_ms: 5
            }
        );
        assert_eq!(
            parse_stream_message(r#"{"event":"mark","mark":{"name":"m1"}}"#).unwrap(),
            StreamEvent::Mark("m1".into())
        );
        assert_eq!(
            parse_stream_message(
                r##"{"event":"dtmf","dtmf":{"track":"inbound_track","digit":"#"}}"##
            )
            .unwrap(),
            StreamEvent::Dtmf("#".into())
        );
        assert_eq!(
            parse_stream_message(r#"{"event":"close"}"#).unwrap(),
            StreamEvent::Unknown
        );
        assert!(parse_stream_message(r#"{"event":"media","media":{"payload":"!!"}}"#).is_err());
        assert!(parse_stream_message("not json").is_err());
        assert!(parse_stream_message(r#"{"event":"dtmf","dtmf":{"digit":"12"}}"#).is_err());
        let round = outbound::media("MZ1", &[0, 1, 2]);
        assert!(round.contains(r#""payload":"AAEC""#));
    }

    proptest! {
        #[test]
        fn form_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_form(&body);
        }

        #[test]
        fn form_round_trips(pairs in proptest::collection::vec(("[A-Za-z]{1,8}", "\\PC{0,12}"), 0..6)) {
            let body: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .finish();
            let parsed = parse_form(body.as_bytes()).unwrap();
            prop_assert_eq!(parsed, pairs);
        }

        #[test]
        fn stream_parser_never_panics(text in "\\PC{0,300}") {
            let _ = parse_stream_message(&text);
        }

        #[test]
        fn media_json_with_arbitrary_payload_never_panics(payload in "[A-Za-z0-9+/=]{0,64}", ts in "\\PC{0,8}") {
            let msg = serde_json::json!({"event":"media","media":{"payload":payload,"timestamp":ts}}).to_string();
            let _ = parse_stream_message(&msg);
        }
    }
}
