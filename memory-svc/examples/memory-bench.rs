//! memory-svc benchmark: seeds a database with many tenants, memories and call summaries, starts
//! memory-svc on loopback and measures GetEnrichedContext and StoreMemory over real gRPC (real
//! tokens, real auth layer, real row-level security) at a fixed concurrency.
//!
//! ```text
//! cargo run --release -p memory-svc --example memory-bench -- \
//!     --tenants 1000 --memories 1000000 --summaries 100000 --concurrency 32
//! ```
//!
//! The database is a private PostgreSQL started by `mesh::testkit` (or the server named by
//! `DATABASE_URL`, which must then be an administrative URL). Seeding runs server-side
//! (`INSERT ... SELECT FROM generate_series`, bypassing the service) through the admin
//! connection, then `VACUUM ANALYZE`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use mesh::api::memory::memory_service_client::MemoryServiceClient;
use mesh::api::memory::*;
use mesh::identity::{DevKeys, names, scope};
use mesh::testkit::TestDb;
use tokio::net::TcpListener;
use tonic::transport::Channel;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmark memory-svc's enriched context and memory writes over gRPC")]
struct Args {
    /// Tenants to seed.
    #[arg(long, default_value_t = 1000)]
    tenants: i64,
    /// Memories to seed (spread evenly over tenants and callers).
    #[arg(long, default_value_t = 1_000_000)]
    memories: i64,
    /// Call summaries to seed (each with its profile, metrics and averages rows).
    #[arg(long, default_value_t = 100_000)]
    summaries: i64,
    /// Distinct callers per tenant.
    #[arg(long, default_value_t = 100)]
    callers_per_tenant: i64,
    /// Concurrent in-flight requests.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds each measured phase runs (after a 2 s warm-up).
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// memory-svc's database pool size.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// HTTP/2 connections the client spreads requests over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Offer GetEnrichedContext at this many requests per second (at most `concurrency` in
    /// flight) instead of back to back: latency at a given throughput.
    #[arg(long)]
    context_rate: Option<f64>,
    /// Offer StoreMemory at this many requests per second instead of back to back.
    #[arg(long)]
    store_rate: Option<f64>,
}

fn caller(i: i64) -> String {
    format!("+1555{i:07}")
}

/// xorshift64*: cheap, deterministic per task.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: i64) -> i64 {
        (self.next() % n as u64) as i64
    }
}

async fn seed(db: &TestDb, a: &Args) {
    let admin = db.admin_client().await;
    let t0 = Instant::now();
    let callers = a.tenants * a.callers_per_tenant;
    // Memory i belongs to tenant (i % tenants) + 1 and that tenant's caller (i / tenants) %
    // callers_per_tenant, created up to 300 days ago, never expired.
    admin
        .execute(
            "WITH p AS (SELECT $1::bigint AS t, $2::bigint AS c, $3::bigint AS n) \
             INSERT INTO memory.memories (customer_id, id, user_id, type, key, value, scope, source, \
                 ttl_days, created_at, expires_at) \
             SELECT (i % p.t) + 1, gen_random_uuid(), \
                    '+1555' || lpad(((i / p.t) % p.c)::text, 7, '0'), \
                    (ARRAY['person','preference','project','rule','moment','fact','thread_recap','conversation','task'])[1 + i % 9], \
                    'key_' || (i % 50), \
                    jsonb_build_object('text', 'remembered fact number ' || i, 'thread_id', 't' || (i % 7)), \
                    'user', 'bench', 3650, \
                    now() - make_interval(mins => (i % 432000)::int), \
                    now() - make_interval(mins => (i % 432000)::int) + interval '3650 days' \
             FROM p, generate_series(0, p.n - 1) AS i",
            &[&a.tenants, &a.callers_per_tenant, &a.memories],
        )
        .await
        .expect("seed memories");
    eprintln!("seeded {} memories in {:.1?}", a.memories, t0.elapsed());
    let t1 = Instant::now();
    // Summary j: tenant (j % tenants) + 1, caller (j / tenants) % callers.
    admin
        .batch_execute(&format!(
            "CREATE TEMP TABLE s AS \
             SELECT (j % {t}) + 1 AS customer_id, \
                    'CA' || lpad(to_hex(j), 32, '0') AS call_sid, \
                    '+1555' || lpad(((j / {t}) % {c})::text, 7, '0') AS user_id, \
                    now() - make_interval(hours => (j % 5000)::int) AS call_at, j \
             FROM generate_series(0, {n} - 1) AS j; \
             INSERT INTO memory.call_summaries (customer_id, call_sid, user_id, call_at, summary, \
                 key_topics, key_variables, sentiment, duration_seconds, resolution_status, summarizer) \
             SELECT customer_id, call_sid, user_id, call_at, \
                    'Heuristic summary (no language model): caller asked about claim ' || j || ' and billing.', \
                    '[\"claims\", \"billing\"]', jsonb_build_object('claim_number', 'C' || j), \
                    'neutral', 120, 'resolved', 'heuristic-v1' FROM s; \
             INSERT INTO memory.personality_metrics SELECT customer_id, call_sid, user_id, call_at, \
                    50, 55, 45, 60, 30, 65, 58, 52, 61, 40, 20, 70, 35, now() FROM s; \
             INSERT INTO memory.caller_profiles (customer_id, user_id, first_call_at, last_call_at, \
                    total_calls, preferred_name, preferences) \
             SELECT customer_id, user_id, min(call_at), max(call_at), count(*), 'Caller', \
                    '{{\"contact\": \"phone\"}}' FROM s GROUP BY 1, 2; \
             INSERT INTO memory.personality_averages SELECT customer_id, user_id, count(*), \
                    50, 55, 45, 60, 30, 65, 58, 52, 61, 40, 20, 70, 35, 'stable', 'stable', now() \
             FROM s GROUP BY 1, 2; \
             DROP TABLE s;",
            t = a.tenants,
            c = a.callers_per_tenant,
            n = a.summaries
        ))
        .await
        .expect("seed summaries");
    eprintln!(
        "seeded {} summaries (+ metrics, profiles, averages) in {:.1?}; {} distinct callers",
        a.summaries,
        t1.elapsed(),
        callers
    );
    let t2 = Instant::now();
    // The checkpoint writes the seed's dirty pages out now rather than during the measurement.
    admin.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
    admin.batch_execute("CHECKPOINT").await.expect("checkpoint");
    eprintln!("VACUUM ANALYZE, CHECKPOINT in {:.1?}", t2.elapsed());
}

struct Phase {
    report: mesh::loadgen::Report,
    /// CPU seconds used during the phase by this process (client + memory-svc) and by the
    /// memory_svc PostgreSQL backends; `None` where /proc is unavailable.
    cpu: Option<(f64, f64)>,
}

/// utime + stime of a process, in seconds (Linux /proc; clock ticks assumed 100 Hz).
fn proc_cpu(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU seconds so far of (this process, memory_svc's database backends).
async fn cpu_now(admin: &tokio_postgres::Client) -> Option<(f64, f64)> {
    let me = proc_cpu("self")?;
    let pids: Vec<i32> = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE usename = 'memory_svc'",
            &[],
        )
        .await
        .ok()?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let pg: f64 = pids.iter().filter_map(|p| proc_cpu(&p.to_string())).sum();
    Some((me, pg))
}

fn report(name: &str, ph: Phase) {
    let n = ph.report.service.len();
    if let Some((me, pg)) = ph.cpu {
        println!(
            "{name:<20} cpu per request: benchmark process (client + memory-svc) {:.3} core-ms, \
             memory_svc PostgreSQL backends {:.3} core-ms",
            me * 1e3 / n.max(1) as f64,
            pg * 1e3 / n.max(1) as f64
        );
    }
    for line in ph.report.lines(name) {
        println!("{line}");
    }
}

#[derive(Clone, Copy)]
enum Op {
    Context,
    Store,
}

async fn run_phase(
    admin: &tokio_postgres::Client,
    a: &Args,
    clients: &[MemoryServiceClient<Channel>],
    tokens: &Arc<Vec<String>>,
    op: Op,
    duration: Duration,
) -> Phase {
    let cpu_before = cpu_now(admin).await;
    let load = mesh::loadgen::Load {
        concurrency: a.concurrency,
        duration,
        rate: match op {
            Op::Context => a.context_rate,
            Op::Store => a.store_rate,
        },
    };
    let clients = clients.to_vec();
    let tokens = tokens.clone();
    let callers = a.callers_per_tenant;
    let report = mesh::loadgen::drive(load, move |i| {
        // Tenant and caller drawn pseudo-randomly from the request number (same every run).
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
        let tenant = rng.below(tokens.len() as i64) as usize;
        let user = caller(rng.below(callers));
        let auth: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", tokens[tenant]).parse().unwrap();
        let mut client = clients[(i % clients.len() as u64) as usize].clone();
        async move {
            match op {
                Op::Context => {
                    let mut r = tonic::Request::new(GetEnrichedContextRequest {
                        user_id: user,
                        num_summaries: None,
                    });
                    r.metadata_mut().insert("authorization", auth);
                    client.get_enriched_context(r).await.is_ok()
                }
                Op::Store => {
                    let mut r = tonic::Request::new(StoreMemoryRequest {
                        user_id: user,
                        r#type: MemoryType::Conversation as i32,
                        key: "message".into(),
                        value: Some(prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue(format!(
                                "bench write {i}"
                            ))),
                        }),
                        scope: 0,
                        source: "bench".into(),
                        ttl_days: 30,
                    });
                    r.metadata_mut().insert("authorization", auth);
                    client.store_memory(r).await.is_ok()
                }
            }
        }
    })
    .await;
    let cpu = match (cpu_before, cpu_now(admin).await) {
        (Some((m0, p0)), Some((m1, p1))) => Some((m1 - m0, (p1 - p0).max(0.0))),
        _ => None,
    };
    Phase { report, cpu }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or("unknown".to_owned(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1048576.0)
        });
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc={cpus} memory={mem} cpu=\"{model}\"")
}

/// A running memory-svc over `db` with its own pool of `a.pool_size` connections.
struct Server {
    addr: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_server(db: &TestDb, a: &Args, keys: &DevKeys) -> Server {
    let mut config = db.db_config_for_role("memory_svc");
    config.max_connections = a.pool_size;
    config.statement_timeout = Some(Duration::from_secs(5));
    let deps = memory_svc::Deps {
        db: mesh::db::Db::connect(&config).await.expect("pool"),
        identity: keys.identity(names::MEMORY_SVC),
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(memory_svc::serve(
        deps,
        mesh::server::Listeners::new(grpc, admin_l, Duration::from_secs(5)),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    Server { addr, stop, task }
}

/// One tenant token per seeded tenant, with the read and write scopes.
fn tenant_tokens(keys: &DevKeys, tenants: i64) -> Arc<Vec<String>> {
    let minter = keys.identity(names::TENANT_SVC).minter().clone();
    Arc::new(
        (1..=tenants)
            .map(|t| {
                minter
                    .mint_tenant(
                        mesh::domain::CustomerId::new(t).unwrap(),
                        "bench",
                        &[names::MEMORY_SVC],
                        &[scope::MEMORY_READ, scope::MEMORY_WRITE],
                        Duration::from_secs(3600),
                    )
                    .unwrap()
            })
            .collect(),
    )
}

/// Sanity check before measuring: a seeded caller has context.
async fn print_sample_context(client: &MemoryServiceClient<Channel>, token: &str) {
    let mut r = tonic::Request::new(GetEnrichedContextRequest {
        user_id: caller(0),
        num_summaries: None,
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let ctx = client
        .clone()
        .get_enriched_context(r)
        .await
        .expect("context")
        .into_inner();
    println!(
        "sample context: {} memories, {} summaries, {} bytes of rendered text",
        ctx.memories.len(),
        ctx.summary_count,
        ctx.rendered_text.len()
    );
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    assert!(a.tenants >= 1 && a.callers_per_tenant >= 1 && a.concurrency >= 1);
    println!("machine: {}", machine());
    println!("args: {a:?}");
    let db = TestDb::new().await;
    seed(&db, &a).await;
    let admin = db.admin_client().await;
    let version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    println!("postgresql: {version} (private test cluster: fsync off unless DATABASE_URL is set)");

    let keys = DevKeys::generate();
    let server = start_server(&db, &a, &keys).await;
    let tokens = tenant_tokens(&keys, a.tenants);
    let mut clients = Vec::new();
    for _ in 0..a.connections.max(1) {
        let ch = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect");
        clients.push(MemoryServiceClient::new(ch));
    }
    print_sample_context(&clients[0], &tokens[0]).await;

    // Each operation: a 2 s warm-up, then the measured run.
    let measure = Duration::from_secs(a.seconds);
    let warm_up = Duration::from_secs(2);
    for (name, op) in [
        ("GetEnrichedContext", Op::Context),
        ("StoreMemory", Op::Store),
    ] {
        run_phase(&admin, &a, &clients, &tokens, op, warm_up).await;
        report(
            name,
            run_phase(&admin, &a, &clients, &tokens, op, measure).await,
        );
    }
    let _ = server.stop.send(true);
    let _ = server.task.await;
}
