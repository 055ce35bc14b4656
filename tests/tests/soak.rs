//! The soak's CI version (issue 9, "Load and soak"): `calls_bench` runs simulated Twilio calls
//! through the four real service binaries (separate processes on loopback, a private PostgreSQL,
//! the fake realtime backend) for three minutes and judges what a long soak would: every call
//! completes, no service's RSS grows more than 10 % from the middle of the window to its end,
//! no fd or tokio-task growth, no stream left open once every call hung up, every record
//! delivered, and a clean exit 0 on SIGTERM. Its verdict is this test's.
//!
//! ```text
//! cargo test -p e2e --test soak -- --nocapture                   # 20 calls, 180 s (CI)
//! SOAK_CALLS=300 SOAK_SECONDS=1800 cargo test --release -p e2e --test soak -- --nocapture
//! ```
//! The 30-minute soak with a few hundred calls needs release binaries (`--release`); latency
//! and CPU figures are printed, not judged, here (debug builds in CI are far slower).

// Shared with the fault suite; only `binaries` is used here.
#[allow(dead_code)]
mod support;

use std::path::Path;
use std::process::Stdio;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_soak_keeps_memory_fds_and_tasks_flat_and_fails_no_call() {
    let bin_dir = support::binaries().await;
    let calls = setting("SOAK_CALLS", 20);
    let seconds = setting("SOAK_SECONDS", 180);

    // The benchmark binary, in the same profile and target directory as the services.
    support::cargo_build(bin_dir, &["-p", "e2e", "--example", "calls_bench"]).await;

    let bench = Path::new(bin_dir).join("examples").join("calls_bench");
    let mut cmd = tokio::process::Command::new(&bench);
    cmd.args(["--calls", &calls.to_string()])
        .args(["--seconds", &seconds.to_string()])
        // Debug builds start slower: a gentler ramp and a longer warm-up.
        .args(["--stagger-ms", "50", "--warmup", "5"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(std::time::Duration::from_secs(seconds + 300), cmd.output())
        .await
        .expect("the soak finished in time")
        .expect("run calls_bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));

    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in the report"))
            .to_owned()
    };
    assert_eq!(
        line("calls: "),
        format!("calls: {calls} started, {calls} completed, 0 failed")
    );
    assert_eq!(
        line("records: "),
        format!(
            "records: {calls} call rows in media-svc, {calls} call summaries delivered to memory-svc"
        )
    );
    assert_eq!(line("verdict: "), "verdict: PASS");
    assert!(out.status.success(), "calls_bench exited {:?}", out.status);
}
