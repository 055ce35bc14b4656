//! ResolveNumber benchmark: seeds tenants and numbers into a fresh database, serves tenant-svc
//! on loopback and calls `EdgeService.ResolveNumber` over real gRPC at a fixed concurrency,
//! printing latency percentiles and throughput.
//!
//! `cargo run --release -p tenant-svc --features bench --bin tenant-bench -- [tenants] [numbers] [concurrency] [seconds] [rate]`
//! (defaults 10000 20000 64 10 0). `rate` 0 runs closed loop (every worker sends its next
//! request as soon as the last one is answered: the highest throughput at that concurrency);
//! a rate paces the requests at that many per second with at most `concurrency` in flight
//! (latency at a given throughput). Uses a private PostgreSQL unless DATABASE_URL is set.

use std::time::{Duration, Instant};

use mesh::api::tenant::edge_service_client::EdgeServiceClient;
use mesh::api::tenant::{ResolveNumberRequest, ResolveNumberResponse};
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

/// Seeds `tenants` customers and `numbers` numbers spread over them, in bulk.
async fn seed(db: &TestDb, tenants: u64, numbers: u64) {
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
}

/// Serves tenant-svc on loopback (a pool of 16); returns four connected clients.
async fn serve(db: &TestDb, keys: &DevKeys) -> Vec<EdgeServiceClient<Channel>> {
    let mut config = db.db_config_for_role("tenant_svc");
    config.max_connections = 16;
    let deps = tenant_svc::Deps {
        core: mesh::server::Core {
            db: mesh::db::Db::connect(&config).await.expect("pool"),
            identity: keys.identity(names::TENANT_SVC),
        },
        legacy: None,
        webhook_allow_insecure: false,
        // Not exercised here: no peer answers a tenant erasure.
        peers: tenant_svc::peers::Peers::new(
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
            keys.identity(names::TENANT_SVC),
        )
        .expect("peer URLs"),
        accounts: Default::default(),
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    tokio::spawn(tenant_svc::serve(
        deps,
        mesh::server::Listeners::new(grpc, admin_l, Duration::from_secs(1)),
        std::future::pending(),
    ));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        clients.push(EdgeServiceClient::new(channel));
    }
    clients
}

/// Makes the benchmark's requests: the `i`-th resolves number `i % numbers` as the gateway.
#[derive(Clone)]
struct Caller {
    header: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
    numbers: u64,
}

impl Caller {
    fn new(keys: &DevKeys, numbers: u64) -> Self {
        let token = keys
            .identity(names::GATEWAY)
            .minter()
            .mint_service(
                names::TENANT_SVC,
                &[scope::TENANT_RESOLVE],
                Duration::from_secs(3600),
            )
            .unwrap();
        let header = format!("Bearer {token}").parse().unwrap();
        Self { header, numbers }
    }

    fn call(
        &self,
        client: &EdgeServiceClient<Channel>,
        i: u64,
    ) -> impl std::future::Future<
        Output = Result<tonic::Response<ResolveNumberResponse>, tonic::Status>,
    > + use<> {
        let mut req = tonic::Request::new(ResolveNumberRequest {
            called_number: number(i % self.numbers),
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            call_sid: format!("CA{:032x}", i),
        });
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        let mut c = client.clone();
        async move { c.resolve_number(req).await }
    }
}

/// Cold pass: every number once, so every request misses tenant-svc's routing cache and reads
/// PostgreSQL (the first call to a number after a start or a change). It leaves the cache warm,
/// as it is for numbers that get calls.
async fn cold_pass(caller: &Caller, clients: &[EdgeServiceClient<Channel>], concurrency: u64) {
    let numbers = caller.numbers;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let began = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency as usize {
        let (next, caller) = (next.clone(), caller.clone());
        let client = clients[w % clients.len()].clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= numbers {
                    break lat;
                }
                let t = Instant::now();
                caller.call(&client, n).await.expect("cold-pass call");
                lat.push(t.elapsed());
            }
        }));
    }
    let mut cold = Vec::new();
    for w in workers {
        cold.extend(w.await.unwrap());
    }
    let took = began.elapsed();
    cold.sort_unstable();
    println!(
        "cold pass (each number once, all read from PostgreSQL): {} in {took:.1?} ({:.0}/s), \
         p50 {:.2} ms  p99 {:.2} ms",
        cold.len(),
        cold.len() as f64 / took.as_secs_f64(),
        mesh::loadgen::quantile(&cold, 0.5).as_secs_f64() * 1e3,
        mesh::loadgen::quantile(&cold, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let (tenants, numbers, concurrency, seconds, rate) = (
        arg(1, 10_000),
        arg(2, 20_000),
        arg(3, 64),
        arg(4, 10),
        arg(5, 0),
    );
    let db = TestDb::new().await;
    seed(&db, tenants, numbers).await;
    let keys = DevKeys::generate();
    let clients = serve(&db, &keys).await;
    let caller = Caller::new(&keys, numbers);
    cold_pass(&caller, &clients, concurrency).await;

    let load = mesh::loadgen::Load {
        concurrency: concurrency as usize,
        duration: Duration::from_secs(seconds),
        rate: (rate > 0).then_some(rate as f64),
    };
    let report = mesh::loadgen::drive(load, move |i| {
        // Spread over the numbers pseudo-randomly (the same sequence every run).
        let k = i
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            >> 16;
        let fut = caller.call(&clients[(i % clients.len() as u64) as usize], k);
        async move { fut.await.is_ok() }
    })
    .await;
    for line in report.lines("ResolveNumber over gRPC, routing cache warm") {
        println!("{line}");
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("machine: {cores} cores; client, tenant-svc and PostgreSQL share it");
}
