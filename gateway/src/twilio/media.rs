//! Media Streams messages: what Twilio sends on a call's WebSocket, parsed into
//! [`StreamEvent`]s (audio decoded from base64 once, here), and what the gateway sends back
//! ([`outbound`]).

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use super::InputError;

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

    use mesh::domain::StreamSid;

    /// `media` with raw mu-law audio.
    pub fn media(stream_sid: &StreamSid, payload: &[u8]) -> String {
        serde_json::json!({
            "event": "media",
            "streamSid": stream_sid.as_str(),
            "media": { "payload": base64::engine::general_purpose::STANDARD.encode(payload) },
        })
        .to_string()
    }

    /// `mark`.
    pub fn mark(stream_sid: &StreamSid, name: &str) -> String {
        serde_json::json!({ "event": "mark", "streamSid": stream_sid.as_str(), "mark": { "name": name } })
            .to_string()
    }

    /// `clear`.
    pub fn clear(stream_sid: &StreamSid) -> String {
        serde_json::json!({ "event": "clear", "streamSid": stream_sid.as_str() }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn media_stream_messages() {
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"stream_ticket":"t"}},"streamSid":"MZ1"}"#;
        match parse_stream_message(start).unwrap() {
            StreamEvent::Start(s) => assert_eq!(s.custom_parameters["stream_ticket"], "t"),
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
        let stream_sid =
            mesh::domain::StreamSid::parse("MZ0123456789abcdef0123456789abcdef").unwrap();
        let round = outbound::media(&stream_sid, &[0, 1, 2]);
        assert!(round.contains(r#""payload":"AAEC""#));
    }

    proptest! {
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
