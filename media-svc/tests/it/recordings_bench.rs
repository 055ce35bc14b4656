//! The recording writer's cost, for BENCHMARKS.md (ignored by default; run it in release):
//!
//! ```sh
//! cargo test --release -p media-svc --test it recording_cpu -- --ignored --nocapture
//! ```
//!
//! 300 recordings fed as the call driver feeds them (20 ms of caller audio and 20 ms of agent
//! audio per call per step), as fast as the process can, with every segment sealed and written to
//! the spool and every row written; prints the process CPU time per recorded call-second and
//! what that makes for 300 concurrent calls in real time, as a share of one core.

use std::time::{Duration, Instant};

use media_svc::recording::RecordingKind;

use super::recordings::{Rig, cid};

/// utime + stime of this process, from /proc/self/stat (clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture, in release"]
async fn recording_cpu_per_call_second() {
    const CALLS: u32 = 300;
    const SECONDS: u32 = 20;
    let rig = Rig::new(|_| {}).await;
    let mut writers = Vec::new();
    for n in 0..CALLS {
        let sid = rig.call(1 + i64::from(n % 10), n).await;
        let w = rig
            .rec
            .start(cid(1 + i64::from(n % 10)), &sid, RecordingKind::Call)
            .await
            .unwrap()
            .unwrap();
        writers.push(w);
    }
    let (cpu0, wall0) = (cpu(), Instant::now());
    let frame = [0x55u8; 160];
    for ms in (0..SECONDS * 1000).step_by(20) {
        for w in &mut writers {
            w.caller(ms, &frame);
            w.agent(ms, &frame);
        }
        tokio::task::yield_now().await;
        if ms % 1000 == 0 {
            // Let the writer tasks drain their channels, as real time would.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let truncated = writers.iter().filter(|w| w.truncated()).count();
    for w in writers {
        w.finish().await.unwrap();
    }
    let (cpu_used, wall) = (cpu() - cpu0, wall0.elapsed());
    let call_seconds = f64::from(CALLS * SECONDS);
    let per_call_second = cpu_used.as_secs_f64() / call_seconds;
    println!(
        "recording: {CALLS} calls x {SECONDS} s in {:.2} s wall, {:.2} s CPU: {:.1} us CPU per \
         recorded call-second; 300 concurrent calls in real time = {:.1} % of one core; \
         {truncated} truncated",
        wall.as_secs_f64(),
        cpu_used.as_secs_f64(),
        per_call_second * 1e6,
        per_call_second * 300.0 * 100.0,
    );
    assert_eq!(truncated, 0);
}
