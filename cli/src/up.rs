//! `neurosphere up`: everything a developer needs, with embedded defaults.
//!
//! Order: claim `<data dir>/up.pid` (a second `up` says so and stops) -> PostgreSQL (the one in
//! `DATABASE_URL`, or a private cluster under `<data dir>/pg`) -> migrations -> development keys
//! (generated once under `<data dir>/keys`) -> development secrets for unset settings (kept under
//! `<data dir>`, printed) -> the four services in this process, each with its own settings and its
//! own database role -> wait until each answers health -> print what runs where -> Ctrl-C stops
//! everything, draining in-flight calls first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::FutureExt;
use mesh::auth::with_bearer as auth;
use mesh::identity::{DevKeys, IdentityFiles, names};
use mesh::settings::Env;
use tokio::sync::watch;

use crate::localpg::LocalPostgres;

/// Options of `neurosphere up`.
#[derive(Args)]
pub struct UpArgs {
    /// Where the local database, keys and development secrets are kept.
    #[arg(long, default_value = ".neurosphere", env = "NEUROSPHERE_HOME")]
    data_dir: PathBuf,
    /// Port of the private PostgreSQL (when DATABASE_URL is unset).
    #[arg(long, default_value_t = 5433, env = "NEUROSPHERE_PG_PORT")]
    pg_port: u16,
}

const DATABASE: &str = "neurosphere";

struct PidFile(PathBuf);

impl PidFile {
    fn claim(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("up.pid");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && Path::new(&format!("/proc/{pid}")).exists()
        {
            bail!(
                "`neurosphere up` is already running (pid {pid}, data in {}). Stop it with Ctrl-C in its terminal, or use another --data-dir.",
                dir.display()
            );
        }
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A development secret: the environment's value, or one generated once and kept in `dir`.
fn dev_secret(dir: &Path, name: &str, len: usize) -> anyhow::Result<(String, bool)> {
    if let Ok(v) = std::env::var(name)
        && !v.trim().is_empty()
    {
        return Ok((v, false));
    }
    let path = dir.join(format!(
        "dev-{}",
        name.to_ascii_lowercase().replace('_', "-")
    ));
    if let Ok(v) = std::fs::read_to_string(&path) {
        return Ok((v.trim().to_owned(), true));
    }
    use rand::Rng;
    let value: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    write_private(&path, &value)?;
    Ok((value, true))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// `postgres://<role>@host:port/db` for the database `admin_url` points at (passwords are not
/// carried over: service roles log in with their own credentials, trust auth locally).
fn role_url(admin_url: &str, role: &str) -> anyhow::Result<String> {
    let c = tokio_postgres::Config::from_str(admin_url)
        .context("DATABASE_URL is not a valid PostgreSQL URL")?;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().unwrap_or(DATABASE);
    Ok(format!("postgres://{role}@{host}:{port}/{db}"))
}

async fn ensure_database(maintenance_url: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(maintenance_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the local PostgreSQL")?;
    let driver = tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await?;
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

async fn wait_serving(name: &str, addr: &str, deadline: Instant) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    loop {
        let ok = async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?;
            let r = HealthClient::new(ch)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            anyhow::Ok(r.into_inner().status == 1)
        }
        .await
        .unwrap_or(false);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} did not become healthy on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `neurosphere up`.
pub async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    mesh::telemetry::init_from_env();
    let dir = args.data_dir;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _pid = PidFile::claim(&dir)?;
    println!("NeuroSphere Mesh: starting (data in {})", dir.display());

    let (admin_url, local_pg) = match std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => (url, None),
        None => {
            let pg = LocalPostgres::start(&dir, args.pg_port)?;
            ensure_database(&pg.url("postgres", "postgres")).await?;
            (pg.url("postgres", DATABASE), Some(pg))
        }
    };
    let result = run_services(&dir, &admin_url).await;
    if let Some(pg) = &local_pg {
        println!("stopping the local PostgreSQL");
        pg.stop();
    }
    result
}

async fn run_services(dir: &Path, admin_url: &str) -> anyhow::Result<ExitCode> {
    mesh::migrations::run_url(admin_url)
        .await
        .context("applying migrations")?;
    println!("  migrations applied");

    let keys_dir = dir.join("keys");
    let files: BTreeMap<String, IdentityFiles> = if keys_dir.join("trusted-keys.json").exists() {
        DevKeys::read(&keys_dir).context("reading development keys")?;
        names::ALL
            .iter()
            .map(|n| {
                let kid =
                    std::fs::read_to_string(keys_dir.join(format!("{n}.kid"))).unwrap_or_default();
                (
                    (*n).to_owned(),
                    IdentityFiles {
                        signing_key: keys_dir.join(format!("{n}.pem")),
                        kid: kid.trim().to_owned(),
                        trusted_keys: keys_dir.join("trusted-keys.json"),
                    },
                )
            })
            .collect()
    } else {
        println!("  generating development keys in {}", keys_dir.display());
        DevKeys::generate().write(&keys_dir)?.into_iter().collect()
    };

    let (twilio, twilio_generated) = dev_secret(dir, "TWILIO_AUTH_TOKEN", 32)?;
    let (jwt, jwt_generated) = dev_secret(dir, "JWT_SECRET_KEY", 48)?;

    // Settings shared by every service: the process environment, with `up`'s defaults for the
    // values it provides.
    let mut base: BTreeMap<String, String> = std::env::vars().collect();
    base.insert("BIND_HOST".into(), env_or("BIND_HOST", "127.0.0.1"));
    base.insert("TWILIO_AUTH_TOKEN".into(), twilio.clone());
    base.insert("JWT_SECRET_KEY".into(), jwt.clone());
    // A local mesh delivers webhooks to receivers on this machine (http://127.0.0.1:…); a
    // deployment keeps the default (https and public addresses only).
    base.insert(
        "WEBHOOK_ALLOW_INSECURE".into(),
        env_or("WEBHOOK_ALLOW_INSECURE", "true"),
    );
    let for_service = |name: &str, role: Option<&str>| -> anyhow::Result<Env> {
        let mut vars = base.clone();
        let f = &files[name];
        vars.insert(
            "MESH_SIGNING_KEY_FILE".into(),
            f.signing_key.display().to_string(),
        );
        vars.insert("MESH_SIGNING_KEY_ID".into(), f.kid.clone());
        vars.insert(
            "MESH_TRUSTED_KEYS_FILE".into(),
            f.trusted_keys.display().to_string(),
        );
        if let Some(role) = role {
            vars.insert("DATABASE_URL".into(), role_url(admin_url, role)?);
        }
        Ok(Env::from_pairs(vars))
    };

    let tenant =
        tenant_svc::Settings::from_env(for_service(names::TENANT_SVC, Some("tenant_svc"))?)?;
    let memory =
        memory_svc::Settings::from_env(for_service(names::MEMORY_SVC, Some("memory_svc"))?)?;
    let media = media_svc::Settings::from_env(for_service(names::MEDIA_SVC, Some("media_svc"))?)?;
    let gateway = gateway::Settings::from_env(for_service(names::GATEWAY, None)?)?;
    let addrs = [
        (
            "tenant-svc",
            tenant.common.grpc_addr,
            tenant.common.admin_addr,
        ),
        (
            "memory-svc",
            memory.common.grpc_addr,
            memory.common.admin_addr,
        ),
        ("media-svc", media.common.grpc_addr, media.common.admin_addr),
    ];
    let gateway_addr = (gateway.http_addr, gateway.admin_addr);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(tenant_svc::run(tenant, stop()).map(|r| ("tenant-svc", r)));
    tasks.spawn(memory_svc::run(memory, stop()).map(|r| ("memory-svc", r)));
    tasks.spawn(media_svc::run(media, stop()).map(|r| ("media-svc", r)));
    tasks.spawn(gateway::run(gateway, stop()).map(|r| ("gateway", r)));

    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = async {
        for (name, grpc, _) in &addrs {
            wait_serving(name, &grpc.to_string(), deadline).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = ready => r?,
        Some(Ok((name, Err(e)))) = tasks.join_next() => {
            let _ = stop_tx.send(true);
            bail!("{name} failed to start: {e:#}");
        }
    }

    let keys = DevKeys::read(&keys_dir)?;
    let demo = seed_demo_tenants(&keys, &addrs[0].1.to_string()).await?;
    let customer = mesh::domain::CustomerId::new(demo[0].0).expect("positive");
    let token = keys.identity(names::TENANT_SVC).minter().mint_tenant(
        customer,
        "neurosphere-up",
        &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
        mesh::identity::scope::TENANT_SCOPES,
        Duration::from_secs(3600),
    )?;
    println!();
    println!("NeuroSphere Mesh is up. Ctrl-C stops everything.");
    for (name, grpc, admin) in &addrs {
        println!("  {name:<11} gRPC {grpc:<18} admin http://{admin}/metrics");
    }
    println!(
        "  {:<11} HTTP http://{}  admin http://{}/metrics",
        "gateway", gateway_addr.0, gateway_addr.1
    );
    println!("  {:<11} {}", "PostgreSQL", redact_url(admin_url));
    println!("  {:<11} {}", "keys", keys_dir.display());
    if twilio_generated {
        println!(
            "  TWILIO_AUTH_TOKEN (development value, kept in {}): {twilio}",
            dir.display()
        );
    }
    if jwt_generated {
        println!(
            "  JWT_SECRET_KEY    (development value, kept in {}): {jwt}",
            dir.display()
        );
    }
    println!();
    println!("Demo tenants:");
    for (id, name, number) in &demo {
        println!("  customer {id:<3} {name:<28} {number}");
    }
    println!();
    println!("Call them (a simulated Twilio call through the gateway):");
    for (_, _, number) in &demo {
        println!(
            "  cargo run -q -p neurosphere-cli -- call simulate --to '{number}' --save agent.wav"
        );
    }
    println!();
    println!(
        "Try (a tenant token for customer {}, valid 1 hour):",
        demo[0].0
    );
    println!("  grpcurl -plaintext {} list", addrs[0].1);
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' {} neurosphere.tenant.v1.TenantService/GetMyCustomer",
        addrs[0].1
    );
    println!(
        "More tokens: neurosphere token mint --customer 1 --scope memory:read --keys {}",
        keys_dir.display()
    );

    let mut failed = false;
    tokio::select! {
        () = mesh::server::shutdown_signal() => {}
        Some(res) = tasks.join_next() => {
            if let Ok((name, Err(e))) = res {
                eprintln!("{name} stopped with an error: {e:#}");
                failed = true;
            }
        }
    }
    println!("stopping: draining in-flight calls");
    let _ = stop_tx.send(true);
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok((name, Err(e))) => {
                eprintln!("{name} stopped with an error: {e:#}");
                failed = true;
            }
            Ok((_, Ok(()))) => {}
            Err(e) => {
                eprintln!("a service task failed: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:<password>{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A demo tenant: (email, name, number, voice, greeting, sliders).
type Demo = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    [(&'static str, u32); 3],
);

/// The demo tenants.
const DEMO: [Demo; 2] = [
    (
        "ops@peterson.example",
        "Peterson Family Insurance",
        "+14155550101",
        "sage",
        "{time_greeting}! Thank you for calling Peterson Family Insurance, this is {agent_name}. How can I help?",
        [("warmth", 80), ("empathy", 75), ("directness", 40)],
    ),
    (
        "desk@smith.example",
        "Smith Insurance Agency",
        "+14155550102",
        "coral",
        "Smith Insurance Agency, {agent_name} speaking. What can I do for you today?",
        [("warmth", 50), ("empathy", 50), ("directness", 70)],
    ),
];

/// Creates the two demo tenants unless they exist; returns (id, name, number) of each.
async fn seed_demo_tenants(
    keys: &DevKeys,
    tenant_addr: &str,
) -> anyhow::Result<Vec<(i64, String, String)>> {
    use mesh::api::tenant::tenant_admin_service_client::TenantAdminServiceClient;
    use mesh::api::tenant::*;
    let token = keys.identity(names::OPERATOR).minter().mint_service(
        names::TENANT_SVC,
        &[mesh::identity::scope::TENANT_ADMIN],
        Duration::from_secs(300),
    )?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{tenant_addr}"))?
        .connect()
        .await?;
    let mut admin = TenantAdminServiceClient::new(channel);
    let existing = admin
        .list_customers(auth(
            ListCustomersRequest {
                page_size: 500,
                page_token: String::new(),
            },
            &token,
        ))
        .await?
        .into_inner()
        .customers;
    let mut out = Vec::new();
    for (email, name, number, voice, greeting, sliders) in DEMO {
        if let Some(c) = existing.iter().find(|c| c.email == email) {
            out.push((c.id, name.to_owned(), number.to_owned()));
            continue;
        }
        let c = admin
            .create_customer(auth(
                CreateCustomerRequest {
                    email: email.into(),
                    business_name: name.into(),
                    contact_name: String::new(),
                    contact_phone: String::new(),
                    package_tier: "professional".into(),
                    agent_config: Some(AgentConfig {
                        voice: Some(voice.into()),
                        greeting_new_caller: Some(greeting.into()),
                        sliders: sliders.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                        ..Default::default()
                    }),
                },
                &token,
            ))
            .await?
            .into_inner()
            .customer
            .context("no customer")?;
        admin
            .assign_phone_number(auth(
                AssignPhoneNumberRequest {
                    customer_id: c.id,
                    number: number.into(),
                    twilio_account_sid: String::new(),
                },
                &token,
            ))
            .await?;
        println!("  seeded demo tenant {name} (customer {}, {number})", c.id);
        out.push((c.id, name.to_owned(), number.to_owned()));
    }
    Ok(out)
}
