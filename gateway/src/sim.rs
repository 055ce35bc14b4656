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

use mesh::g711;

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
            g711::linear_to_ulaw(sample)
        })
        .collect()
}

/// Whether mu-law audio carries sound (not just silence codes near 0xFF / 0x7F).
pub fn is_audible(audio: &[u8]) -> bool {
    audio.iter().filter(|b| (**b & 0x7f) < 0x70).count() > audio.len() / 20 && audio.len() >= 800
}

/// Plays the call.
pub async fn run(call: &SimCall) -> Result<SimResult, SimError> {
    let mut result = SimResult::default();
    result.twiml = voice_webhook(call).await?;
    let (stream, said) = parse_twiml(&result.twiml)?;
    result.said = said;
    let Some((stream_url, stream_params)) = stream else {
        return Ok(result);
    };
    result.connected = true;
    let ws = open_stream(call, &stream_url).await?;
    let mut caller = Caller::new(call, ws);
    caller.start(stream_params).await?;
    if !caller.converse(&mut result).await {
        caller.stop(&mut result).await;
    }
    Ok(result)
}

/// POSTs the signed voice webhook; the TwiML answer.
async fn voice_webhook(call: &SimCall) -> Result<String, SimError> {
    let direction = if call.direction.is_empty() {
        "inbound"
    } else {
        call.direction.as_str()
    };
    let params: Vec<(String, String)> = [
        ("CallSid", call.call_sid.as_str()),
        ("AccountSid", call.account_sid.as_str()),
        ("From", call.from.as_str()),
        ("To", call.to.as_str()),
        ("CallStatus", "ringing"),
        ("ApiVersion", "2010-04-01"),
        ("Direction", direction),
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
    http_post(&call.gateway_addr, "/twilio/voice", &sig, &body).await
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the Media Streams socket the TwiML named, signed as Twilio signs it: against the
/// stream URL with no parameters.
async fn open_stream(call: &SimCall, stream_url: &str) -> Result<Socket, SimError> {
    let ws_sig = signature::compute(call.auth_token.as_bytes(), stream_url, &[]);
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
    Ok(ws)
}

/// Twilio's side of one Media Streams socket: sequence numbers, the caller's audio, and the
/// playback model (agent audio queues and plays in real time; a mark is echoed when the audio
/// queued before it has played).
struct Caller<'a> {
    call: &'a SimCall,
    tx: futures::stream::SplitSink<Socket, Message>,
    rx: futures::stream::SplitStream<Socket>,
    stream_sid: String,
    seq: u64,
    play_until: Instant,
    pending_marks: VecDeque<(Instant, String)>,
}

fn text(m: &serde_json::Value) -> Message {
    Message::Text(m.to_string().into())
}

impl<'a> Caller<'a> {
    fn new(call: &'a SimCall, ws: Socket) -> Self {
        let (tx, rx) = ws.split();
        Self {
            call,
            tx,
            rx,
            stream_sid: format!("MZ{}", &call.call_sid[2..]),
            seq: 2,
            play_until: Instant::now(),
            pending_marks: VecDeque::new(),
        }
    }

    async fn send(&mut self, m: &serde_json::Value) -> Result<(), SimError> {
        self.tx
            .send(text(m))
            .await
            .map_err(|e| SimError::Ws(e.to_string()))
    }

    /// `connected`, then `start` with the TwiML's `<Parameter>`s.
    async fn start(&mut self, stream_params: Vec<(String, String)>) -> Result<(), SimError> {
        let custom: serde_json::Map<String, serde_json::Value> = stream_params
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        self.send(
            &serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        )
        .await?;
        let (call, stream_sid) = (self.call, &self.stream_sid);
        let start = serde_json::json!({
            "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
            "start": {"accountSid": call.account_sid, "streamSid": stream_sid, "callSid": call.call_sid,
                      "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": custom}
        });
        self.send(&start).await
    }

    /// Echoes the mark `name` back.
    async fn echo_mark(&mut self, name: String, result: &mut SimResult) {
        let m = serde_json::json!({"event": "mark", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid, "mark": {"name": name}});
        self.seq += 1;
        let _ = self.tx.send(text(&m)).await;
        result.marks += 1;
    }

    /// Streams the caller's audio in real time for the call's duration, answering what the
    /// gateway sends, until the time is up or the socket ends; `true` when the gateway closed it.
    async fn converse(&mut self, result: &mut SimResult) -> bool {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut chunk: u64 = 1;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if started.elapsed() >= self.call.duration || self.send_frame(chunk, result).await.is_err() {
                        return false;
                    }
                    chunk += 1;
                }
                msg = self.rx.next() => {
                    let Some(Ok(msg)) = msg else { return false };
                    match msg {
                        Message::Text(t) => self.heard(&t, started, result).await,
                        Message::Close(frame) => {
                            result.close_code = frame.map(|f| u16::from(f.code));
                            return true;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sends the caller's next 20 ms (silence after the audio), then echoes the marks whose
    /// audio has played by now.
    async fn send_frame(&mut self, chunk: u64, result: &mut SimResult) -> Result<(), SimError> {
        let offset = (chunk as usize - 1) * 160;
        let audio = &self.call.caller_audio;
        let frame: &[u8] = audio.get(offset..offset + 160).unwrap_or(&[0xffu8; 160]);
        let payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, frame);
        let ts = (chunk - 1) * 20;
        let msg = serde_json::json!({"event": "media", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": chunk.to_string(), "timestamp": ts.to_string(), "payload": payload}});
        self.seq += 1;
        self.send(&msg).await?;
        result.frames_sent += 1;
        let now = Instant::now();
        while self.pending_marks.front().is_some_and(|(at, _)| *at <= now) {
            let (_, name) = self.pending_marks.pop_front().expect("non-empty");
            self.echo_mark(name, result).await;
        }
        Ok(())
    }

    /// One text message from the gateway: agent audio, a mark to echo once played, or `clear`.
    async fn heard(&mut self, t: &str, started: Instant, result: &mut SimResult) {
        let v: serde_json::Value = serde_json::from_str(t).unwrap_or_default();
        match v["event"].as_str() {
            Some("media") => {
                let audio = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    v["media"]["payload"].as_str().unwrap_or_default(),
                )
                .unwrap_or_default();
                if result.first_audio_after.is_none() {
                    result.first_audio_after = Some(started.elapsed());
                }
                let now = Instant::now();
                self.play_until =
                    self.play_until.max(now) + Duration::from_micros(audio.len() as u64 * 125);
                result.frames_received += 1;
                result.agent_audio.extend_from_slice(&audio);
            }
            Some("mark") => {
                let name = v["mark"]["name"].as_str().unwrap_or_default().to_owned();
                let at = self.play_until.max(Instant::now());
                self.pending_marks.push_back((at, name));
            }
            Some("clear") => {
                result.clears += 1;
                self.play_until = Instant::now();
                // `clear` echoes every pending mark at once.
                for (_, name) in std::mem::take(&mut self.pending_marks) {
                    self.echo_mark(name, result).await;
                }
            }
            _ => {}
        }
    }

    /// Sends `stop` and waits briefly for the gateway to close.
    async fn stop(&mut self, result: &mut SimResult) {
        let call = self.call;
        let stop = serde_json::json!({"event": "stop", "sequenceNumber": self.seq.to_string(), "streamSid": self.stream_sid,
            "stop": {"accountSid": call.account_sid, "callSid": call.call_sid}});
        let _ = self.tx.send(text(&stop)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = self.rx.next().await {
                if let Message::Close(frame) = m {
                    result.close_code = frame.map(|f| u16::from(f.code));
                    break;
                }
            }
        })
        .await;
        let _ = self.tx.close().await;
    }
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
        // The simulator's caller speaks through the mesh's one codec.
        assert_eq!(g711::linear_to_ulaw(0), 0xff);
        assert_eq!(g711::linear_to_ulaw(-1), 0x7f);
        assert_eq!(g711::linear_to_ulaw(32767), 0x80);
        assert_eq!(g711::linear_to_ulaw(-32768), 0x00);
        assert!(is_audible(&voice_like(1.0)));
        assert!(!is_audible(&[0xff; 8000]));
    }

    #[test]
    fn twiml_is_parsed() {
        let doc = crate::twiml::connect_stream(
            "wss://x.example/twilio/media",
            &[("stream_ticket", "a&b")],
            "Sorry & bye",
        );
        let (stream, said) = parse_twiml(&doc).unwrap();
        let (url, params) = stream.unwrap();
        assert_eq!(url, "wss://x.example/twilio/media");
        assert_eq!(params, vec![("stream_ticket".to_owned(), "a&b".to_owned())]);
        assert_eq!(said, vec!["Sorry & bye".to_owned()]);
    }
}
