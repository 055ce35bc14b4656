//! AI backends behind one trait. A backend session is two channels: the call driver
//! ([`crate::call`]) sends [`ToBackend`] events (caller audio, DTMF, truncation, tool results) and
//! receives [`FromBackend`] events (agent audio, speech started, transcripts, tool calls, errors).
//! Audio is 8 kHz G.711 mu-law in both directions; backends never transcode.
//!
//! - [`local::LocalBackend`]: offline, for development and tests.
//! - [`openai::OpenAiBackend`]: the OpenAI Realtime API over WebSocket (GA or beta event shapes).

pub mod local;
pub mod openai;
pub mod usage;

use std::time::Duration;

use tokio::sync::mpsc;

/// What a session is configured with.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Full instructions (persona, sliders, blocks, transfer rules, caller context).
    pub instructions: String,
    /// The greeting the agent speaks first.
    pub greeting: String,
    /// Realtime voice name.
    pub voice: String,
    /// Keywords of the transfer rules (the `transfer_call` tool's enum); empty: no transfer tool.
    pub transfer_keywords: Vec<String>,
    /// Whether the agent speaks first (false when a session continues a call after a rollover).
    pub speak_first: bool,
    /// Whether the `record_consent` tool is offered (the caller is asked for recording consent).
    pub consent_tool: bool,
}

/// Caller side to backend.
#[derive(Debug, Clone)]
pub enum ToBackend {
    /// Caller audio, mu-law, with its media timestamp.
    Audio {
        /// The bytes, unchanged.
        payload: Vec<u8>,
        /// Media time of the frame (ms since stream start).
        timestamp_ms: u32,
    },
    /// A DTMF digit.
    Dtmf(String),
    /// Cut the agent's item at what the caller actually heard.
    Truncate {
        /// The item.
        item_id: String,
        /// Audio heard, in ms.
        audio_end_ms: u32,
    },
    /// Result of a tool call.
    ToolResult {
        /// The call id the backend gave.
        call_id: String,
        /// JSON text.
        output: String,
    },
}

/// Backend to caller side.
#[derive(Debug, Clone, PartialEq)]
pub enum FromBackend {
    /// Agent audio, mu-law.
    Audio {
        /// The item (response part) it belongs to.
        item_id: String,
        /// The bytes, unchanged.
        payload: Vec<u8>,
    },
    /// The caller started speaking (barge-in candidate).
    SpeechStarted,
    /// What the caller said (or a placeholder).
    CallerTranscript(String),
    /// What the agent said (or a placeholder).
    AgentTranscript(String),
    /// The agent wants a tool.
    ToolCall {
        /// Id to answer with.
        call_id: String,
        /// Tool name.
        name: String,
        /// JSON arguments.
        arguments: String,
    },
    /// The model's usage of one response (`response.done`), to be summed over the call.
    Usage(ModelUsage),
    /// The backend failed; the call must end.
    Error(String),
}

/// Tokens the realtime model reports for one response, or their sum over a call. `input_*`
/// count every input token of the kind, cached ones included (as the API reports them);
/// `cached_*` are the part of those read from the cache, billed at the cached price, so the
/// uncached input of a kind is `input_* - cached_*` ([`ModelUsage::uncached_text`]). A backend
/// that reports nothing (the local one) leaves every count at zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelUsage {
    /// Input text tokens (cached included).
    pub input_text: u64,
    /// Input audio tokens (cached included).
    pub input_audio: u64,
    /// Cached input text tokens.
    pub cached_text: u64,
    /// Cached input audio tokens.
    pub cached_audio: u64,
    /// Output text tokens.
    pub output_text: u64,
    /// Output audio tokens.
    pub output_audio: u64,
}

impl ModelUsage {
    /// Adds another response's usage (saturating: a hostile backend cannot wrap the sum).
    pub fn add(&mut self, other: &ModelUsage) {
        self.input_text = self.input_text.saturating_add(other.input_text);
        self.input_audio = self.input_audio.saturating_add(other.input_audio);
        self.cached_text = self.cached_text.saturating_add(other.cached_text);
        self.cached_audio = self.cached_audio.saturating_add(other.cached_audio);
        self.output_text = self.output_text.saturating_add(other.output_text);
        self.output_audio = self.output_audio.saturating_add(other.output_audio);
    }

    /// Input text tokens not read from the cache.
    pub fn uncached_text(&self) -> u64 {
        self.input_text.saturating_sub(self.cached_text)
    }

    /// Input audio tokens not read from the cache.
    pub fn uncached_audio(&self) -> u64 {
        self.input_audio.saturating_sub(self.cached_audio)
    }
}

/// A running backend session. The call driver owns it and polls [`BackendSession::recv`] inside
/// `tokio::select!` next to the caller's stream, so `recv` must be cancel-safe; sending and
/// receiving happen on the driver's own task, with no extra hop per audio frame.
#[tonic::async_trait]
pub trait BackendSession: Send {
    /// Sends one event to the backend.
    async fn send(&mut self, event: ToBackend) -> Result<(), BackendError>;
    /// The next event from the backend; `None` once it is gone. Cancel-safe.
    async fn recv(&mut self) -> Option<FromBackend>;
    /// Ends the session politely.
    async fn close(&mut self) {}
}

/// A session opened by [`AiBackend::connect`].
pub type Session = Box<dyn BackendSession>;

/// A session whose backend runs in its own task, reached through two channels.
pub struct ChannelSession {
    /// Events to the backend.
    pub tx: mpsc::Sender<ToBackend>,
    /// Events from the backend.
    pub rx: mpsc::Receiver<FromBackend>,
}

#[tonic::async_trait]
impl BackendSession for ChannelSession {
    async fn send(&mut self, event: ToBackend) -> Result<(), BackendError> {
        self.tx
            .send(event)
            .await
            .map_err(|_| BackendError("backend task ended".into()))
    }

    async fn recv(&mut self) -> Option<FromBackend> {
        self.rx.recv().await
    }
}

/// Why a session could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// An AI backend.
#[tonic::async_trait]
pub trait AiBackend: Send + Sync {
    /// Name recorded on the call ("local", "openai-realtime").
    fn name(&self) -> &'static str;
    /// Opens a session; the agent speaks the greeting first.
    async fn connect(&self, config: SessionConfig) -> Result<Session, BackendError>;
}

/// Channel capacity between the driver and a backend: a few seconds of 20 ms frames.
pub const CHANNEL_CAPACITY: usize = 256;

/// Time a backend gets to open a session.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
