//! Whole-mesh call benchmark and soak: N concurrent simulated Twilio calls through the real
//! release binaries of tenant-svc, memory-svc, media-svc and the gateway, each a separate child
//! process on loopback, against a private PostgreSQL (test kit) and a fake OpenAI Realtime server
//! in this process that echoes every `input_audio_buffer.append` as agent audio (media-svc runs
//! with backend `openai-realtime` pointed at it, so the whole audio path runs without network).
//!
//! A few tenants are created through tenant-svc's admin gRPC API. Each call, started `--stagger-ms`
//! after the previous one, plays Twilio: a signed `POST /twilio/voice`, the TwiML's `<Stream>`
//! opened as a signed Media Streams WebSocket (`connected`, `start` with the stream ticket), then a
//! 160-byte mu-law frame every 20 ms in real time (send time, call number and a marker stamped
//! into the first 16 bytes) with marks echoed once the agent audio queued before them has "played", and
//! `stop` at the end. After every call is streaming and a warm-up, a steady-state window of
//! `--seconds` is measured:
//! - calls started / completed / failed (with reasons), frames sent and echoed back (% delivered),
//!   frames delivered to the wrong call;
//! - added latency: a frame leaving the simulated Twilio -> gateway -> media-svc -> fake backend
//!   -> media-svc -> gateway -> back (p50 / p99 / max);
//! - CPU (user + system from `/proc/<pid>/stat`) of every process over the window, gateway and
//!   media-svc as core-ms per call-second and their sum; the machine's idle share (`/proc/stat`);
//! - RSS, open file descriptors and threads of every process (PostgreSQL: the postmaster and its
//!   backends, PSS summed) at the start, middle and end of the window, and whether they grew.
//!
//! - tokio tasks alive in every service (`process_tokio_alive_tasks` on `/metrics`) before the
//!   first call, at the start, middle and end of the window and after every call hung up.
//!
//! Exits non-zero when a call failed, an RSS grew more than 10 % from the middle to the end, an
//! fd count grew, a service's task count grew (middle to end, or more were left after every call
//! hung up than before the first, beyond 32 or a tenth of the calls), streams were left open after every call hung up, or a service did not exit 0
//! on SIGTERM, so `--seconds 1800` is the 30-minute soak and `--calls 50 --seconds 180` its CI
//! version.
//!
//! ```text
//! neurosphere bench calls --calls 300 --seconds 60
//! # or by hand:
//! cargo build --release -p tenant-svc -p memory-svc -p media-svc -p gateway -p e2e --bins --example calls_bench
//! target/release/examples/calls_bench --calls 300 --seconds 60 [--tenants 4 --stagger-ms 20 --warmup 3]
//! ```
//! Needs PostgreSQL binaries on the machine (the test kit starts a private cluster).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt as _, StreamExt as _};
use mesh::identity::{DevKeys, names};
use mesh::testkit_process::{ServiceProcess, http_get, run_to_exit, service_env};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The Twilio account every simulated call belongs to (the one `e2e::Mesh::voice_params` uses).
const ACCOUNT_SID: &str = e2e::ACCOUNT_SID;
/// What the gateway believes its public address is (signatures are computed over it); requests
/// go to its real loopback port.
const PUBLIC_BASE_URL: &str = "https://mesh-bench.example";
/// How long a call keeps listening after its last frame for the echoes still in flight (it
/// stops as soon as every frame it sent has come back); later ones count as not delivered.
const DRAIN: Duration = Duration::from_secs(5);
/// Bytes 12..16 of every frame a simulated caller sends, so an echo is told apart from audio
/// media-svc plays itself (a recording announcement, comfort tones).
const STAMP_MAGIC: [u8; 4] = *b"NSMB";

struct Args {
    calls: usize,
    seconds: u64,
    tenants: usize,
    stagger_ms: u64,
    warmup: u64,
    idle_sockets: usize,
    /// Every tenant records its calls (policy ON, a short announcement), media-svc with a
    /// generated platform key, a local spool and store in the run's temporary folder.
    recording: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        calls: 50,
        seconds: 60,
        tenants: 4,
        stagger_ms: 20,
        warmup: 3,
        idle_sockets: 0,
        recording: false,
    };
    let usage = "flags: --calls N (50) --seconds S (60) --tenants T (4) --stagger-ms MS (20) \
                 --warmup S (3) --idle-sockets N (0) --recording on|off (off)";
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(usage.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value; {usage}"))?;
        let bad = |_| format!("{flag} {value}: not a number; {usage}");
        match flag.as_str() {
            "--calls" => a.calls = value.parse().map_err(bad)?,
            "--seconds" => a.seconds = value.parse().map_err(bad)?,
            "--tenants" => a.tenants = value.parse().map_err(bad)?,
            "--stagger-ms" => a.stagger_ms = value.parse().map_err(bad)?,
            "--warmup" => a.warmup = value.parse().map_err(bad)?,
            "--idle-sockets" => a.idle_sockets = value.parse().map_err(bad)?,
            "--recording" => {
                a.recording = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("--recording {value}: on or off; {usage}")),
                }
            }
            other => return Err(format!("unknown flag {other}; {usage}")),
        }
    }
    if a.calls == 0 || a.seconds < 2 || a.tenants == 0 || a.tenants > 90 {
        return Err(format!(
            "need --calls >= 1, --seconds >= 2, 1 <= --tenants <= 90; {usage}"
        ));
    }
    Ok(a)
}

// ------------------------------------------------------------------------------------------------
// The fake OpenAI Realtime server
// ------------------------------------------------------------------------------------------------

/// Echoes caller audio as agent audio and ignores everything else (session.update, response.create).
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/v1/realtime", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(ws_config())).await
                else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let text = text.as_str();
                    if json_str(text, "type") != Some("input_audio_buffer.append") {
                        continue;
                    }
                    let Some(audio) = json_str(text, "audio") else {
                        continue;
                    };
                    let reply = format!(
                        "{{\"type\":\"response.output_audio.delta\",\"response_id\":\"bench\",\
                         \"item_id\":\"bench-item\",\"delta\":\"{audio}\"}}"
                    );
                    if sink.send(Message::text(reply)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// WebSocket settings of the load generator and the fake backend. tungstenite zero-fills its
/// whole read buffer (128 KiB by default) before every read, which at 50 small messages per
/// second per call costs more than the messages; messages here are well under 4 KiB, and the
/// generator must not starve the services it measures on a 2-core machine.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

/// The string value of the first `"key":"value"` in a JSON text, for the few fixed-shape messages
/// this benchmark reads 50 times a second per call (no escapes occur in the values read: base64,
/// event names, mark names).
fn json_str<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let start = text.find(&pattern)? + pattern.len();
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

// ------------------------------------------------------------------------------------------------
// Measurements
// ------------------------------------------------------------------------------------------------

/// A latency histogram in microseconds: 10 µs buckets to 10 ms, 1 ms to 1 s, 100 ms to 60 s.
struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
}

impl Histogram {
    const LEN: usize = 2581;

    fn new() -> Histogram {
        Histogram {
            buckets: (0..Self::LEN).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        (if us < 10_000 {
            us / 10
        } else if us < 1_000_000 {
            1000 + (us - 10_000) / 1000
        } else if us < 60_000_000 {
            1990 + (us - 1_000_000) / 100_000
        } else {
            2580
        }) as usize
    }

    /// Upper edge of bucket `i`, in microseconds.
    fn upper(i: usize) -> u64 {
        let i = i as u64;
        if i < 1000 {
            (i + 1) * 10
        } else if i < 1990 {
            10_000 + (i - 999) * 1000
        } else {
            1_000_000 + (i - 1989) * 100_000
        }
    }

    fn record(&self, us: u64) {
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// The `p` quantile (0..=1) in milliseconds (bucket upper edge, at most the maximum).
    fn quantile_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let max = self.max_us.load(Ordering::Relaxed);
                return Self::upper(i).min(max) as f64 / 1000.0;
            }
        }
        self.max_us.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

/// Shared state of the load generator.
struct Load {
    origin: Instant,
    gateway: SocketAddr,
    auth_token: String,
    numbers: Vec<String>,
    http: reqwest::Client,
    /// Measurement window `[start, end)` in ns since `origin` (frames sent inside it count).
    window_start: AtomicU64,
    window_end: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    sent_total: AtomicU64,
    received_total: AtomicU64,
    misrouted: AtomicU64,
    /// Agent frames that were no echo (media-svc's own prompts and tones).
    unstamped: AtomicU64,
    latency: Histogram,
    /// Calls whose stream is up (and not yet ended).
    streaming: AtomicU64,
    /// Calls that reached streaming at all.
    started: AtomicU64,
    completed: AtomicU64,
    failures: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl Load {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start.load(Ordering::Relaxed)
            && t < self.window_end.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.failures.lock().expect("lock").values().sum()
    }
}

// ------------------------------------------------------------------------------------------------
// One simulated call
// ------------------------------------------------------------------------------------------------

/// Plays call number `n` until `stop` flips, then hangs up like Twilio.
/// Idle Media Streams WebSockets (`--idle-sockets`): signed upgrades that never send `start`,
/// reopened whenever the gateway closes them, so that many are held open throughout.
#[derive(Default)]
struct Idle {
    open: AtomicU64,
    opened: AtomicU64,
    closed_by_gateway: AtomicU64,
    refused: AtomicU64,
}

async fn idle_socket(load: Arc<Load>, idle: Arc<Idle>, mut stop: watch::Receiver<bool>) {
    let url = format!(
        "{}/twilio/media",
        PUBLIC_BASE_URL.replacen("https", "wss", 1)
    );
    let sig = gateway::signature::compute(load.auth_token.as_bytes(), &url, &[]);
    while !*stop.borrow() {
        let mut req = format!("ws://{}/twilio/media", load.gateway)
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("X-Twilio-Signature", sig.parse().expect("header"));
        let Ok((mut ws, _)) =
            tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true).await
        else {
            idle.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        idle.opened.fetch_add(1, Ordering::Relaxed);
        idle.open.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            // The gateway closes a stream that sends no `start` (10 s): open another.
            _ = async { while let Some(Ok(_)) = ws.next().await {} } => {
                idle.closed_by_gateway.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.changed() => {}
        }
        idle.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn call(load: Arc<Load>, n: usize, mut stop: watch::Receiver<bool>) {
    let outcome = call_inner(&load, n, &mut stop).await;
    match outcome {
        Ok(()) => {
            load.completed.fetch_add(1, Ordering::Relaxed);
        }
        Err(reason) => {
            *load
                .failures
                .lock()
                .expect("lock")
                .entry(reason)
                .or_default() += 1;
        }
    }
}

async fn call_inner(
    load: &Load,
    n: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), &'static str> {
    let call_sid = format!("CA{:032x}", n + 1);
    let stream_sid = format!("MZ{:032x}", n + 1);
    let from = format!("+1555{:07}", n % 10_000_000);
    let to = &load.numbers[n % load.numbers.len()];

    // 1. The voice webhook, signed as Twilio signs it.
    let (stream_url, stream_params) = webhook(load, &call_sid, &from, to).await?;
    // 2. The Media Streams WebSocket, signed over the stream URL with no parameters.
    let (mut tx, mut rx) =
        open_stream(load, &stream_url, stream_params, &call_sid, &stream_sid).await?;
    load.started.fetch_add(1, Ordering::Relaxed);
    load.streaming.fetch_add(1, Ordering::Relaxed);
    let result = stream_audio(
        load,
        n as u32,
        &stream_sid,
        &call_sid,
        &mut tx,
        &mut rx,
        stop,
    )
    .await;
    load.streaming.fetch_sub(1, Ordering::Relaxed);
    result
}

/// The signed voice webhook of a call from `from` to `to`; returns the TwiML's stream URL and
/// `<Parameter>`s.
async fn webhook(
    load: &Load,
    call_sid: &str,
    from: &str,
    to: &str,
) -> Result<(String, Vec<(String, String)>), &'static str> {
    let params: Vec<(String, String)> = e2e::Mesh::voice_params(call_sid, from, to)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let sig = gateway::signature::compute(
        load.auth_token.as_bytes(),
        &format!("{PUBLIC_BASE_URL}/twilio/voice"),
        &params,
    );
    let response = load
        .http
        .post(format!("http://{}/twilio/voice", load.gateway))
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .map_err(|_| "webhook request failed")?;
    if response.status() != 200 {
        return Err("webhook not 200");
    }
    let twiml = response.text().await.map_err(|_| "webhook body")?;
    let (stream, _) = gateway::sim::parse_twiml(&twiml).map_err(|_| "TwiML unreadable")?;
    stream.ok_or("TwiML without <Stream>")
}

/// Opens the Media Streams WebSocket and sends `connected` and `start` with the TwiML's
/// parameters, as Twilio does.
async fn open_stream(
    load: &Load,
    stream_url: &str,
    stream_params: Vec<(String, String)>,
    call_sid: &str,
    stream_sid: &str,
) -> Result<(WsTx, WsRx), &'static str> {
    let ws_sig = gateway::signature::compute(load.auth_token.as_bytes(), stream_url, &[]);
    let path = stream_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
        .unwrap_or_else(|| "/twilio/media".into());
    let mut req = format!("ws://{}{path}", load.gateway)
        .into_client_request()
        .map_err(|_| "bad stream URL")?;
    req.headers_mut().insert(
        "X-Twilio-Signature",
        ws_sig.parse().map_err(|_| "bad header")?,
    );
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true)
        .await
        .map_err(|_| "WebSocket refused")?;
    let (mut tx, rx) = ws.split();
    let custom: serde_json::Map<String, serde_json::Value> = stream_params
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    let start = serde_json::json!({
        "event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
        "start": {"accountSid": ACCOUNT_SID, "streamSid": stream_sid, "callSid": call_sid,
                  "tracks": ["inbound"],
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                  "customParameters": custom}
    });
    tx.send(Message::text(
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
    ))
    .await
    .map_err(|_| "WebSocket send")?;
    tx.send(Message::text(start.to_string()))
        .await
        .map_err(|_| "WebSocket send")?;
    Ok((tx, rx))
}

type WsTx = futures::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;
type WsRx = futures::stream::SplitStream<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
>;

/// What one message from the gateway asks of the simulated Twilio side.
enum Incoming {
    Nothing,
    Audio,
    Closed,
}

/// Twilio's playback model: agent audio plays in real time; a mark is echoed once the audio
/// queued before it has played; `clear` drops the queue and echoes every pending mark.
struct Playback {
    play_until: Instant,
    marks: std::collections::VecDeque<(Instant, String)>,
    seq: u64,
}

fn mark_msg(stream_sid: &str, seq: u64, name: &str) -> Message {
    Message::text(format!(
        "{{\"event\":\"mark\",\"sequenceNumber\":\"{seq}\",\"streamSid\":\"{stream_sid}\",\
         \"mark\":{{\"name\":\"{name}\"}}}}"
    ))
}

/// Handles one message from the gateway: measures echoed audio, queues marks.
async fn on_message(
    load: &Load,
    me: u32,
    stream_sid: &str,
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    play: &mut Playback,
    tx: &mut WsTx,
) -> Incoming {
    let text = match msg {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Incoming::Closed,
        Some(Ok(_)) => return Incoming::Nothing,
    };
    let text = text.as_str();
    match json_str(text, "event") {
        Some("media") => {
            let now = Instant::now();
            play.play_until = play.play_until.max(now) + Duration::from_millis(20);
            let Some(payload) = json_str(text, "payload") else {
                return Incoming::Nothing;
            };
            // The first 24 base64 characters are the 16 stamped bytes (and two more).
            let Some(head) = payload.get(..24).and_then(|h| B64.decode(h).ok()) else {
                return Incoming::Nothing;
            };
            if head[12..16] != STAMP_MAGIC {
                // Agent audio media-svc made itself (a recording announcement, comfort tones).
                load.unstamped.fetch_add(1, Ordering::Relaxed);
                return Incoming::Nothing;
            }
            let sent = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            let owner = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
            if owner != me {
                load.misrouted.fetch_add(1, Ordering::Relaxed);
                return Incoming::Nothing;
            }
            load.received_total.fetch_add(1, Ordering::Relaxed);
            if load.in_window(sent) {
                load.received.fetch_add(1, Ordering::Relaxed);
                load.latency
                    .record(load.now_ns().saturating_sub(sent) / 1000);
            }
            return Incoming::Audio;
        }
        Some("mark") => {
            if let Some(name) = json_str(text, "name") {
                let at = play.play_until.max(Instant::now());
                play.marks.push_back((at, name.to_owned()));
            }
        }
        Some("clear") => {
            play.play_until = Instant::now();
            while let Some((_, name)) = play.marks.pop_front() {
                play.seq += 1;
                if tx
                    .send(mark_msg(stream_sid, play.seq, &name))
                    .await
                    .is_err()
                {
                    return Incoming::Closed;
                }
            }
        }
        _ => {}
    }
    Incoming::Nothing
}

async fn stream_audio(
    load: &Load,
    me: u32,
    stream_sid: &str,
    call_sid: &str,
    tx: &mut WsTx,
    rx: &mut WsRx,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), &'static str> {
    let mut play = Playback {
        play_until: Instant::now(),
        marks: Default::default(),
        seq: 1,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut chunk: u64 = 0;
    let mut frame = [0xFFu8; 160];
    frame[8..12].copy_from_slice(&me.to_le_bytes());
    frame[12..16].copy_from_slice(&STAMP_MAGIC);
    let (mut frames_sent, mut frames_back) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                chunk += 1;
                send_frame(load, stream_sid, chunk, &mut frame, &mut play, tx).await?;
                frames_sent += 1;
            }
            msg = rx.next() => {
                match on_message(load, me, stream_sid, msg, &mut play, tx).await {
                    Incoming::Closed => return Err("dropped by the gateway"),
                    Incoming::Audio => frames_back += 1,
                    Incoming::Nothing => {}
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Hang up like Twilio: let echoes in flight arrive, then `stop`, then wait for the close.
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while frames_back < frames_sent
        && let Ok(msg) = tokio::time::timeout_at(drain_until, rx.next()).await
    {
        match on_message(load, me, stream_sid, msg, &mut play, tx).await {
            Incoming::Closed => return Err("dropped by the gateway"),
            Incoming::Audio => frames_back += 1,
            Incoming::Nothing => {}
        }
    }
    if frames_back == 0 {
        return Err("no audio came back");
    }
    hang_up(stream_sid, call_sid, &mut play, tx, rx).await
}

/// Sends the next 20 ms frame, stamped with the send time, then the marks whose audio has
/// played.
async fn send_frame(
    load: &Load,
    stream_sid: &str,
    chunk: u64,
    frame: &mut [u8; 160],
    play: &mut Playback,
    tx: &mut WsTx,
) -> Result<(), &'static str> {
    let sent = load.now_ns();
    frame[..8].copy_from_slice(&sent.to_le_bytes());
    play.seq += 1;
    let msg = format!(
        "{{\"event\":\"media\",\"sequenceNumber\":\"{}\",\"streamSid\":\"{stream_sid}\",\
         \"media\":{{\"track\":\"inbound\",\"chunk\":\"{chunk}\",\"timestamp\":\"{}\",\
         \"payload\":\"{}\"}}}}",
        play.seq,
        (chunk - 1) * 20,
        B64.encode(*frame)
    );
    if tx.send(Message::text(msg)).await.is_err() {
        return Err("dropped by the gateway");
    }
    load.sent_total.fetch_add(1, Ordering::Relaxed);
    if load.in_window(sent) {
        load.sent.fetch_add(1, Ordering::Relaxed);
    }
    let now = Instant::now();
    while play.marks.front().is_some_and(|(at, _)| *at <= now) {
        let (_, name) = play.marks.pop_front().expect("non-empty");
        play.seq += 1;
        if tx
            .send(mark_msg(stream_sid, play.seq, &name))
            .await
            .is_err()
        {
            return Err("dropped by the gateway");
        }
    }
    Ok(())
}

/// Hangs up like Twilio (`stop`), then expects the gateway to close the socket normally.
async fn hang_up(
    stream_sid: &str,
    call_sid: &str,
    play: &mut Playback,
    tx: &mut WsTx,
    rx: &mut WsRx,
) -> Result<(), &'static str> {
    play.seq += 1;
    let stop_msg = format!(
        "{{\"event\":\"stop\",\"sequenceNumber\":\"{}\",\"streamSid\":\"{stream_sid}\",\
         \"stop\":{{\"accountSid\":\"{ACCOUNT_SID}\",\"callSid\":\"{call_sid}\"}}}}",
        play.seq
    );
    tx.send(Message::text(stop_msg))
        .await
        .map_err(|_| "dropped by the gateway")?;
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(m)) = rx.next().await {
            if let Message::Close(frame) = m {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await;
    let _ = tx.close().await;
    match closed {
        Ok(Some(1000)) => Ok(()),
        Ok(_) => Err("closed abnormally after stop"),
        Err(_) => Err("not closed within 5 s of stop"),
    }
}

// ------------------------------------------------------------------------------------------------
// /proc readings
// ------------------------------------------------------------------------------------------------

/// Fields of `/proc/<pid>/stat` after the parenthesised command name (index 0 is field 3).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // The state letter is not a number: keep positions by mapping it to 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid).map(|f| f[1] as u32)
}

/// Live processes whose parent is `ppid`.
fn children_of(ppid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(ppid))
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A `kB` line of `/proc/<pid>/<file>` (`status`, `smaps_rollup`).
fn kb(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l[key.len()..].split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100)
}

/// (idle + iowait, total) ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8) // guest time is already counted in user
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 5 {
        return (0, 0);
    }
    (cpu[3] + cpu[4], cpu.iter().sum())
}

/// A measured process: one service binary, PostgreSQL (the postmaster and its children), or
/// this process (load generator + fake backend).
#[derive(Clone, Copy)]
enum Target {
    Single(u32),
    Postgres(u32),
}

#[derive(Clone, Copy, Default)]
struct Usage {
    /// RSS (PostgreSQL: PSS summed over its processes, so shared buffers count once), kB.
    mem_kb: u64,
    fds: u64,
    threads: u64,
    procs: u64,
}

impl Target {
    fn pids(self) -> Vec<u32> {
        match self {
            Target::Single(pid) => vec![pid],
            Target::Postgres(pm) => std::iter::once(pm).chain(children_of(pm)).collect(),
        }
    }

    fn usage(self) -> Usage {
        let mut u = Usage::default();
        for pid in self.pids() {
            u.mem_kb += match self {
                Target::Single(_) => kb(pid, "status", "VmRSS:"),
                Target::Postgres(_) => kb(pid, "smaps_rollup", "Pss:"),
            };
            u.fds += fd_count(pid);
            u.threads += kb(pid, "status", "Threads:");
            u.procs += 1;
        }
        u
    }

    /// User + system CPU ticks (PostgreSQL: also of backends that exited, via the postmaster's
    /// waited-for children times).
    fn cpu_ticks(self) -> u64 {
        let own = |pid: u32, waited: bool| {
            stat_fields(pid).map_or(0, |f| {
                f[11] + f[12] + if waited { f[13] + f[14] } else { 0 }
            })
        };
        match self {
            Target::Single(pid) => own(pid, false),
            Target::Postgres(pm) => {
                own(pm, true)
                    + children_of(pm)
                        .into_iter()
                        .map(|c| own(c, false))
                        .sum::<u64>()
            }
        }
    }
}

/// The sum of the unlabelled or labelled samples of `metric` in a Prometheus text page.
async fn gauge(admin: SocketAddr, metric: &str) -> Option<f64> {
    let page = tokio::time::timeout(Duration::from_secs(5), http_get(admin, "/metrics"))
        .await
        .ok()?;
    let values: Vec<f64> = page
        .lines()
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

// ------------------------------------------------------------------------------------------------
// The mesh
// ------------------------------------------------------------------------------------------------

struct Service {
    name: &'static str,
    process: ServiceProcess,
    pid: u32,
    warnings: Arc<std::sync::Mutex<(u64, u64, Vec<String>)>>,
}

/// Starts `target/release/<name>` with `env` and finds its pid (a child of this process).
async fn start_service(
    bin_dir: &std::path::Path,
    name: &'static str,
    env: &BTreeMap<String, String>,
) -> Service {
    let binary = bin_dir.join(name).to_string_lossy().into_owned();
    let before = children_of(std::process::id());
    let (b, e) = (binary.clone(), env.clone());
    let mut process = match tokio::spawn(async move { ServiceProcess::start(&b, &e).await }).await {
        Ok(p) => p,
        Err(_) => {
            // The start-up log went with the failed start: run it again to show why.
            let (code, out) = run_to_exit(&binary, env).await;
            eprintln!("calls_bench: {name} did not start (exit {code:?}):\n{out}");
            std::process::exit(2);
        }
    };
    let comm_name: String = name.chars().take(15).collect();
    let pid = children_of(std::process::id())
        .into_iter()
        .find(|p| !before.contains(p) && comm(*p) == comm_name)
        .unwrap_or_else(|| panic!("cannot find the pid of {name}"));
    // `mesh::telemetry` installs the metrics recorder on the first `/metrics` render; until then
    // every counter and gauge update is dropped. Render once now, so the gauges read later
    // (active streams and calls) count from the start.
    if let Some(admin) = process.admin {
        let _ = http_get(admin, "/metrics").await;
    }
    // Keep the log flowing (and count warnings and errors) so the pipe never fills.
    let warnings = Arc::new(std::sync::Mutex::new((0u64, 0u64, Vec::new())));
    let mut lines = std::mem::replace(&mut process.lines, tokio::sync::mpsc::unbounded_channel().1);
    let counts = warnings.clone();
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            let error = line.contains("\"level\":\"ERROR\"");
            let warn = line.contains("\"level\":\"WARN\"");
            if error || warn {
                let mut c = counts.lock().expect("lock");
                if error {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
                if c.2.len() < 3 {
                    c.2.push(line.chars().take(300).collect());
                }
            }
        }
    });
    Service {
        name,
        process,
        pid,
        warnings,
    }
}

/// Creates `count` tenants with one number each through tenant-svc's admin API; their ids and
/// numbers.
async fn seed_tenants(keys: &DevKeys, tenant_svc: SocketAddr, count: usize) -> Vec<(i64, String)> {
    use mesh::api::tenant::AgentConfig;
    let token = keys
        .identity(names::OPERATOR)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &["tenant:admin"],
            Duration::from_secs(300),
        )
        .expect("mint operator token");
    let channel = tonic::transport::Channel::from_shared(format!("http://{tenant_svc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to tenant-svc");
    let mut admin = e2e::TenantAdmin::new(channel);
    let mut numbers = Vec::new();
    for i in 0..count {
        let number = format!("+1415555{:04}", 101 + i);
        let config = AgentConfig {
            greeting_new_caller: Some(format!("Thank you for calling tenant {i}.")),
            ..Default::default()
        };
        let (email, name) = (
            format!("bench{i}@tenants.example"),
            format!("Bench Tenant {i}"),
        );
        let id = e2e::create_tenant(&mut admin, &token, &email, &name, config, &number).await;
        numbers.push((id, number));
    }
    numbers
}

/// The announcement every recorded bench call plays before the agent's audio (short, so the
/// warm-up covers it).
const BENCH_ANNOUNCEMENT: &str = "This call is recorded.";

/// Turns recording ON for each tenant through tenant-svc (`UpdateCallHandling`, the portal's
/// path), with [`BENCH_ANNOUNCEMENT`].
async fn record_every_call(keys: &DevKeys, tenant_svc: SocketAddr, customers: &[i64]) {
    use mesh::api::tenant::tenant_service_client::TenantServiceClient;
    use mesh::api::tenant::{GetCallHandlingRequest, RecordingPolicy, UpdateCallHandlingRequest};
    use mesh::identity::scope;
    let channel = tonic::transport::Channel::from_shared(format!("http://{tenant_svc}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to tenant-svc");
    for &id in customers {
        let token = keys
            .identity(names::TENANT_SVC)
            .minter()
            .mint_tenant(
                mesh::domain::CustomerId::new(id).expect("positive id"),
                "calls-bench",
                &[names::TENANT_SVC],
                &[scope::TENANT_READ, scope::TENANT_WRITE],
                Duration::from_secs(300),
            )
            .expect("mint tenant token");
        let mut tenant = TenantServiceClient::new(channel.clone());
        let mut settings = tenant
            .get_call_handling(e2e::with_token(GetCallHandlingRequest {}, &token))
            .await
            .expect("GetCallHandling")
            .into_inner()
            .settings
            .expect("settings");
        settings.recording_policy = RecordingPolicy::On as i32;
        settings.recording_announcement = BENCH_ANNOUNCEMENT.into();
        let update = UpdateCallHandlingRequest {
            settings: Some(settings),
        };
        tenant
            .update_call_handling(e2e::with_token(update, &token))
            .await
            .expect("UpdateCallHandling");
    }
}

/// What media-svc recorded: recordings, how many were cut short, seconds of audio, and how
/// many were still being written or uploaded.
async fn recorded(admin: &tokio_postgres::Client) -> String {
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE truncated), coalesce(sum(frames), 0)::bigint, \
             count(*) FILTER (WHERE state <> 'stored') FROM media.recordings",
            &[],
        )
        .await
        .expect("count recordings");
    let (n, truncated, frames, unstored): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    format!(
        "{n} recordings, {truncated} truncated, {:.0} s of audio, {unstored} not yet in the store",
        frames as f64 / 8000.0
    )
}

// ------------------------------------------------------------------------------------------------
// The run
// ------------------------------------------------------------------------------------------------

/// Sleeps `d`, printing a progress line every minute.
async fn sleep_with_progress(load: &Load, began: Instant, d: Duration) {
    let until = tokio::time::Instant::now() + d;
    loop {
        let next = (tokio::time::Instant::now() + Duration::from_secs(60)).min(until);
        tokio::time::sleep_until(next).await;
        if next >= until {
            return;
        }
        println!(
            "  .. {:>5.0} s into the window: {} calls streaming, {} failed, {} frames echoed so far, \
             p99 so far {:.2} ms",
            began.elapsed().as_secs_f64(),
            load.streaming.load(Ordering::Relaxed),
            load.failed(),
            load.received.load(Ordering::Relaxed),
            load.latency.quantile_ms(0.99)
        );
    }
}

struct Snapshot {
    usage: Vec<Usage>,
    streams: Option<f64>,
    media_calls: Option<f64>,
    /// `process_tokio_alive_tasks` of each service, in `services` order.
    tasks: Vec<Option<f64>>,
}

async fn snapshot(
    targets: &[(String, Target)],
    gateway_admin: SocketAddr,
    media_admin: SocketAddr,
    services: &[SocketAddr],
) -> Snapshot {
    // The process figures first: each scrape below is a fresh admin connection, and the server
    // side of it can outlive the response by a moment (the client sees EOF when the FIN goes
    // out, before the service drops the socket), which would count as a leaked fd.
    let usage = targets.iter().map(|(_, t)| t.usage()).collect();
    let tasks = alive_tasks_of(services).await;
    Snapshot {
        usage,
        streams: gauge(gateway_admin, "gateway_active_streams").await,
        media_calls: gauge(media_admin, "media_calls_active").await,
        tasks,
    }
}

/// The tokio tasks alive in a service (its `/metrics` sets the gauge when scraped).
async fn alive_tasks(admin: SocketAddr) -> Option<f64> {
    gauge(admin, "process_tokio_alive_tasks").await
}

/// [`alive_tasks`] of each service, in order.
async fn alive_tasks_of(services: &[SocketAddr]) -> Vec<Option<f64>> {
    let mut tasks = Vec::with_capacity(services.len());
    for admin in services {
        tasks.push(alive_tasks(*admin).await);
    }
    tasks
}

fn fmt_gauge(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.0}"))
}

/// The release service binaries next to this example (`target/release`), or why not.
fn service_binaries() -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().expect("current exe");
    let bin_dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    for bin in ["tenant-svc", "memory-svc", "media-svc", "gateway"] {
        if !bin_dir.join(bin).is_file() {
            return Err(format!(
                "{} missing; build the services first: cargo build --release -p tenant-svc -p \
                 memory-svc -p media-svc -p gateway --bins",
                bin_dir.join(bin).display()
            ));
        }
    }
    Ok(bin_dir)
}

/// PostgreSQL and the four services, each a separate process, with the tenants seeded.
struct Bench {
    _db: mesh::testkit::TestDb,
    _dir: tempfile::TempDir,
    admin: tokio_postgres::Client,
    postmaster: u32,
    gateway: Service,
    media: Service,
    tenant: Service,
    memory: Service,
    auth_token: String,
    numbers: Vec<String>,
}

/// media-svc's settings: the echoing fake backend, the peers, no per-tenant call limit.
fn media_settings(
    db: &mesh::testkit::TestDb,
    realtime: String,
    tenant: &Service,
    memory: &Service,
    auth_token: &str,
) -> [(&'static str, String); 10] {
    [
        ("DATABASE_URL", db.url_for_role("media_svc")),
        ("AI_BACKEND", "openai-realtime".into()),
        ("OPENAI_API_KEY", "sk-bench".into()),
        ("OPENAI_REALTIME_URL", realtime),
        ("TENANT_SVC_URL", format!("http://{}", tenant.process.main)),
        ("MEMORY_SVC_URL", format!("http://{}", memory.process.main)),
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.into()),
        ("TWILIO_AUTH_TOKEN", auth_token.to_owned()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
        // Every call here belongs to a handful of tenants: lift the per-tenant call limit.
        (
            "MEDIA_CONCURRENT_CALLS_BY_TIER",
            "starter=100000,pro=100000,enterprise=100000".into(),
        ),
    ]
}

/// The gateway's settings: the peers, no per-address or per-account limit, and no cap on one
/// address's unfinished connections.
fn gateway_settings(
    tenant: &Service,
    memory: &Service,
    media: &Service,
    auth_token: &str,
) -> [(&'static str, String); 9] {
    [
        ("PUBLIC_BASE_URL", PUBLIC_BASE_URL.to_owned()),
        // An https base URL needs an SMTP server for the portal's mail; none is sent here.
        ("PORTAL_SMTP_URL", "smtp://127.0.0.1:2525".to_owned()),
        ("TWILIO_AUTH_TOKEN", auth_token.to_owned()),
        ("TENANT_SVC_URL", format!("http://{}", tenant.process.main)),
        ("MEMORY_SVC_URL", format!("http://{}", memory.process.main)),
        ("MEDIA_SVC_URL", format!("http://{}", media.process.main)),
        // One source address and one account generate all the load: lift those limits.
        ("GATEWAY_RATE_PER_IP", "1000000".into()),
        ("GATEWAY_RATE_PER_ACCOUNT", "1000000".into()),
        // The calls and `--idle-sockets` (upgrades 200 at a time) all come from one address,
        // which the per-address cap on unfinished connections would otherwise throttle.
        ("GATEWAY_MAX_PENDING_CONNECTIONS_PER_IP", "100000".into()),
    ]
}

impl Bench {
    async fn start(
        bin_dir: &std::path::Path,
        tenants: usize,
        recording: bool,
        origin: Instant,
    ) -> Bench {
        let db = mesh::testkit::TestDb::new().await;
        let admin = db.admin_client().await;
        let backend_pid: i32 = admin
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("backend pid")
            .get(0);
        let postmaster = parent_of(backend_pid as u32).expect("postmaster pid");
        let keys = DevKeys::generate();
        let dir = tempfile::tempdir().expect("temp dir");
        let realtime = echo_server().await;
        let auth_token = uuid::Uuid::new_v4().simple().to_string();
        let env = |service: &str, pairs: &[(&'static str, String)]| {
            let mut env = service_env(&keys, service, dir.path());
            for (k, v) in pairs {
                env.insert((*k).into(), v.clone());
            }
            env
        };
        let tenant_env = env(
            names::TENANT_SVC,
            &[("DATABASE_URL", db.url_for_role("tenant_svc"))],
        );
        let tenant = start_service(bin_dir, "tenant-svc", &tenant_env).await;
        let memory_env = env(
            names::MEMORY_SVC,
            &[("DATABASE_URL", db.url_for_role("memory_svc"))],
        );
        let memory = start_service(bin_dir, "memory-svc", &memory_env).await;
        let mut media_env = env(
            names::MEDIA_SVC,
            &media_settings(&db, realtime, &tenant, &memory, &auth_token),
        );
        if recording {
            let keys = media_svc::recording::PlatformKeys::generate().to_setting();
            let folder = |name: &str| dir.path().join(name).display().to_string();
            media_env.insert("MEDIA_RECORDING_KEYS".into(), keys);
            media_env.insert("MEDIA_RECORDING_STORE".into(), folder("recordings"));
            media_env.insert(
                "MEDIA_RECORDING_SPOOL_DIR".into(),
                folder("recording-spool"),
            );
        }
        let media = start_service(bin_dir, "media-svc", &media_env).await;
        let gateway_env = env(
            names::GATEWAY,
            &gateway_settings(&tenant, &memory, &media, &auth_token),
        );
        let gateway = start_service(bin_dir, "gateway", &gateway_env).await;
        let seeded = seed_tenants(&keys, tenant.process.main, tenants).await;
        let (customers, numbers): (Vec<i64>, Vec<String>) = seeded.into_iter().unzip();
        if recording {
            record_every_call(&keys, tenant.process.main, &customers).await;
        }
        println!(
            "mesh up in {:.1} s: tenant-svc pid {}, memory-svc pid {}, media-svc pid {}, gateway \
             pid {}, PostgreSQL postmaster pid {postmaster}; {} tenants seeded; recording {}",
            origin.elapsed().as_secs_f64(),
            tenant.pid,
            memory.pid,
            media.pid,
            gateway.pid,
            numbers.len(),
            if recording { "on" } else { "off" }
        );
        Bench {
            _db: db,
            _dir: dir,
            admin,
            postmaster,
            gateway,
            media,
            tenant,
            memory,
            auth_token,
            numbers,
        }
    }

    fn gateway_admin(&self) -> SocketAddr {
        self.gateway.process.admin.expect("gateway admin address")
    }

    fn media_admin(&self) -> SocketAddr {
        self.media.process.admin.expect("media-svc admin address")
    }

    /// The admin addresses of gateway, media-svc, tenant-svc and memory-svc, in that order.
    fn service_admins(&self) -> Vec<SocketAddr> {
        [&self.gateway, &self.media, &self.tenant, &self.memory]
            .iter()
            .map(|s| s.process.admin.expect("admin address"))
            .collect()
    }

    /// Every process measured: the four services, PostgreSQL, and this one.
    fn targets(&self) -> Vec<(String, Target)> {
        let mut targets: Vec<(String, Target)> =
            [&self.gateway, &self.media, &self.tenant, &self.memory]
                .iter()
                .map(|s| (s.name.to_owned(), Target::Single(s.pid)))
                .collect();
        targets.push(("PostgreSQL".into(), Target::Postgres(self.postmaster)));
        targets.push((
            "load gen + fake backend".into(),
            Target::Single(std::process::id()),
        ));
        targets
    }

    /// Stops every service with SIGTERM, in the order a deployment would drain; returns each
    /// one's exit code and the errors and warnings it logged.
    async fn stop(self) -> (Vec<(&'static str, Option<i32>)>, Vec<Warnings>) {
        let mut exits = Vec::new();
        let mut warnings = Vec::new();
        for s in [self.gateway, self.media, self.memory, self.tenant] {
            warnings.push((s.name, s.warnings.lock().expect("lock").clone()));
            exits.push((s.name, s.process.terminate().await));
        }
        (exits, warnings)
    }
}

/// A service's name, and the errors, warnings and first lines of them it logged.
type Warnings = (&'static str, (u64, u64, Vec<String>));

impl Load {
    fn new(origin: Instant, bench: &Bench) -> Load {
        Load {
            origin,
            gateway: bench.gateway.process.main,
            auth_token: bench.auth_token.clone(),
            numbers: bench.numbers.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .build()
                .expect("http client"),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent_total: AtomicU64::new(0),
            received_total: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            latency: Histogram::new(),
            streaming: AtomicU64::new(0),
            started: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            failures: Default::default(),
        }
    }
}

/// Opens the idle sockets first (200 at a time), so that the calls run with them held open;
/// waits until nine tenths are open (at most a minute).
async fn open_idle_sockets(
    load: &Arc<Load>,
    count: usize,
    stop_rx: &watch::Receiver<bool>,
) -> (Arc<Idle>, Vec<tokio::task::JoinHandle<()>>) {
    let sockets = Arc::new(Idle::default());
    let mut idle_handles = Vec::with_capacity(count);
    for n in 0..count {
        let (load, sockets, stop) = (load.clone(), sockets.clone(), stop_rx.clone());
        idle_handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50 * (n / 200) as u64)).await;
            idle_socket(load, sockets, stop).await;
        }));
    }
    if count > 0 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while (sockets.open.load(Ordering::Relaxed) as usize) < count * 9 / 10
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "idle sockets: {} of {count} open before the first call ({} refused)",
            sockets.open.load(Ordering::Relaxed),
            sockets.refused.load(Ordering::Relaxed)
        );
    }
    (sockets, idle_handles)
}

/// Starts one call every `--stagger-ms`, waits until all are streaming (or failed), then the
/// warm-up; returns the calls' tasks.
async fn ramp_up(
    load: &Arc<Load>,
    a: &Args,
    stop_rx: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ramp_began = Instant::now();
    let mut tasks = Vec::with_capacity(a.calls);
    for n in 0..a.calls {
        let load = load.clone();
        let stop = stop_rx.clone();
        let delay = Duration::from_millis(a.stagger_ms * n as u64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            call(load, n, stop).await;
        }));
    }
    let ramp_deadline = Instant::now()
        + Duration::from_millis(a.stagger_ms * a.calls as u64)
        + Duration::from_secs(60);
    while load.started.load(Ordering::Relaxed) + load.failed() < a.calls as u64
        && Instant::now() < ramp_deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ramp: {} calls streaming after {:.1} s ({} failed); warm-up {} s",
        load.streaming.load(Ordering::Relaxed),
        ramp_began.elapsed().as_secs_f64(),
        load.failed(),
        a.warmup
    );
    tokio::time::sleep(Duration::from_secs(a.warmup)).await;
    tasks
}

/// What the steady-state window measured.
struct Window {
    duration: Duration,
    cpu_start: Vec<u64>,
    cpu_end: Vec<u64>,
    idle_start: (u64, u64),
    idle_end: (u64, u64),
    streaming_start: u64,
    streaming_end: u64,
    start: Snapshot,
    middle: Snapshot,
    end: Snapshot,
    sockets: [u64; 3],
}

/// The steady-state window: CPU, machine idle time and snapshots at its start, middle and end.
async fn measure(
    load: &Load,
    seconds: u64,
    bench: &Bench,
    targets: &[(String, Target)],
    sockets: &Idle,
) -> Window {
    let (gateway_admin, media_admin) = (bench.gateway_admin(), bench.media_admin());
    let service_admins = bench.service_admins();
    let open = || sockets.open.load(Ordering::Relaxed);
    let cpu_start: Vec<u64> = targets.iter().map(|(_, t)| t.cpu_ticks()).collect();
    let idle_start = machine_ticks();
    let streaming_start = load.streaming.load(Ordering::Relaxed);
    let start = snapshot(targets, gateway_admin, media_admin, &service_admins).await;
    let sockets_start = open();
    let window_began = Instant::now();
    load.window_start.store(load.now_ns(), Ordering::Relaxed);
    sleep_with_progress(load, window_began, Duration::from_secs(seconds) / 2).await;
    let middle = snapshot(targets, gateway_admin, media_admin, &service_admins).await;
    let sockets_middle = open();
    sleep_with_progress(
        load,
        window_began,
        Duration::from_secs(seconds) - Duration::from_secs(seconds) / 2,
    )
    .await;
    load.window_end.store(load.now_ns(), Ordering::Relaxed);
    let duration = window_began.elapsed();
    let cpu_end: Vec<u64> = targets.iter().map(|(_, t)| t.cpu_ticks()).collect();
    let idle_end = machine_ticks();
    let streaming_end = load.streaming.load(Ordering::Relaxed);
    let end = snapshot(targets, gateway_admin, media_admin, &service_admins).await;
    Window {
        duration,
        cpu_start,
        cpu_end,
        idle_start,
        idle_end,
        streaming_start,
        streaming_end,
        start,
        middle,
        end,
        sockets: [sockets_start, sockets_middle, open()],
    }
}

/// What is left once every call hung up.
struct Aftermath {
    open_streams: Option<f64>,
    open_calls: Option<f64>,
    completed: u64,
    summaries: Option<i64>,
    call_rows: Option<i64>,
    tasks: Vec<Option<f64>>,
}

/// Waits for the calls' tasks, then for the open-stream gauges to reach 0 (10 s), the post-call
/// records to reach memory-svc (15 s) and each service's tasks to settle (5 s).
async fn after_hang_up(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    load: &Load,
    bench: &Bench,
    idle_tasks: &[Option<f64>],
) -> Aftermath {
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let settle = Instant::now() + Duration::from_secs(10);
    let (mut open_streams, mut open_calls) = (None, None);
    while Instant::now() < settle {
        open_streams = gauge(bench.gateway_admin(), "gateway_active_streams").await;
        open_calls = gauge(bench.media_admin(), "media_calls_active").await;
        if open_streams.unwrap_or(0.0) == 0.0 && open_calls.unwrap_or(0.0) == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let completed = load.completed.load(Ordering::Relaxed);
    // Post-call records travel media-svc's outbox to memory-svc: give them a moment.
    let count = async |sql: &str| -> Option<i64> {
        bench.admin.query_one(sql, &[]).await.ok().map(|r| r.get(0))
    };
    let records_deadline = Instant::now() + Duration::from_secs(15);
    let mut summaries = count("SELECT count(*) FROM memory.call_summaries").await;
    while summaries.is_some_and(|s| s < completed as i64) && Instant::now() < records_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        summaries = count("SELECT count(*) FROM memory.call_summaries").await;
    }
    let call_rows = count("SELECT count(*) FROM media.calls").await;
    Aftermath {
        open_streams,
        open_calls,
        completed,
        summaries,
        call_rows,
        tasks: settled_tasks(&bench.service_admins(), idle_tasks).await,
    }
}

/// Once the records are delivered, the tasks of the calls should be gone too; finishing ones
/// (a stream's last frames, a delivery's reply) get a few seconds.
async fn settled_tasks(admins: &[SocketAddr], idle_tasks: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut after_tasks = Vec::new();
    for (i, admin) in admins.iter().enumerate() {
        let settle = Instant::now() + Duration::from_secs(5);
        let mut tasks = alive_tasks(*admin).await;
        while let (Some(now), Some(before)) = (tasks, idle_tasks[i]) {
            if now <= before + 32.0 || Instant::now() >= settle {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            tasks = alive_tasks(*admin).await;
        }
        after_tasks.push(tasks);
    }
    after_tasks
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("calls_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let bin_dir = match service_binaries() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("calls_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let ticks = clock_ticks();
    let origin = Instant::now();
    let bench = Bench::start(&bin_dir, a.tenants, a.recording, origin).await;
    let load = Arc::new(Load::new(origin, &bench));
    // Tasks alive before any call, to compare with after every call hung up.
    let idle_tasks = alive_tasks_of(&bench.service_admins()).await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (sockets, idle_handles) = open_idle_sockets(&load, a.idle_sockets, &stop_rx).await;
    let tasks = ramp_up(&load, &a, &stop_rx).await;
    let targets = bench.targets();
    let window = measure(&load, a.seconds, &bench, &targets, &sockets).await;

    // Hang up every call, then check nothing is left open.
    let _ = stop_tx.send(true);
    let tasks = tasks.into_iter().chain(idle_handles).collect();
    let after = after_hang_up(tasks, &load, &bench, &idle_tasks).await;
    if a.recording {
        println!("recording: {}", recorded(&bench.admin).await);
    }
    let (exits, warnings) = bench.stop().await;

    let report = Report {
        a: &a,
        load: &load,
        w: &window,
        after: &after,
        targets: &targets,
        ticks,
        idle_tasks: &idle_tasks,
    };
    report.print(&sockets, &warnings, &exits)
}

// ------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------

/// Everything measured, read out.
struct Report<'a> {
    a: &'a Args,
    load: &'a Load,
    w: &'a Window,
    after: &'a Aftermath,
    targets: &'a [(String, Target)],
    ticks: u64,
    idle_tasks: &'a [Option<f64>],
}

/// Processes whose figures grew where they should not have.
#[derive(Default)]
struct Growth {
    mem: Vec<String>,
    fds: Vec<String>,
    threads: Vec<String>,
    tasks: Vec<String>,
}

impl Report<'_> {
    fn secs(&self) -> f64 {
        self.w.duration.as_secs_f64()
    }

    fn call_seconds(&self) -> f64 {
        (self.w.streaming_start + self.w.streaming_end) as f64 / 2.0 * self.secs()
    }

    /// CPU of each target over the window, in core-milliseconds.
    fn cpu_ms(&self) -> Vec<f64> {
        self.w
            .cpu_start
            .iter()
            .zip(&self.w.cpu_end)
            .map(|(s, e)| (e.saturating_sub(*s)) as f64 * 1000.0 / self.ticks as f64)
            .collect()
    }

    fn per_call_second(&self, i: usize) -> f64 {
        let call_seconds = self.call_seconds();
        if call_seconds > 0.0 {
            self.cpu_ms()[i] / call_seconds
        } else {
            0.0
        }
    }

    /// Frames echoed back in the window, in percent of those sent.
    fn delivered(&self) -> f64 {
        let sent = self.load.sent.load(Ordering::Relaxed);
        let received = self.load.received.load(Ordering::Relaxed);
        if sent == 0 {
            0.0
        } else {
            received as f64 * 100.0 / sent as f64
        }
    }

    fn print(
        &self,
        sockets: &Idle,
        warnings: &[Warnings],
        exits: &[(&'static str, Option<i32>)],
    ) -> ExitCode {
        let failed = self.print_calls();
        self.print_cpu();
        let mut growth = self.print_processes();
        growth.tasks = self.print_streams_and_tasks();
        self.print_rest(sockets, warnings, exits);
        self.verdict(failed, &growth, exits)
    }

    /// Calls, frames and latency; returns the failed calls.
    fn print_calls(&self) -> u64 {
        let (a, load) = (self.a, self.load);
        let failures = load.failures.lock().expect("lock").clone();
        let failed: u64 = failures.values().sum();
        let started = load.started.load(Ordering::Relaxed);
        let (sent, received) = (
            load.sent.load(Ordering::Relaxed),
            load.received.load(Ordering::Relaxed),
        );
        let (p50, p99, max) = (
            load.latency.quantile_ms(0.5),
            load.latency.quantile_ms(0.99),
            load.latency.max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        println!();
        println!(
            "Whole-mesh calls: {} calls over {} tenants, staggered {} ms, {:.1} s steady-state \
             window after a {} s warm-up; {}",
            a.calls,
            a.tenants,
            a.stagger_ms,
            self.secs(),
            a.warmup,
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        println!(
            "calls: {started} started, {} completed, {failed} failed{}",
            self.after.completed,
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({failures:?})")
            }
        );
        println!(
            "frames in the window: {sent} sent, {received} echoed back ({:.3} %), {} \
             delivered to the wrong call; whole run: {} sent, {} back, {} frames of media-svc's \
             own audio (announcements, tones)",
            self.delivered(),
            load.misrouted.load(Ordering::Relaxed),
            load.sent_total.load(Ordering::Relaxed),
            load.received_total.load(Ordering::Relaxed),
            load.unstamped.load(Ordering::Relaxed)
        );
        println!(
            "added latency (simulated Twilio -> gateway -> media-svc -> backend -> media-svc -> \
             gateway -> back): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
        failed
    }

    /// CPU per call-second of gateway and media-svc, and the cores every process used.
    fn print_cpu(&self) {
        let wall_ms = self.secs() * 1000.0;
        let cpu_ms = self.cpu_ms();
        let (idle_start, idle_end) = (self.w.idle_start, self.w.idle_end);
        let (idle, total) = (
            idle_end.0.saturating_sub(idle_start.0),
            idle_end.1.saturating_sub(idle_start.1),
        );
        let idle_pct = if total == 0 {
            0.0
        } else {
            idle as f64 * 100.0 / total as f64
        };
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "CPU per call-second ({:.0} call-seconds): gateway {:.3} + media-svc {:.3} = {:.3} \
             core-ms",
            self.call_seconds(),
            self.per_call_second(0),
            self.per_call_second(1),
            self.per_call_second(0) + self.per_call_second(1)
        );
        println!(
            "machine: {cores} cores, idle {idle_pct:.1} % during the window; cores used by each \
             process:"
        );
        for (i, (name, _)) in self.targets.iter().enumerate() {
            println!(
                "  {name:<30} {:.3} cores ({:.3} core-ms per call-second)",
                cpu_ms[i] / wall_ms,
                self.per_call_second(i)
            );
        }
        // Whatever else ran on the machine (other builds, other benchmarks) competed for the
        // cores.
        let busy_cores = (total - idle) as f64 * 1000.0 / self.ticks as f64 / wall_ms;
        let others = (busy_cores - cpu_ms.iter().sum::<f64>() / wall_ms).max(0.0);
        println!(
            "  {:<30} {others:.3} cores{}",
            "everything else on the machine",
            if others > 0.2 {
                "  <- the machine was busy: latency and CPU figures include that contention"
            } else {
                ""
            }
        );
    }

    /// Memory, fds and threads of every process at the start, middle and end of the window;
    /// returns which grew.
    fn print_processes(&self) -> Growth {
        let w = self.w;
        println!(
            "{:<30} {:>26} {:>20} {:>20}",
            "memory (MiB) / fds / threads", "start / middle / end MiB", "fds", "threads"
        );
        let mut growth = Growth::default();
        for (i, (name, target)) in self.targets.iter().enumerate() {
            let (s, m, e) = (w.start.usage[i], w.middle.usage[i], w.end.usage[i]);
            let label = match target {
                Target::Postgres(_) => format!("{name} ({} procs, PSS)", e.procs),
                Target::Single(_) => format!("{name} (RSS)"),
            };
            println!(
                "{label:<30} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
                s.mem_kb as f64 / 1024.0,
                m.mem_kb as f64 / 1024.0,
                e.mem_kb as f64 / 1024.0,
                s.fds,
                m.fds,
                e.fds,
                s.threads,
                m.threads,
                e.threads
            );
            if i == self.targets.len() - 1 {
                continue; // the load generator is not under test
            }
            if m.mem_kb > 0 && e.mem_kb as f64 > m.mem_kb as f64 * 1.10 {
                growth.mem.push(name.clone());
            }
            // PostgreSQL backends open relation files lazily and keep them (up to
            // max_files_per_process), so its fd count is reported, not judged.
            if e.fds > m.fds && matches!(target, Target::Single(_)) {
                growth.fds.push(name.clone());
            }
            if e.threads > m.threads {
                growth.threads.push(name.clone());
            }
        }
        growth
    }

    /// Open streams and tokio tasks over the run; returns the services whose tasks grew.
    fn print_streams_and_tasks(&self) -> Vec<String> {
        let (w, after) = (self.w, self.after);
        println!(
            "open streams (gateway_active_streams / media_calls_active): start {} / {}, middle {} \
             / {}, end {} / {}, after every call hung up {} / {}",
            fmt_gauge(w.start.streams),
            fmt_gauge(w.start.media_calls),
            fmt_gauge(w.middle.streams),
            fmt_gauge(w.middle.media_calls),
            fmt_gauge(w.end.streams),
            fmt_gauge(w.end.media_calls),
            fmt_gauge(after.open_streams),
            fmt_gauge(after.open_calls)
        );
        // Tasks: a leak shows as growth under the same load (middle -> end) or as tasks left
        // behind once every call hung up (connection tasks of the gRPC channels opened during
        // the ramp stay: an allowance of 32 or a tenth of the calls).
        let mut grew_tasks = Vec::new();
        let mut tasks_line = Vec::new();
        for (i, name) in ["gateway", "media-svc", "tenant-svc", "memory-svc"]
            .iter()
            .enumerate()
        {
            let (idle, s, m, e, after) = (
                self.idle_tasks[i],
                w.start.tasks[i],
                w.middle.tasks[i],
                w.end.tasks[i],
                after.tasks[i],
            );
            tasks_line.push(format!(
                "{name} {} / {} / {} / {} / {}",
                fmt_gauge(idle),
                fmt_gauge(s),
                fmt_gauge(m),
                fmt_gauge(e),
                fmt_gauge(after)
            ));
            let grew = |from: Option<f64>, to: Option<f64>| match (from, to) {
                (Some(from), Some(to)) => to > from + (from * 0.05).max(16.0),
                _ => false,
            };
            // A task left behind per call would leave hundreds; connections opened during the
            // ramp (gRPC channels, their h2 tasks) leave a few dozen.
            let left = match (idle, after) {
                (Some(idle), Some(after)) => after > idle + (self.a.calls as f64 / 10.0).max(32.0),
                _ => false,
            };
            if grew(m, e) || left {
                grew_tasks.push((*name).to_owned());
            }
        }
        println!(
            "tokio tasks alive (before the first call / start / middle / end / after every call \
             hung up): {}",
            tasks_line.join("; ")
        );
        grew_tasks
    }

    /// Idle sockets, records, logged warnings and exit codes.
    fn print_rest(
        &self,
        sockets: &Idle,
        warnings: &[Warnings],
        exits: &[(&'static str, Option<i32>)],
    ) {
        if self.a.idle_sockets > 0 {
            let [start, middle, end] = self.w.sockets;
            println!(
                "idle Media Streams sockets (never send `start`): open at start / middle / end {} \
                 / {} / {} of {}; {} opened in all, {} closed by the gateway, {} upgrades refused",
                start,
                middle,
                end,
                self.a.idle_sockets,
                sockets.opened.load(Ordering::Relaxed),
                sockets.closed_by_gateway.load(Ordering::Relaxed),
                sockets.refused.load(Ordering::Relaxed)
            );
        }
        println!(
            "records: {} call rows in media-svc, {} call summaries delivered to memory-svc",
            self.after.call_rows.map_or("n/a".into(), |v| v.to_string()),
            self.after.summaries.map_or("n/a".into(), |v| v.to_string())
        );
        for (name, (errors, warns, first)) in warnings {
            if errors + warns > 0 {
                println!("{name} logged {errors} errors and {warns} warnings, first: {first:?}");
            }
        }
        println!(
            "SIGTERM exit codes: {}",
            exits
                .iter()
                .map(|(n, c)| format!("{n} {}", c.map_or("none".into(), |c| c.to_string())))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    /// The targets and the soak checks; PASS only when every check holds.
    fn verdict(
        &self,
        failed: u64,
        growth: &Growth,
        exits: &[(&'static str, Option<i32>)],
    ) -> ExitCode {
        let p99 = self.load.latency.quantile_ms(0.99);
        let started = self.load.started.load(Ordering::Relaxed);
        let yes = |b: bool| if b { "met" } else { "NOT met" };
        println!(
            "issue 6 targets: >= 300 concurrent calls: {}; >= 99.9 % frames: {}; p99 <= 20 ms: \
             {}; gateway + media-svc <= 1.5 core-ms per call-second: {}",
            yes(self.w.streaming_start >= 300),
            yes(self.delivered() >= 99.9),
            yes(p99 <= 20.0),
            yes(self.per_call_second(0) + self.per_call_second(1) <= 1.5)
        );
        let leaked = self.after.open_streams.unwrap_or(0.0) > 0.0
            || self.after.open_calls.unwrap_or(0.0) > 0.0;
        let bad_exit = exits.iter().any(|(_, c)| *c != Some(0));
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        println!(
            "soak checks (issue 9): failed calls {failed}; RSS grew > 10 % middle -> end: {}; \
             service fds grew middle -> end: {}; tasks grew (middle -> end, or left after \
             hang-up): {}; threads grew middle -> end: {} (reported only); streams left open \
             after hang-up: {}; clean SIGTERM exits: {}",
            list(&growth.mem),
            list(&growth.fds),
            list(&growth.tasks),
            list(&growth.threads),
            if leaked { "YES" } else { "none" },
            if bad_exit { "NO" } else { "all" }
        );
        let pass = failed == 0
            && started == self.a.calls as u64
            && growth.mem.is_empty()
            && growth.fds.is_empty()
            && growth.tasks.is_empty()
            && !leaked
            && !bad_exit;
        println!("verdict: {}", if pass { "PASS" } else { "FAIL" });
        if pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
