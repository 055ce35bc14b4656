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
