//! Load benchmark for media-svc: N concurrent calls streamed through the real `media-svc` binary
//! (a separate process, so its CPU can be measured alone) against a fake OpenAI Realtime server
//! that echoes every `input_audio_buffer.append` back as `response.output_audio.delta`.
//!
//! Each call sends 160-byte mu-law frames every 20 ms in real time, with the send time stamped
//! into the first bytes; the echoed frame comes back through media-svc (followed by a mark, which
//! the generator answers like Twilio would). Printed: frames delivered, round-trip p50/p99/max
//! (edge -> media-svc -> backend -> media-svc -> edge), and media-svc's CPU in core-milliseconds
//! per call-second over the steady-state window (from /proc, user + system time).
//!
//! ```text
//! cargo build --release -p media-svc --bin media-svc --example media_bench
//! target/release/examples/media_bench --calls 300 --seconds 20
//! ```
//! Needs PostgreSQL binaries on the machine (the test kit starts a private cluster).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mesh::api::media::call_service_client::CallServiceClient;
use mesh::api::media::stream_call_request::Event as In;
use mesh::api::media::stream_call_response::Event as Out;
use mesh::api::media::*;
use mesh::auth::{AttachToken, TokenSource};
use mesh::domain::CustomerId;
use mesh::identity::{DevKeys, names, scope};
use support::{CpuSnapshot, echo_server};
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use tonic::transport::Channel;

mod support;

struct Args {
    calls: usize,
    seconds: u64,
    per_channel: usize,
}

fn args() -> Args {
    let mut a = Args {
        calls: 100,
        seconds: 20,
        per_channel: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--calls" => a.calls = value.parse().expect("--calls N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds S"),
            "--per-channel" => a.per_channel = value.parse().expect("--per-channel K"),
            other => panic!("unknown flag {other}; use --calls N --seconds S [--per-channel K]"),
        }
    }
    a
}

fn now_ns(origin: Instant) -> u64 {
    origin.elapsed().as_nanos() as u64
}

fn sid(prefix: &str, n: usize) -> String {
    format!("{prefix}{n:032x}")
}

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    received: AtomicU64,
    rtts_us: Mutex<Vec<u32>>,
}

/// Starts the media-svc binary against the test database and the fake backend (tenant-svc and
/// memory-svc unreachable: profile fallback, no memory); returns it, its pid and its gRPC
/// address once it serves.
async fn start_media_svc(
    db: &mesh::testkit::TestDb,
    keys: &DevKeys,
    dir: &std::path::Path,
    realtime: String,
) -> (tokio::process::Child, u32, String) {
    let mut env: BTreeMap<String, String> =
        mesh::testkit_process::service_env(keys, names::MEDIA_SVC, dir);
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    env.insert("DATABASE_URL".into(), db.url_for_role("media_svc"));
    env.insert("DATABASE_POOL_SIZE".into(), "16".into());
    env.insert("AI_BACKEND".into(), "openai-realtime".into());
    env.insert("OPENAI_API_KEY".into(), "sk-bench".into());
    env.insert("OPENAI_REALTIME_URL".into(), realtime);
    env.insert("TENANT_SVC_URL".into(), dead.clone());
    env.insert("MEMORY_SVC_URL".into(), dead);
    env.insert("MEDIA_PEER_TIMEOUT_MS".into(), "300".into());
    // All calls belong to one tenant: give it room for them (the default tier allows 5).
    env.insert(
        "MEDIA_CONCURRENT_CALLS_BY_TIER".into(),
        "starter=1000000".into(),
    );
    env.insert("RUST_LOG".into(), "info,media_svc=warn".into());
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("media-svc"))
        .expect("target dir");
    let mut child = tokio::process::Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e} (build it with --bin media-svc)",
                binary.display()
            )
        });
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("media-svc exited before serving");
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "serving" {
            break v["grpc_addr"].as_str().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, pid, addr)
}

/// What every call task shares.
#[derive(Clone)]
struct Shared {
    origin: Instant,
    stats: Arc<Stats>,
    /// The measurement window in nanoseconds since `origin`.
    window: Arc<std::sync::Mutex<(u64, u64)>>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    fn in_window(&self, t: u64) -> bool {
        let (from, to) = *self.window.lock().unwrap();
        t >= from && t < to
    }
}

/// Registers call `i` with the call's tenant token, exchanges its stream ticket for a grant and
/// opens its stream with `start`, both with the gateway's service token, as the gateway does;
/// returns the sender of its frames and the stream of what media-svc sends back.
async fn open_call(
    i: usize,
    channel: Channel,
    (token, gateway_token): (String, String),
) -> (
    tokio::sync::mpsc::Sender<StreamCallRequest>,
    tonic::Streaming<StreamCallResponse>,
) {
    let call_sid = sid("CA", i + 1);
    let mut client = CallServiceClient::with_interceptor(
        channel.clone(),
        AttachToken(TokenSource::fixed(token.into())),
    );
    let mut gateway = CallServiceClient::with_interceptor(
        channel,
        AttachToken(TokenSource::fixed(gateway_token.into())),
    );
    let registered = client
        .register_call(RegisterCallRequest {
            call_sid: call_sid.clone(),
            account_sid: sid("AC", 1),
            from: format!("+1555{:07}", i),
            to: "+14158675309".into(),
            direction: CallDirection::Inbound as i32,
            status: CallStatus::Ringing as i32,
        })
        .await
        .expect("register")
        .into_inner();
    let stream_grant = gateway
        .open_stream(OpenStreamRequest {
            stream_ticket: registered.stream_ticket,
            call_sid: call_sid.clone(),
            account_sid: sid("AC", 1),
            stream_sid: sid("MZ", i + 1),
        })
        .await
        .expect("open stream")
        .into_inner()
        .stream_grant;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tx.send(StreamCallRequest {
        event: Some(In::Start(StreamStart {
            call_sid,
            stream_sid: sid("MZ", i + 1),
            account_sid: sid("AC", 1),
            caller: String::new(),
            custom_parameters: Default::default(),
            stream_grant,
        })),
    })
    .await
    .unwrap();
    let inbound = gateway
        .stream_call(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    (tx, inbound)
}

/// Reads what media-svc sends back: echoed frames are timed, marks answered as Twilio would.
fn spawn_receiver(
    shared: Shared,
    mut inbound: tonic::Streaming<StreamCallResponse>,
    marks: tokio::sync::mpsc::Sender<StreamCallRequest>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut local = Vec::new();
        while let Ok(Some(m)) = inbound.message().await {
            match m.event {
                Some(Out::Audio(f)) if f.payload.len() >= 8 => {
                    let sent = u64::from_le_bytes(f.payload[..8].try_into().unwrap());
                    let rtt = now_ns(shared.origin).saturating_sub(sent);
                    if shared.in_window(sent) {
                        shared.stats.received.fetch_add(1, Ordering::Relaxed);
                        local.push((rtt / 1000) as u32);
                    }
                }
                Some(Out::Mark(mark)) => {
                    let _ = marks
                        .send(StreamCallRequest {
                            event: Some(In::Mark(MarkPlayed { name: mark.name })),
                        })
                        .await;
                }
                _ => {}
            }
        }
        shared.stats.rtts_us.lock().await.extend(local);
    })
}

/// One call: a frame stamped with its send time every 20 ms until told to stop, then `stop`.
async fn run_call(i: usize, channel: Channel, tokens: (String, String), mut shared: Shared) {
    tokio::time::sleep(Duration::from_millis(5 * i as u64)).await;
    let (tx, inbound) = open_call(i, channel, tokens).await;
    let receiver = spawn_receiver(shared.clone(), inbound, tx.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.stop.changed() => break,
        }
        seq += 1;
        let sent = now_ns(shared.origin);
        let mut payload = vec![0x7Fu8; 160];
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        if shared.in_window(sent) {
            shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        let frame = StreamCallRequest {
            event: Some(In::Audio(AudioFrame {
                payload,
                sequence: seq,
                timestamp_ms: (seq * 20) as u32,
            })),
        };
        if tx.send(frame).await.is_err() {
            break;
        }
    }
    // Let echoes in flight arrive, then hang up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tx
        .send(StreamCallRequest {
            event: Some(In::Stop(StreamStop {})),
        })
        .await;
    drop(tx);
    let _ = receiver.await;
}

/// Starts every call over `channels` (`per_channel` calls each).
fn start_calls(
    a: &Args,
    keys: &DevKeys,
    channels: &[Channel],
    shared: &Shared,
) -> Vec<tokio::task::JoinHandle<()>> {
    let minter = keys.identity(names::TENANT_SVC).minter().clone();
    let gateway_token = keys
        .identity(names::GATEWAY)
        .minter()
        .mint_service(
            names::MEDIA_SVC,
            &[scope::MEDIA_STREAM_OPEN, scope::MEDIA_STREAM],
            Duration::from_secs(3600),
        )
        .unwrap();
    (0..a.calls)
        .map(|i| {
            let token = minter
                .mint_tenant(
                    CustomerId::new(1).unwrap(),
                    &sid("CA", i + 1),
                    &[names::MEDIA_SVC],
                    scope::CALL_SCOPES,
                    Duration::from_secs(3600),
                )
                .unwrap();
            let channel = channels[i / a.per_channel].clone();
            let tokens = (token, gateway_token.clone());
            tokio::spawn(run_call(i, channel, tokens, shared.clone()))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let a = args();
    let origin = Instant::now();
    let db = mesh::testkit::TestDb::new().await;
    let keys = Arc::new(DevKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let realtime = echo_server().await;
    let (mut child, pid, addr) = start_media_svc(&db, &keys, dir.path(), realtime).await;
    let ticks_per_sec = support::ticks_per_sec();

    let mut channels = Vec::new();
    for _ in 0..a.calls.div_ceil(a.per_channel) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
                .unwrap(),
        );
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let shared = Shared {
        origin,
        stats: Arc::new(Stats::default()),
        window: Arc::new(std::sync::Mutex::new((u64::MAX, u64::MAX))),
        stop,
    };
    let tasks = start_calls(&a, &keys, &channels, &shared);

    // Warm-up: every call started plus one second.
    tokio::time::sleep(Duration::from_millis(5 * a.calls as u64) + Duration::from_secs(2)).await;
    let cpu_start = CpuSnapshot::take(pid, ticks_per_sec);
    let t_start = now_ns(origin);
    shared.window.lock().unwrap().0 = t_start;
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let t_end = now_ns(origin);
    shared.window.lock().unwrap().1 = t_end;
    let cpu_end = CpuSnapshot::take(pid, ticks_per_sec);
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }

    let wall = Duration::from_nanos(t_end - t_start);
    println!(
        "media-svc benchmark: {} concurrent calls, {:.1} s window, 20 ms frames",
        a.calls,
        wall.as_secs_f64()
    );
    let stats = &shared.stats;
    support::print_round_trips(
        "edge -> media-svc -> backend -> media-svc -> edge",
        stats.sent.load(Ordering::Relaxed),
        stats.received.load(Ordering::Relaxed),
        std::mem::take(&mut *stats.rtts_us.lock().await),
    );
    support::print_cpu("media-svc", cpu_start, cpu_end, a.calls, wall);
    let _ = child.start_kill();
    let _ = child.wait().await;
}
