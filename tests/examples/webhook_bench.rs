//! Webhook throughput: the whole mesh in one process on loopback against a private PostgreSQL,
//! `tenants` tenants with one number each (seeded server-side), then signed `POST /twilio/voice`
//! requests with distinct CallSids to random tenants' numbers, each going through signature
//! check -> ResolveNumber (tenant-svc) -> RegisterCall (media-svc: concurrent-call limit check
//! and the call row, a PostgreSQL write) -> TwiML. Prints throughput and latency.
//!
//! `cargo run --release -p e2e --example webhook_bench -- [concurrency] [seconds] [rate] [tenants]
//! [history]` (64 10 0 1000 100; `history`: finished calls per tenant already stored). `rate` 0 sends back to back (closed loop: the most set-ups per second at that
//! concurrency); otherwise requests are paced at `rate` per second with at most `concurrency`
//! in flight (latency at that throughput). Nobody streams the calls, so they stay ringing and
//! count against their tenant's concurrent-call limit: the bench gives every tier room for them.

use std::sync::Arc;
use std::time::Duration;

use e2e::{ACCOUNT_SID, Mesh, MeshOptions};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn number(tenant: u64) -> String {
    format!("+1212{:07}", 2_000_000 + tenant)
}

/// `tenants` tenants with one number each and `history` finished calls each, seeded
/// server-side, then `ANALYZE` and a checkpoint.
async fn seed(admin: &tokio_postgres::Client, tenants: u64, history: u64) {
    admin
        .execute(
            "INSERT INTO tenant.customers (customer_id, email, business_name, voice, greeting_new_caller) \
             SELECT g, 'owner' || g || '@bench.example', 'Bench Tenant ' || g, 'marin', \
                    'Thanks for calling Bench Tenant ' || g || ', this is {agent_name}.' \
             FROM generate_series(1, $1::bigint) g",
            &[&(tenants as i64)],
        )
        .await
        .expect("seed customers");
    admin
        .execute(
            "INSERT INTO tenant.phone_numbers (customer_id, number) \
             SELECT g, '+1212' || lpad((2000000 + g)::text, 7, '0') FROM generate_series(1, $1::bigint) g",
            &[&(tenants as i64)],
        )
        .await
        .expect("seed numbers");
    // A call history as a running system has one: `history` finished calls per tenant over the
    // last 30 days (statistics and plans then match a table with rows in it, not an empty one).
    admin
        .execute(
            "INSERT INTO media.calls (customer_id, call_sid, account_sid, caller, called, direction, \
                                      status, created_at, answered_at, ended_at, duration_seconds) \
             SELECT c, 'CA' || lpad(to_hex(c), 16, '0') || lpad(to_hex(h), 16, '0'), $3, \
                    '+1555' || lpad((h % 10000000)::text, 7, '0'), \
                    '+1212' || lpad((2000000 + c)::text, 7, '0'), 1, 5, \
                    now() - (h % 720 + 5) * interval '1 hour', \
                    now() - (h % 720 + 5) * interval '1 hour' + interval '5 seconds', \
                    now() - (h % 720 + 5) * interval '1 hour' + interval '3 minutes', 175 \
             FROM generate_series(1, $1::bigint) c, generate_series(1, $2::bigint) h",
            &[&(tenants as i64), &(history as i64), &ACCOUNT_SID],
        )
        .await
        .expect("seed call history");
    admin
        .batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('tenant.customers', 'customer_id'), {tenants}); ANALYZE"
        ))
        .await
        .expect("sequence");
    // Writes the seed's dirty pages out now rather than during the measurement.
    admin.batch_execute("CHECKPOINT").await.expect("checkpoint");
}

/// Sets up one call to every tenant's number, `concurrency` at a time; each must connect.
async fn warm_up<F, Fut>(one: &F, tenants: u64, concurrency: usize)
where
    F: Fn(u64, u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures::StreamExt as _;
    futures::stream::iter(0..tenants)
        .for_each_concurrent(concurrency, |n| {
            let call = one(u64::MAX / 2 + n, 1 + n);
            async move {
                assert!(call.await, "warm-up call {n} was not connected");
            }
        })
        .await;
}

#[tokio::main]
async fn main() {
    let (concurrency, seconds, rate, tenants) = (arg(1, 64), arg(2, 10), arg(3, 0), arg(4, 1000));
    let history = arg(5, 100);
    // One source address and one account generate all the load: lift those limits.
    let mesh = Arc::new(
        Mesh::start_with(MeshOptions {
            gateway_env: vec![
                ("GATEWAY_RATE_PER_IP".into(), "1000000".into()),
                ("GATEWAY_RATE_PER_ACCOUNT".into(), "1000000".into()),
            ],
            media: Some(Box::new(|c| {
                c.limits.concurrent_by_tier = vec![("starter".into(), 1_000_000)];
            })),
            ..MeshOptions::default()
        })
        .await,
    );
    let admin = mesh.db.admin_client().await;
    seed(&admin, tenants, history).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let url = format!("{}/twilio/voice", mesh.public_base_url);
    let target = format!("http://{}/twilio/voice", mesh.gateway.main);
    let one = {
        let mesh = mesh.clone();
        Arc::new(move |n: u64, tenant: u64| {
            let sid = format!("CA{n:032x}");
            let to = number(tenant);
            let params: Vec<(String, String)> = Mesh::voice_params(&sid, "+15551111111", &to)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let sig = gateway::signature::compute(mesh.twilio_auth_token.as_bytes(), &url, &params);
            let request = client
                .post(&target)
                .header("X-Twilio-Signature", sig)
                .form(&params)
                .send();
            async move {
                match request.await {
                    Ok(r) if r.status() == 200 => {
                        r.text().await.is_ok_and(|body| body.contains("<Connect>"))
                    }
                    _ => false,
                }
            }
        })
    };
    // Warm-up: every tenant's number once (tenant-svc's routing cache, pools, connections).
    warm_up(&*one, tenants, concurrency as usize).await;
    let load = mesh::loadgen::Load {
        concurrency: concurrency as usize,
        duration: Duration::from_secs(seconds),
        rate: (rate > 0).then_some(rate as f64),
    };
    // Tenants in a scrambled order.
    let report = mesh::loadgen::drive(load, move |n| {
        one(n, 1 + n.wrapping_mul(2_654_435_761) % tenants)
    })
    .await;
    for line in report.lines("voice webhooks set up (TwiML <Connect> answered)") {
        println!("{line}");
    }
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM media.calls", &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "call rows: {rows} ({tenants} tenants, {} of them history seeded before the run)",
        tenants * history
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "machine: {cores} cores; load generator, gateway, tenant-svc, media-svc and PostgreSQL share it; account {ACCOUNT_SID}"
    );
}
