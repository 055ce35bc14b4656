//! ResolveNumber benchmark: seeds tenants and numbers into a fresh database, serves tenant-svc
//! on loopback and calls `EdgeService.ResolveNumber` over real gRPC at a fixed concurrency,
//! printing latency percentiles and throughput.
//!
//! `cargo run --release -p tenant-svc --features bench --bin tenant-bench -- [tenants] [numbers] [concurrency] [seconds]`
//! (defaults 10000 20000 64 10). Uses a private PostgreSQL unless DATABASE_URL is set.

use std::time::{Duration, Instant};

use mesh::api::tenant::ResolveNumberRequest;
use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tonic::transport::Channel;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn number(i: u64) -> String {
    // Valid US numbers: area code 212, exchanges 200-999.
    format!("+1212{:07}", 2_000_000 + i)
}

#[tokio::main]
async fn main() {
    let (tenants, numbers, concurrency, seconds) =
        (arg(1, 10_000), arg(2, 20_000), arg(3, 64), arg(4, 10));
    let db = TestDb::new().await;
    let admin = db.admin_client().await;
    let started = Instant::now();
    admin
        .execute(
            "INSERT INTO tenant.customers (customer_id, email, business_name, voice, sliders) \
             SELECT g, 'owner' || g || '@bench.example', 'Bench Tenant ' || g, 'marin', '{\"warmth\": 70}'::jsonb \
             FROM generate_series(1, $1::bigint) g",
            &[&(tenants as i64)],
        )
        .await
        .expect("seed customers");
    admin
        .execute(
            "INSERT INTO tenant.phone_numbers (customer_id, number) \
             SELECT 1 + (g % $1::bigint), '+1212' || lpad((2000000 + g)::text, 7, '0') \
             FROM generate_series(0, $2::bigint - 1) g",
            &[&(tenants as i64), &(numbers as i64)],
        )
        .await
        .expect("seed numbers");
    admin
        .execute(
            "SELECT setval(pg_get_serial_sequence('tenant.customers', 'customer_id'), $1)",
            &[&(tenants as i64)],
        )
        .await
        .expect("sequence");
    admin.batch_execute("ANALYZE").await.expect("analyze");
    println!(
        "seeded {tenants} tenants, {numbers} numbers in {:.1?}",
        started.elapsed()
    );

    let keys = DevKeys::generate();
    let mut config = db.db_config_for_role("tenant_svc");
    config.max_connections = 16;
    let deps = tenant_svc::Deps {
        db: mesh::db::Db::connect(&config).await.expect("pool"),
        identity: keys.identity(names::TENANT_SVC),
        legacy: None,
        webhook_allow_insecure: false,
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    tokio::spawn(tenant_svc::serve(
        deps,
        grpc,
        admin_l,
        Duration::from_secs(1),
        std::future::pending(),
    ));
    let token = keys
        .identity(names::GATEWAY)
        .minter()
        .mint_service(
            names::TENANT_SVC,
            &[scope::TENANT_RESOLVE],
            Duration::from_secs(3600),
        )
        .unwrap();

    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect"),
        );
    }
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let call = move |client: &mut EdgeServiceClient<Channel>, i: u64| {
        let mut req = tonic::Request::new(ResolveNumberRequest {
            called_number: number(i % numbers),
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            call_sid: format!("CA{:032x}", i),
        });
        req.metadata_mut().insert("authorization", header.clone());
        let mut c = client.clone();
        async move { c.resolve_number(req).await }
    };
    // Warm-up.
    let mut warm = EdgeServiceClient::new(channels[0].clone());
    for i in 0..500 {
        call(&mut warm, i * 7919).await.expect("warm-up call");
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut client = EdgeServiceClient::new(channels[w as usize % channels.len()].clone());
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = w * 104_729;
            while Instant::now() < deadline {
                i = i
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let t = Instant::now();
                match call(&mut client, i >> 16).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = began.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "ResolveNumber over gRPC: concurrency {concurrency}, {} calls in {:.1?} ({:.0}/s), errors {errors}",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        all[all.len() - 1]
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cores} cores; client, tenant-svc and PostgreSQL share it");
}
