//! The floor under media-svc's CPU target, measured on this machine with the crates media-svc
//! uses (tokio, tokio-tungstenite, serde_json, base64), against the same echoing fake Realtime
//! server as `media_bench`. The measured workload runs in a child process so that its CPU can be
//! read alone from /proc; the fake server and the load generator run in the parent.
//!
//! Two workloads, each with N calls sending one 160-byte mu-law frame every 20 ms:
//! - `--mode relay`: the reference the issue quotes, a minimal one-hop relay. Twilio Media
//!   Streams JSON WebSocket in, one Realtime JSON WebSocket out per call, `media` forwarded both
//!   ways with the base64 passed through untouched, nothing else (no marks, no database, no
//!   transcripts, no auth).
//! - `--mode backend`: only the Realtime half of that relay. One WebSocket session per call
//!   that base64-encodes each frame into `input_audio_buffer.append` and decodes the echoed
//!   `response.output_audio.delta`. Every media-svc does at least this per call, whatever its
//!   link to the gateway looks like.
//!
//! ```text
//! cargo build --release -p media-svc --example relay_floor
//! target/release/examples/relay_floor --mode relay --calls 300 --seconds 20
//! target/release/examples/relay_floor --mode backend --calls 300 --seconds 20
//! ```

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

mod support;

const FRAME: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Relay,
    Backend,
}

struct Args {
    mode: Mode,
    calls: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        mode: Mode::Relay,
        calls: 100,
        seconds: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--mode" => {
                a.mode = match value.as_str() {
                    "relay" => Mode::Relay,
                    "backend" => Mode::Backend,
                    other => panic!("--mode relay|backend, not {other:?}"),
                }
            }
            "--calls" => a.calls = value.parse().expect("--calls N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds S"),
            other => panic!("unknown flag {other}; use --mode relay|backend --calls N --seconds S"),
        }
    }
    a
}

/// Frames counted inside the measurement window, and their round trips.
struct Stats {
    origin: Instant,
    /// Window in nanoseconds since `origin`; frames sent outside it are not counted.
    window: Mutex<(u64, u64)>,
    sent: AtomicU64,
    received: AtomicU64,
    rtts_us: Mutex<Vec<u32>>,
}

impl Stats {
    fn new() -> Arc<Self> {
        Arc::new(Stats {
            origin: Instant::now(),
            window: Mutex::new((u64::MAX, u64::MAX)),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            rtts_us: Mutex::new(Vec::new()),
        })
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        let (from, to) = *self.window.lock().unwrap();
        t >= from && t < to
    }

    /// A new frame stamped with its send time; counted when inside the window.
    fn frame(&self) -> [u8; 160] {
        let sent = self.now_ns();
        if self.in_window(sent) {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
        let mut payload = [0x7Fu8; 160];
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        payload
    }

    /// An echoed frame came back.
    fn echoed(&self, payload: &[u8], local: &mut Vec<u32>) {
        let Some(stamp) = payload.get(..8) else {
            return;
        };
        let sent = u64::from_le_bytes(stamp.try_into().unwrap());
        if self.in_window(sent) {
            self.received.fetch_add(1, Ordering::Relaxed);
            local.push((self.now_ns().saturating_sub(sent) / 1000) as u32);
        }
    }

    fn report(&self, label: &str) {
        let rtts = std::mem::take(&mut *self.rtts_us.lock().unwrap());
        support::print_round_trips(
            label,
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            rtts,
        );
    }
}

#[derive(Deserialize)]
struct TwilioEvent<'a> {
    event: &'a str,
    #[serde(borrow)]
    media: Option<TwilioMedia<'a>>,
}

#[derive(Deserialize)]
struct TwilioMedia<'a> {
    payload: &'a str,
}

#[derive(Deserialize)]
struct RealtimeEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    delta: Option<&'a str>,
}

/// The minimal relay, in the child: one task per call bridging its Twilio socket and its
/// Realtime socket.
async fn relay(backend_url: String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    while let Ok((tcp, _)) = listener.accept().await {
        let backend_url = backend_url.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let config = Some(support::ws_config());
            let Ok(twilio) = tokio_tungstenite::accept_async_with_config(tcp, config).await else {
                return;
            };
            let connect =
                tokio_tungstenite::connect_async_with_config(backend_url.as_str(), config, true);
            let Ok((backend, _)) = connect.await else {
                return;
            };
            let (mut to_twilio, mut from_twilio) = twilio.split();
            let (mut to_backend, mut from_backend) = backend.split();
            let mut stream_sid = String::from("MZ");
            loop {
                tokio::select! {
                    m = from_twilio.next() => {
                        let Some(Ok(Message::Text(text))) = m else { return };
                        let Ok(ev) = serde_json::from_str::<TwilioEvent>(text.as_str()) else {
                            continue;
                        };
                        match (ev.event, ev.media) {
                            ("media", Some(media)) => {
                                let out = format!(
                                    "{{\"type\":\"input_audio_buffer.append\",\"audio\":\"{}\"}}",
                                    media.payload
                                );
                                if to_backend.send(Message::text(out)).await.is_err() {
                                    return;
                                }
                            }
                            ("start", _) => stream_sid = format!("MZ{:032x}", text.len()),
                            ("stop", _) => return,
                            _ => {}
                        }
                    }
                    m = from_backend.next() => {
                        let Some(Ok(Message::Text(text))) = m else { return };
                        let Ok(ev) = serde_json::from_str::<RealtimeEvent>(text.as_str()) else {
                            continue;
                        };
                        if let ("response.output_audio.delta", Some(delta)) = (ev.kind, ev.delta) {
                            let out = format!(
                                "{{\"event\":\"media\",\"streamSid\":\"{stream_sid}\",\"media\":{{\"payload\":\"{delta}\"}}}}"
                            );
                            if to_twilio.send(Message::text(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// The Twilio side of one relayed call, in the parent.
async fn twilio_call(relay: String, n: usize, stats: Arc<Stats>, stop: Arc<AtomicU64>) {
    let tcp = TcpStream::connect(&relay).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let url = format!("ws://{relay}/twilio/media");
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(support::ws_config()))
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();
    let start = format!(
        "{{\"event\":\"start\",\"start\":{{\"streamSid\":\"MZ{n:032x}\",\"callSid\":\"CA{n:032x}\"}}}}"
    );
    sink.send(Message::text(start)).await.unwrap();
    let rstats = stats.clone();
    let reader = tokio::spawn(async move {
        let mut local = Vec::new();
        while let Some(Ok(Message::Text(text))) = stream.next().await {
            if let Ok(TwilioEvent {
                media: Some(media), ..
            }) = serde_json::from_str::<TwilioEvent>(text.as_str())
                && let Ok(payload) = B64.decode(media.payload)
            {
                rstats.echoed(&payload, &mut local);
            }
        }
        rstats.rtts_us.lock().unwrap().extend(local);
    });
    let mut tick = tokio::time::interval(FRAME);
    let mut seq = 0u64;
    while stop.load(Ordering::Relaxed) == 0 {
        tick.tick().await;
        seq += 1;
        let frame = stats.frame();
        let media = format!(
            "{{\"event\":\"media\",\"streamSid\":\"MZ{n:032x}\",\"media\":{{\"track\":\"inbound\",\"chunk\":\"{seq}\",\"timestamp\":\"{}\",\"payload\":\"{}\"}}}}",
            seq * 20,
            B64.encode(frame)
        );
        if sink.send(Message::text(media)).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = sink
        .send(Message::text("{\"event\":\"stop\"}".to_owned()))
        .await;
    let _ = sink.close().await;
    let _ = reader.await;
}

/// One Realtime session, in the child: what media-svc does per call towards the backend, in
/// one task per call as media-svc does (frames out on a 20 ms tick stand in for the frames
/// media-svc receives from the gateway).
async fn backend_call(url: String, stats: Arc<Stats>, stop: Arc<AtomicU64>) {
    let connect = tokio_tungstenite::connect_async_with_config(
        url.as_str(),
        Some(support::ws_config()),
        true,
    );
    let (ws, _) = connect.await.unwrap();
    let (mut sink, mut stream) = ws.split();
    let mut local = Vec::new();
    let mut tick = tokio::time::interval(FRAME);
    let mut closing: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            _ = tick.tick(), if closing.is_none() => {
                if stop.load(Ordering::Relaxed) != 0 {
                    // Let echoes in flight arrive, then hang up.
                    closing = Some(Box::pin(tokio::time::sleep(Duration::from_millis(500))));
                    continue;
                }
                let append = format!(
                    "{{\"type\":\"input_audio_buffer.append\",\"audio\":\"{}\"}}",
                    B64.encode(stats.frame())
                );
                if sink.send(Message::text(append)).await.is_err() {
                    break;
                }
            }
            () = async { closing.as_mut().unwrap().await }, if closing.is_some() => break,
            m = stream.next() => {
                let Some(Ok(Message::Text(text))) = m else { break };
                if let Ok(RealtimeEvent {
                    delta: Some(delta), ..
                }) = serde_json::from_str::<RealtimeEvent>(text.as_str())
                    && let Ok(payload) = B64.decode(delta)
                {
                    stats.echoed(&payload, &mut local);
                }
            }
        }
    }
    let _ = sink.close().await;
    stats.rtts_us.lock().unwrap().extend(local);
}

/// Child, `--mode backend`: runs the sessions; the parent tells it the window on stdin
/// (`start`, then `end`) and it prints frames and round trips when stdin closes.
async fn backend_child(url: String, calls: usize) {
    let stats = Stats::new();
    let stop = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..calls {
        let (url, stats, stop) = (url.clone(), stats.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
            backend_call(url, stats, stop).await;
        }));
    }
    println!("started");
    // tokio's stdin needs a feature the workspace does not enable; a thread reads it instead.
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let now = stats.now_ns();
        match line.as_str() {
            "start" => stats.window.lock().unwrap().0 = now,
            "end" => stats.window.lock().unwrap().1 = now,
            _ => {}
        }
    }
    stop.store(1, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    stats.report("child -> backend -> child");
}

/// Starts the measured child for `mode` against the fake backend; returns it, its stdin, its
/// stdout lines and its first line (`listening <addr>` or `started`).
async fn spawn_child(
    mode: Mode,
    calls: usize,
    backend_url: &str,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    String,
) {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
    match mode {
        Mode::Relay => child.args(["--child-relay", backend_url]),
        Mode::Backend => child.args(["--child-backend", backend_url, &calls.to_string()]),
    };
    let mut child = child
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let child_in = child.stdin.take().unwrap();
    let mut child_out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = child_out.next_line().await.unwrap().expect("child started");
    (child, child_in, child_out, first)
}

/// `--mode relay`: the Twilio side of each call, in this process, through the child's relay.
fn start_twilio_calls(
    first: &str,
    calls: usize,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let addr = first.strip_prefix("listening ").unwrap().to_owned();
    (0..calls)
        .map(|i| {
            let (addr, stats, stop) = (addr.clone(), stats.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
                twilio_call(addr, i + 1, stats, stop).await;
            })
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("--child-relay") => return relay(argv[2].clone()).await,
        Some("--child-backend") => {
            return backend_child(argv[2].clone(), argv[3].parse().unwrap()).await;
        }
        _ => {}
    }
    let a = args();
    let backend_url = support::echo_server().await;
    let (mut child, mut child_in, mut child_out, first) =
        spawn_child(a.mode, a.calls, &backend_url).await;
    let pid = child.id().unwrap();
    let stats = Stats::new();
    let stop = Arc::new(AtomicU64::new(0));
    let tasks = if a.mode == Mode::Relay {
        start_twilio_calls(&first, a.calls, &stats, &stop)
    } else {
        Vec::new()
    };

    // Warm-up: every call started plus two seconds.
    tokio::time::sleep(Duration::from_millis(5 * a.calls as u64) + Duration::from_secs(2)).await;
    let ticks = support::ticks_per_sec();
    let cpu_start = support::CpuSnapshot::take(pid, ticks);
    let t_start = Instant::now();
    stats.window.lock().unwrap().0 = stats.now_ns();
    use tokio::io::AsyncWriteExt as _;
    child_in.write_all(b"start\n").await.unwrap();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stats.window.lock().unwrap().1 = stats.now_ns();
    child_in.write_all(b"end\n").await.unwrap();
    let wall = t_start.elapsed();
    let cpu_end = support::CpuSnapshot::take(pid, ticks);
    stop.store(1, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    drop(child_in);

    let label = match a.mode {
        Mode::Relay => "minimal one-hop relay (Twilio JSON WebSocket <-> Realtime JSON WebSocket)",
        Mode::Backend => "Realtime WebSocket sessions only (the backend half of a call)",
    };
    println!(
        "relay floor: {label}, {} concurrent calls, {:.1} s window, 20 ms frames",
        a.calls,
        wall.as_secs_f64()
    );
    match a.mode {
        Mode::Relay => stats.report("Twilio side -> relay -> backend -> relay -> Twilio side"),
        Mode::Backend => {
            while let Ok(Some(line)) = child_out.next_line().await {
                println!("{line}");
            }
        }
    }
    support::print_cpu("measured process", cpu_start, cpu_end, a.calls, wall);
    let _ = child.start_kill();
    let _ = child.wait().await;
}
