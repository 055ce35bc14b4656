//! The OpenAI Realtime backend: one WebSocket per call (tokio-tungstenite) to a configurable URL,
//! model and key, speaking the GA event shapes or the beta ones ([`ApiShape`]). mu-law on both
//! sides (`audio/pcmu` / `g711_ulaw`), so caller bytes go into `input_audio_buffer.append`
//! unchanged and `delta`s come back unchanged; server VAD; the tenant's voice; input
//! transcription; tools `get_current_time`, `take_message`, `transfer_call` and, when the call
//! asks the caller for recording consent, `record_consent`. An `error` event or a dropped
//! connection becomes [`FromBackend::Error`], which ends the call (never a silent hang); so does
//! a stalled one: when nothing has arrived for half of [`OpenAiConfig::stall_timeout`] the session
//! sends a WebSocket ping, and when the other half passes with still nothing (not even the pong),
//! the backend is taken as gone.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::borrow::Cow;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{
    AiBackend, BackendError, BackendSession, CONNECT_TIMEOUT, FromBackend, Session, SessionConfig,
    ToBackend,
};

/// Which generation of the Realtime event shapes to speak (protocols.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiShape {
    /// The generally available API.
    Ga,
    /// The beta API (`OpenAI-Beta: realtime=v1`).
    Beta,
}

impl std::str::FromStr for ApiShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ga" => Ok(Self::Ga),
            "beta" => Ok(Self::Beta),
            other => Err(format!("expected `ga` or `beta`, got {other:?}")),
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// WebSocket URL without the model query, e.g. `wss://api.openai.com/v1/realtime`.
    pub url: String,
    /// Model, e.g. `gpt-realtime`.
    pub model: String,
    /// API key.
    pub api_key: SecretString,
    /// Event shapes.
    pub shape: ApiShape,
    /// Silence after which the connection is probed and then given up (see the module docs).
    pub stall_timeout: Duration,
}

/// The default of `OPENAI_REALTIME_STALL_TIMEOUT_MS`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes read from the realtime API's socket at a time (larger events take several reads).
const WS_READ_BUFFER: usize = 8 * 1024;

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("shape", &self.shape)
            .field("stall_timeout", &self.stall_timeout)
            .finish_non_exhaustive()
    }
}

/// The OpenAI Realtime backend.
#[derive(Debug, Clone)]
pub struct OpenAiBackend {
    /// Connection settings.
    pub config: OpenAiConfig,
}

/// The `session.update` event for `config` in the given shape.
pub fn session_update(shape: ApiShape, model: &str, config: &SessionConfig) -> Value {
    let mut tools = vec![
        json!({
            "type": "function",
            "name": "get_current_time",
            "description": "Current date and time at the business.",
            "parameters": {"type": "object", "properties": {}},
        }),
        json!({
            "type": "function",
            "name": "take_message",
            "description": "Take a message for the business to call the caller back (the caller asks for a callback, or for someone who is not available). Give a short summary: who called, what about, how and when to reach them.",
            "parameters": {
                "type": "object",
                "properties": {"summary": {"type": "string", "maxLength": 2000}},
                "required": ["summary"],
            },
        }),
    ];
    if !config.transfer_keywords.is_empty() {
        tools.push(json!({
            "type": "function",
            "name": "transfer_call",
            "description": "Transfer the caller to a person or department, by the keyword of a transfer rule.",
            "parameters": {
                "type": "object",
                "properties": {"keyword": {"type": "string", "enum": config.transfer_keywords}},
                "required": ["keyword"],
            },
        }));
    }
    if config.consent_tool {
        tools.push(json!({
            "type": "function",
            "name": "record_consent",
            "description": "Record the caller's answer to whether this call may be recorded: agreed true when they clearly said yes, false when they clearly said no. Call it once, only on a clear answer.",
            "parameters": {
                "type": "object",
                "properties": {"agreed": {"type": "boolean"}},
                "required": ["agreed"],
            },
        }));
    }
    let vad = json!({"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500, "create_response": true, "interrupt_response": true});
    let session = match shape {
        ApiShape::Ga => json!({
            "type": "realtime",
            "model": model,
            "output_modalities": ["audio"],
            "instructions": config.instructions,
            "audio": {
                "input": {"format": {"type": "audio/pcmu"}, "turn_detection": vad, "transcription": {"model": "whisper-1"}},
                "output": {"format": {"type": "audio/pcmu"}, "voice": config.voice},
            },
            "tools": tools,
            "tool_choice": "auto",
        }),
        ApiShape::Beta => json!({
            "modalities": ["text", "audio"],
            "instructions": config.instructions,
            "turn_detection": vad,
            "voice": config.voice,
            "input_audio_transcription": {"model": "whisper-1"},
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "tools": tools,
            "tool_choice": "auto",
        }),
    };
    json!({"type": "session.update", "session": session})
}

/// Client event for a driver event (several for DTMF and tool results, which also ask for a
/// response).
pub fn client_events(event: ToBackend) -> Vec<Value> {
    match event {
        ToBackend::Audio { payload, .. } => {
            vec![json!({"type": "input_audio_buffer.append", "audio": B64.encode(payload)})]
        }
        ToBackend::Dtmf(digit) => vec![
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": format!("[caller pressed {digit}]")}]}}),
            json!({"type": "response.create"}),
        ],
        ToBackend::Truncate {
            item_id,
            audio_end_ms,
        } => vec![
            json!({"type": "conversation.item.truncate", "item_id": item_id,
            "content_index": 0, "audio_end_ms": audio_end_ms}),
        ],
        ToBackend::ToolResult { call_id, output } => vec![
            json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
                "call_id": call_id, "output": output}}),
            json!({"type": "response.create"}),
        ],
    }
}

/// The driver event for a server event, if it matters to the call. Both shapes are accepted
/// whatever the setting (a server speaking the other shape still works).
pub fn server_event(v: &Value) -> Option<FromBackend> {
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match v.get("type")?.as_str()? {
        "response.output_audio.delta" | "response.audio.delta" => {
            let payload = B64.decode(v.get("delta")?.as_str()?).ok()?;
            Some(FromBackend::Audio {
                item_id: s("item_id"),
                payload,
            })
        }
        "input_audio_buffer.speech_started" => Some(FromBackend::SpeechStarted),
        "conversation.item.input_audio_transcription.completed" => {
            Some(FromBackend::CallerTranscript(s("transcript")))
        }
        "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
            Some(FromBackend::AgentTranscript(s("transcript")))
        }
        "response.function_call_arguments.done" => Some(FromBackend::ToolCall {
            call_id: s("call_id"),
            name: s("name"),
            arguments: s("arguments"),
        }),
        "response.done" => {
            super::usage::response_usage(v.get("response")?.get("usage")?).map(FromBackend::Usage)
        }
        "error" => {
            let e = v.get("error");
            let part = |k: &str| {
                e.and_then(|e| e.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned()
            };
            Some(FromBackend::Error(format!(
                "realtime error {} / {}: {}",
                part("type"),
                part("code"),
                part("message")
            )))
        }
        _ => None,
    }
}

#[tonic::async_trait]
impl AiBackend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai-realtime"
    }

    async fn connect(&self, session_config: SessionConfig) -> Result<Session, BackendError> {
        let c = &self.config;
        let sep = if c.url.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}model={}", c.url, c.model);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| BackendError(format!("bad realtime URL: {e}")))?;
        let auth = format!("Bearer {}", c.api_key.expose_secret())
            .parse()
            .map_err(|_| BackendError("the API key is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", auth);
        if c.shape == ApiShape::Beta {
            request
                .headers_mut()
                .insert("openai-beta", http::HeaderValue::from_static("realtime=v1"));
        }
        // tungstenite zero-fills its read buffer to this size before every read (128 KiB by
        // default): at 50 small events a second per call that cost more CPU than the events.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER);
        // TCP_NODELAY: one append every 20 ms over a path with tens of milliseconds of RTT always
        // has unacknowledged data in flight, so Nagle would hold each append back for an ACK.
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| BackendError("timed out connecting to the realtime API".into()))?
            .map_err(|e| BackendError(format!("cannot connect to the realtime API: {e}")))?;
        let mut session = OpenAiSession {
            ws,
            closed: false,
            stall_timeout: c.stall_timeout,
            last_heard: Instant::now(),
            pinged: false,
        };
        let update = session_update(c.shape, &c.model, &session_config);
        session.send_text(update.to_string()).await?;
        if session_config.speak_first {
            session
                .send_text(json!({"type": "response.create"}).to_string())
                .await?;
        }
        Ok(Box::new(session))
    }
}

/// The fields of a server event the hot path needs, borrowed from the frame: audio deltas (50
/// per second per call) are handled without building a JSON tree.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    item_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
}

/// [`server_event`] with a fast path for audio deltas.
fn parse_server_event(text: &str) -> Option<FromBackend> {
    let head: Head<'_> = serde_json::from_str(text).ok()?;
    match head.kind.as_ref() {
        "response.output_audio.delta" | "response.audio.delta" => Some(FromBackend::Audio {
            item_id: head.item_id.map(Cow::into_owned).unwrap_or_default(),
            payload: B64.decode(head.delta?.as_bytes()).ok()?,
        }),
        "input_audio_buffer.speech_started" => Some(FromBackend::SpeechStarted),
        _ => server_event(&serde_json::from_str::<Value>(text).ok()?),
    }
}

/// One Realtime WebSocket, driven by the call's own task.
struct OpenAiSession {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    closed: bool,
    stall_timeout: Duration,
    /// When the last frame of any kind arrived.
    last_heard: Instant,
    /// Whether a ping went out since then.
    pinged: bool,
}

impl OpenAiSession {
    async fn send_text(&mut self, text: String) -> Result<(), BackendError> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| BackendError(format!("realtime connection lost: {e}")))
    }
}

#[tonic::async_trait]
impl BackendSession for OpenAiSession {
    async fn send(&mut self, event: ToBackend) -> Result<(), BackendError> {
        if self.closed {
            return Err(BackendError("realtime connection closed".into()));
        }
        if let ToBackend::Audio { payload, .. } = &event {
            // Hot path: 50 appends per second per call, written without a JSON tree.
            let text = format!(
                "{{\"type\":\"input_audio_buffer.append\",\"audio\":\"{}\"}}",
                B64.encode(payload)
            );
            return self.send_text(text).await;
        }
        for event in client_events(event) {
            self.send_text(event.to_string()).await?;
        }
        Ok(())
    }

    async fn recv(&mut self) -> Option<FromBackend> {
        if self.closed {
            return None;
        }
        loop {
            // Every deadline derives from stored instants, so a `recv` cancelled by the driver's
            // `select!` loses nothing; `next()` is cancel-safe too (a partly read frame stays
            // buffered in the stream).
            let half = self.stall_timeout / 2;
            let deadline = self.last_heard + if self.pinged { half * 2 } else { half };
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(frame) => frame,
                Err(_) if !self.pinged => {
                    self.pinged = true;
                    if let Err(e) = self.ws.send(Message::Ping(Default::default())).await {
                        self.closed = true;
                        return Some(FromBackend::Error(format!("realtime connection lost: {e}")));
                    }
                    continue;
                }
                Err(_) => {
                    self.closed = true;
                    return Some(FromBackend::Error(format!(
                        "realtime backend stalled: nothing received for {} ms, ping unanswered",
                        self.stall_timeout.as_millis()
                    )));
                }
            };
            if matches!(frame, Some(Ok(_))) {
                self.last_heard = Instant::now();
                self.pinged = false;
            }
            let text = match frame {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_))) | None => {
                    self.closed = true;
                    return Some(FromBackend::Error("realtime connection closed".into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.closed = true;
                    return Some(FromBackend::Error(format!("realtime connection lost: {e}")));
                }
            };
            match parse_server_event(text.as_str()) {
                Some(FromBackend::Error(e)) => {
                    self.closed = true;
                    return Some(FromBackend::Error(e));
                }
                Some(event) => return Some(event),
                None => continue,
            }
        }
    }

    async fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.ws.close(None).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SessionConfig {
        SessionConfig {
            instructions: "be nice".into(),
            greeting: "hello".into(),
            voice: "marin".into(),
            transfer_keywords: vec!["claims".into()],
            speak_first: true,
            consent_tool: false,
        }
    }

    #[test]
    fn ga_and_beta_session_shapes() {
        let ga = session_update(ApiShape::Ga, "gpt-realtime", &cfg());
        assert_eq!(ga["session"]["type"], "realtime");
        assert_eq!(ga["session"]["audio"]["output"]["voice"], "marin");
        assert_eq!(
            ga["session"]["audio"]["input"]["format"]["type"],
            "audio/pcmu"
        );
        assert_eq!(
            ga["session"]["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
        let beta = session_update(ApiShape::Beta, "x", &cfg());
        assert_eq!(beta["session"]["voice"], "marin");
        assert_eq!(beta["session"]["input_audio_format"], "g711_ulaw");
        assert_eq!(beta["session"]["tools"][1]["name"], "take_message");
        assert_eq!(beta["session"]["tools"][2]["name"], "transfer_call");
        assert_eq!(beta["session"]["tools"].as_array().unwrap().len(), 3);
        let asking = SessionConfig {
            consent_tool: true,
            ..cfg()
        };
        let ga = session_update(ApiShape::Ga, "gpt-realtime", &asking);
        assert_eq!(ga["session"]["tools"][3]["name"], "record_consent");
        assert_eq!(
            ga["session"]["tools"][3]["parameters"]["required"][0],
            "agreed"
        );
    }

    #[test]
    fn audio_is_byte_exact_both_ways() {
        let bytes: Vec<u8> = (0..=255).collect();
        let ev = client_events(ToBackend::Audio {
            payload: bytes.clone(),
            timestamp_ms: 0,
        });
        let back = B64.decode(ev[0]["audio"].as_str().unwrap()).unwrap();
        assert_eq!(back, bytes);
        let server =
            json!({"type": "response.audio.delta", "item_id": "i", "delta": B64.encode(&bytes)});
        assert_eq!(
            server_event(&server),
            Some(FromBackend::Audio {
                item_id: "i".into(),
                payload: bytes
            })
        );
    }
}

#[cfg(test)]
mod tls {
    use tokio::io::AsyncReadExt as _;

    /// Runs `client` against a plain TCP listener and returns the first byte it sent; the client
    /// must then fail (no TLS server answers).
    async fn first_byte_of<F, T, E>(client: impl FnOnce(u16) -> F) -> u8
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = tokio::spawn(client(port));
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 1];
        socket.read_exact(&mut first).await.unwrap();
        drop(socket);
        assert!(client.await.unwrap().is_err(), "no TLS server here");
        first[0]
    }

    /// `wss://` URLs (the real Realtime API) speak TLS: the first byte the server sees is a
    /// TLS handshake record, not an error about an unsupported scheme.
    #[tokio::test]
    async fn wss_urls_open_a_tls_connection() {
        let first = first_byte_of(|port| async move {
            tokio_tungstenite::connect_async(format!("wss://localhost:{port}/v1/realtime"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await;
        assert_eq!(first, 0x16, "a TLS handshake record");
    }

    /// The same for `https://` (Twilio's REST API and webhook receivers, through reqwest).
    #[tokio::test]
    async fn https_urls_open_a_tls_connection() {
        let first = first_byte_of(|port| async move {
            reqwest::Client::new()
                .post(format!("https://localhost:{port}/2010-04-01/Accounts"))
                .send()
                .await
                .map(|_| ())
        })
        .await;
        assert_eq!(first, 0x16, "a TLS handshake record");
    }
}
