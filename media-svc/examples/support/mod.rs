//! Pieces the media benchmarks share: the echoing fake Realtime server and CPU accounting from
//! /proc. Not an example of its own (no `main.rs`).

use futures::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The WebSocket settings every socket of the benchmarks uses, the same as media-svc's
/// realtime client: tungstenite zero-fills its read buffer to `read_buffer_size` before every
/// read, 128 KiB by default, which at 50 small events a second costs more than the events.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

/// The fake Realtime server: echoes every `input_audio_buffer.append` back as
/// `response.output_audio.delta`, nothing else. Returns its `ws://` URL.
pub async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/realtime", listener.local_addr().unwrap());
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
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                        continue;
                    };
                    if v["type"] != "input_audio_buffer.append" {
                        continue;
                    }
                    let reply = serde_json::json!({
                        "type": "response.output_audio.delta",
                        "response_id": "bench",
                        "item_id": "bench-item",
                        "delta": v["audio"],
                    });
                    if sink.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Clock ticks per second of /proc's CPU times.
pub fn ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// user + system CPU time of a process, in milliseconds.
pub fn cpu_ms(pid: u32, ticks_per_sec: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks * 1000 / ticks_per_sec
}

/// Idle CPU time of the whole machine (all cores), in milliseconds.
pub fn idle_ms(ticks_per_sec: u64) -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // idle + iowait
    (cpu[3] + cpu[4]) * 1000 / ticks_per_sec
}

/// The value at fraction `p` of sorted microsecond samples, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    f64::from(sorted_us[((sorted_us.len() - 1) as f64 * p) as usize]) / 1000.0
}

/// CPU counters at one instant: the measured process's, this process's (load generator and
/// fake backend) and the machine's idle time, in core-milliseconds.
#[derive(Clone, Copy)]
pub struct CpuSnapshot {
    measured: u64,
    this: u64,
    idle: u64,
}

impl CpuSnapshot {
    /// The counters now, `pid` being the measured process.
    pub fn take(pid: u32, ticks_per_sec: u64) -> Self {
        Self {
            measured: cpu_ms(pid, ticks_per_sec),
            this: cpu_ms(std::process::id(), ticks_per_sec),
            idle: idle_ms(ticks_per_sec),
        }
    }
}

/// Prints the measured process's CPU per call-second over a window of `wall` with `calls`
/// calls, and what the rest of the machine did meanwhile.
pub fn print_cpu(
    who: &str,
    start: CpuSnapshot,
    end: CpuSnapshot,
    calls: usize,
    wall: std::time::Duration,
) {
    let call_seconds = calls as f64 * wall.as_secs_f64();
    let cpu = (end.measured - start.measured) as f64;
    println!(
        "{who} CPU: {cpu:.0} core-ms over {call_seconds:.0} call-seconds = {:.3} core-ms per call-second",
        cpu / call_seconds
    );
    let wall_ms = wall.as_secs_f64() * 1000.0;
    println!(
        "context: load generator + fake backend used {:.2} cores; machine idle {:.2} of {} cores",
        (end.this - start.this) as f64 / wall_ms,
        (end.idle - start.idle) as f64 / wall_ms,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

/// Prints how many of the frames sent in the window came back, and their round trips
/// (microsecond samples) along `path`.
pub fn print_round_trips(path: &str, sent: u64, received: u64, mut rtts_us: Vec<u32>) {
    rtts_us.sort_unstable();
    println!(
        "frames delivered: {received}/{sent} ({:.3} %)",
        if sent == 0 {
            0.0
        } else {
            received as f64 * 100.0 / sent as f64
        }
    );
    println!(
        "round trip ({path}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile_ms(&rtts_us, 0.5),
        percentile_ms(&rtts_us, 0.99),
        percentile_ms(&rtts_us, 1.0)
    );
}
