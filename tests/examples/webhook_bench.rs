//! Webhook throughput: the whole mesh in one process on loopback against a private PostgreSQL,
//! two demo tenants, then signed `POST /twilio/voice` requests with distinct CallSids at a fixed
//! concurrency, each going through signature check -> ResolveNumber (tenant-svc, PostgreSQL) ->
//! RegisterCall (media-svc, PostgreSQL write) -> TwiML. Prints throughput and latency.
//!
//! `cargo run --release -p e2e --example webhook_bench -- [concurrency] [seconds]` (64 10)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use e2e::{ACCOUNT_SID, Mesh};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (concurrency, seconds) = (arg(1, 64), arg(2, 10));
    // One source address and one account generate all the load: lift those limits.
    let mesh = Arc::new(
        Mesh::start_with_gateway_settings(&[
            ("GATEWAY_RATE_PER_IP", "1000000"),
            ("GATEWAY_RATE_PER_ACCOUNT", "1000000"),
        ])
        .await,
    );
    let (peterson, smith) = mesh.seed_demo_tenants().await;
    let numbers = [peterson.number, smith.number];
    let counter = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = format!("{}/twilio/voice", mesh.public_base_url);
    let target = format!("http://{}/twilio/voice", mesh.gateway.main);
    let one = |n: u64| {
        let sid = format!("CA{n:032x}");
        let to = numbers[(n % 2) as usize];
        let params: Vec<(String, String)> = Mesh::voice_params(&sid, "+15551111111", to)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let sig = gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &url, &params);
        client
            .post(&target)
            .header("X-Twilio-Signature", sig)
            .form(&params)
            .send()
    };
    // Warm-up.
    for _ in 0..200 {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        one(n).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let counter = counter.clone();
        tasks.push(async move {
            let mut lat = Vec::new();
            let mut bad = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match one(n).await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        if body.contains("<Connect>") {
                            lat.push(t.elapsed());
                        } else {
                            bad += 1;
                        }
                    }
                    _ => bad += 1,
                }
            }
            (lat, bad)
        });
    }
    let results = futures::future::join_all(tasks).await;
    let elapsed = began.elapsed();
    let mut all: Vec<Duration> = results
        .iter()
        .flat_map(|(l, _)| l.iter().copied())
        .collect();
    let bad: u64 = results.iter().map(|(_, b)| b).sum();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "voice webhooks: concurrency {concurrency}, {} calls set up in {:.1?} ({:.0}/s), {bad} failed",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        all[all.len() - 1]
    );
    let rows: i64 = mesh
        .db
        .admin_client()
        .await
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .unwrap()
        .get(0);
    println!("call rows written: {rows}");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "machine: {cores} cores; load generator, gateway, tenant-svc, media-svc and PostgreSQL share it; account {ACCOUNT_SID}"
    );
}
