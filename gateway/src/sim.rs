//! A Twilio simulator: plays one complete call against a running gateway exactly as Twilio
//! would: the signed voice webhook, the TwiML answer parsed, the signed Media Streams WebSocket
//! with `connected`/`start`, 20 ms mu-law frames in real time, marks echoed once the audio queued
//! before them has "played", and `stop`. Used by `neurosphere call simulate`, the end-to-end
//! tests and the load benchmarks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use quick_xml::Reader;
use quick_xml::events::Event;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::signature;

/// One simulated call.
#[derive(Debug, Clone)]
pub struct SimCall {
    /// Where the gateway listens, e.g. `127.0.0.1:8080` (requests go here).
    pub gateway_addr: String,
    /// The public base URL the gateway is configured with (signatures are computed over it).
    pub public_base_url: String,
    /// Twilio Auth Token.
    pub auth_token: String,
    /// Twilio AccountSid.
    pub account_sid: String,
    /// `CA…` sid of this call.
    pub call_sid: String,
    /// Caller (`From`).
    pub from: String,
    /// Called number (`To`).
    pub to: String,
    /// Caller audio: 8 kHz mu-law, sent as 160-byte frames every 20 ms; silence after it.
    pub caller_audio: Vec<u8>,
    /// How long the call lasts after the stream starts.
    pub duration: Duration,
    /// Twilio's `Direction`: `inbound`, or `outbound-api` for a call the platform placed (then
    /// `from` is the tenant's number and `to` the callee). Empty means `inbound`.
    pub direction: String,
}

/// What the simulated caller experienced.
#[derive(Debug, Default)]
pub struct SimResult {
    /// The TwiML the webhook answered.
    pub twiml: String,
    /// Whether the answer connected a stream (otherwise it said something and hung up).
    pub connected: bool,
    /// Text of the `<Say>` verbs.
    pub said: Vec<String>,
    /// Agent audio received (mu-law).
    pub agent_audio: Vec<u8>,
    /// Frames sent.
    pub frames_sent: u64,
    /// Frames received.
    pub frames_received: u64,
    /// Marks received and echoed.
    pub marks: u64,
    /// `clear` messages received.
    pub clears: u64,
    /// Time from the `start` message to the first agent audio.
    pub first_audio_after: Option<Duration>,
    /// How the socket ended: `Some(code)` when the gateway closed it.
    pub close_code: Option<u16>,
}

/// Why a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// HTTP failure.
    #[error("webhook request failed: {0}")]
    Http(String),
    /// The webhook was not answered with 200.
    #[error("webhook answered HTTP {0}: {1}")]
    Status(u16, String),
    /// The TwiML could not be parsed.
    #[error("TwiML: {0}")]
    Twiml(String),
    /// WebSocket failure.
    #[error("media stream: {0}")]
    Ws(String),
}

/// A `<Stream>`: its URL and its `<Parameter>` name/value pairs.
pub type StreamVerb = (String, Vec<(String, String)>);

/// The `<Stream>` of a TwiML answer, if any, and every `<Say>` text.
pub fn parse_twiml(doc: &str) -> Result<(Option<StreamVerb>, Vec<String>), SimError> {
    let mut r = Reader::from_str(doc);
    let mut stream: Option<StreamVerb> = None;
    let mut said = Vec::new();
    let mut in_say = false;
    let mut text = String::new();
    loop {
        match r.read_event().map_err(|e| SimError::Twiml(e.to_string()))? {
            Event::Start(e) | Event::Empty(e) => {
                let attr = |name: &str| -> Option<String> {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name.as_bytes())
                        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
                };
                match e.name().as_ref() {
                    b"Stream" => stream = Some((attr("url").unwrap_or_default(), Vec::new())),
                    b"Parameter" => {
                        if let Some((_, params)) = stream.as_mut() {
                            params.push((
                                attr("name").unwrap_or_default(),
                                attr("value").unwrap_or_default(),
                            ));
                        }
                    }
                    b"Say" => {
                        in_say = true;
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_say => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(g) if in_say => {
                text.push('&');
                text.push_str(&String::from_utf8_lossy(&g));
                text.push(';');
            }
            Event::End(e) if e.name().as_ref() == b"Say" => {
                in_say = false;
                said.push(
                    quick_xml::escape::unescape(&text)
                        .map(|t| t.into_owned())
                        .unwrap_or(text.clone()),
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((stream, said))
}

/// A voice-like test signal: a 1 s "utterance" (a gliding tone with syllable-rate amplitude
/// modulation) followed by 1 s of silence, repeated, as 8 kHz mu-law.
pub fn voice_like(seconds: f64) -> Vec<u8> {
    let n = (seconds * 8000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let phase = t % 2.0;
            let sample = if phase < 1.0 {
                let pitch = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
                let syllables = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
                (syllables * 9000.0 * (2.0 * std::f64::consts::PI * pitch * t).sin()) as i16
            } else {
                0
            };
            linear_to_mulaw(sample)
        })
        .collect()
}

/// G.711 mu-law encoding of one 16-bit sample.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = s.min(CLIP) + BIAS;
    let exponent = (7 - (s.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Whether mu-law audio carries sound (not just silence codes near 0xFF / 0x7F).
pub fn is_audible(audio: &[u8]) -> bool {
    audio.iter().filter(|b| (**b & 0x7f) < 0x70).count() > audio.len() / 20 && audio.len() >= 800
}

/// Plays the call.
pub async fn run(call: &SimCall) -> Result<SimResult, SimError> {
    let mut result = SimResult::default();
    let params: Vec<(String, String)> = [
        ("CallSid", call.call_sid.as_str()),
        ("AccountSid", call.account_sid.as_str()),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
        ("CallStatus", "ringing"),
        ("ApiVersion", "2010-04-01"),
        (
            "Direction",
            if call.direction.is_empty() {
                "inbound"
            } else {
                call.direction.as_str()
            },
        ),
        ("Caller", call.from.as_str()),
        ("Called", call.to.as_str()),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let base = call.public_base_url.trim_end_matches('/');
    let url = format!("{base}/twilio/voice");
    let sig = signature::compute(call.auth_token.as_bytes(), &url, &params);
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let response = http_post(&call.gateway_addr, "/twilio/voice", &sig, &body).await?;
    result.twiml = response;
    let (stream, said) = parse_twiml(&result.twiml)?;
    result.said = said;
    let Some((stream_url, stream_params)) = stream else {
        return Ok(result);
    };
    result.connected = true;

    // Twilio signs the upgrade against the stream URL with no parameters.
    let ws_sig = signature::compute(call.auth_token.as_bytes(), &stream_url, &[]);
    let path = stream_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_else(|| "/twilio/media".into());
    let mut req = format!("ws://{}{path}", call.gateway_addr)
        .into_client_request()
        .map_err(|e| SimError::Ws(e.to_string()))?;
    req.headers_mut().insert(
        "X-Twilio-Signature",
        ws_sig
            .parse()
            .map_err(|_| SimError::Ws("bad header".into()))?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| SimError::Ws(e.to_string()))?;
    let (mut tx, mut rx) = ws.split();
    let stream_sid = format!("MZ{}", &call.call_sid[2..]);
    let custom: serde_json::Map<String, serde_json::Value> = stream_params
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    let send = |m: serde_json::Value| Message::Text(m.to_string().into());
    tx.send(send(
        serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
    ))
    .await
    .map_err(|e| SimError::Ws(e.to_string()))?;
    tx.send(send(serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"accountSid": call.account_sid, "streamSid": stream_sid, "callSid": call.call_sid,
                  "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                  "customParameters": custom}
    })))
    .await
    .map_err(|e| SimError::Ws(e.to_string()))?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq: u64 = 2;
    let mut chunk: u64 = 1;
    let mut offset = 0usize;
    // Playback model: agent audio queues and plays in real time; a mark is echoed when the
    // audio queued before it has played.
    let mut play_until = Instant::now();
    let mut pending_marks: VecDeque<(Instant, String)> = VecDeque::new();
    let silence = [0xffu8; 160];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if started.elapsed() >= call.duration {
                    break;
                }
                let frame: &[u8] = if offset + 160 <= call.caller_audio.len() {
                    &call.caller_audio[offset..offset + 160]
                } else {
                    &silence
                };
                offset += 160;
                let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, frame);
                let ts = (chunk - 1) * 20;
                let msg = serde_json::json!({"event": "media", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
                    "media": {"track": "inbound", "chunk": chunk.to_string(), "timestamp": ts.to_string(), "payload": payload}});
                seq += 1;
                chunk += 1;
                if tx.send(send(msg)).await.is_err() {
                    break;
                }
                result.frames_sent += 1;
                let now = Instant::now();
                while pending_marks.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, name) = pending_marks.pop_front().expect("non-empty");
                    let m = serde_json::json!({"event": "mark", "sequenceNumber": seq.to_string(), "streamSid": stream_sid, "mark": {"name": name}});
                    seq += 1;
                    let _ = tx.send(send(m)).await;
                    result.marks += 1;
                }
            }
            msg = rx.next() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(_)) | None => break,
                };
                match msg {
                    Message::Text(t) => {
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        match v["event"].as_str() {
                            Some("media") => {
                                let audio = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["media"]["payload"].as_str().unwrap_or_default()).unwrap_or_default();
                                if result.first_audio_after.is_none() {
                                    result.first_audio_after = Some(started.elapsed());
                                }
                                let now = Instant::now();
                                play_until = play_until.max(now) + Duration::from_micros(audio.len() as u64 * 125);
                                result.frames_received += 1;
                                result.agent_audio.extend_from_slice(&audio);
                            }
                            Some("mark") => {
                                let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                                pending_marks.push_back((play_until.max(Instant::now()), name));
                            }
                            Some("clear") => {
                                result.clears += 1;
                                play_until = Instant::now();
                                // `clear` echoes every pending mark at once.
                                for (_, name) in pending_marks.drain(..) {
                                    let m = serde_json::json!({"event": "mark", "sequenceNumber": seq.to_string(), "streamSid": stream_sid, "mark": {"name": name}});
                                    seq += 1;
                                    let _ = tx.send(send(m)).await;
                                    result.marks += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                    Message::Close(frame) => {
                        result.close_code = frame.map(|f| u16::from(f.code));
                        return Ok(result);
                    }
                    _ => {}
                }
            }
        }
    }
    let stop = serde_json::json!({"event": "stop", "sequenceNumber": seq.to_string(), "streamSid": stream_sid,
        "stop": {"accountSid": call.account_sid, "callSid": call.call_sid}});
    let _ = tx.send(send(stop)).await;
    // Wait briefly for the gateway to close.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Close(frame) = m {
                result.close_code = frame.map(|f| u16::from(f.code));
                break;
            }
        }
    })
    .await;
    let _ = tx.close().await;
    Ok(result)
}

/// A minimal HTTP/1.1 form POST (the simulator needs no HTTP client dependency).
async fn http_post(
    addr: &str,
    path: &str,
    signature: &str,
    body: &str,
) -> Result<String, SimError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| SimError::Http(e.to_string()))?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| SimError::Http(e.to_string()))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .map_err(|e| SimError::Http(e.to_string()))?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| SimError::Http("no response".into()))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status != 200 {
        return Err(SimError::Status(status, body.to_owned()));
    }
    // Chunked bodies are not expected for TwiML (axum sets Content-Length).
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_encoding_matches_g711() {
        assert_eq!(linear_to_mulaw(0), 0xff);
        assert_eq!(linear_to_mulaw(-1), 0x7f);
        assert_eq!(linear_to_mulaw(32767), 0x80);
        assert_eq!(linear_to_mulaw(-32768), 0x00);
        assert!(is_audible(&voice_like(1.0)));
        assert!(!is_audible(&[0xff; 8000]));
    }

    #[test]
    fn twiml_is_parsed() {
        let doc = crate::twiml::connect_stream(
            "wss://x.example/twilio/media",
            &[("stream_token", "a&b")],
            "Sorry & bye",
        );
        let (stream, said) = parse_twiml(&doc).unwrap();
        let (url, params) = stream.unwrap();
        assert_eq!(url, "wss://x.example/twilio/media");
        assert_eq!(params, vec![("stream_token".to_owned(), "a&b".to_owned())]);
        assert_eq!(said, vec!["Sorry & bye".to_owned()]);
    }
}
