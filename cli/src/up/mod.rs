//! `neurosphere up`: everything a developer needs, with embedded defaults.
//!
//! Order: claim `<data dir>/up.pid` (a second `up` says so and stops) -> install what is missing
//! (`install`: PostgreSQL server binaries, espeak-ng) -> PostgreSQL (the one in
//! `DATABASE_URL`, or a private cluster under `<data dir>/pg`) -> migrations -> development keys
//! (generated once under `<data dir>/keys`) -> development secrets for unset settings (kept under
//! `<data dir>`, printed) -> the four services in this process, each with its own settings and its
//! own database role -> wait until each answers health -> print what runs where -> Ctrl-C stops
//! everything, draining in-flight calls first. The demo tenants are in `demo`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use futures::FutureExt;
use mesh::identity::{DevKeys, IdentityFiles, names};
use mesh::settings::Env;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::localpg::LocalPostgres;

mod demo;
mod install;

/// Options of `neurosphere up`.
#[derive(Args)]
pub struct UpArgs {
    /// Where the local database, keys and development secrets are kept.
    #[arg(long, default_value = ".neurosphere", env = "NEUROSPHERE_HOME")]
    data_dir: PathBuf,
    /// Port of the private PostgreSQL (when DATABASE_URL is unset).
    #[arg(long, default_value_t = 5433, env = "NEUROSPHERE_PG_PORT")]
    pg_port: u16,
    /// Install nothing: without it, missing PostgreSQL server binaries (unless DATABASE_URL is
    /// set) and espeak-ng are installed with apt-get (directly as root, else through sudo).
    #[arg(long)]
    no_install: bool,
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

/// `MEDIA_RECORDING_KEYS` from the environment, else the one kept in
/// `<dir>/dev-media-recording-keys` (generated, mode 0600, on the first `up`). Losing that file
/// makes the local recordings unreadable.
fn recording_keys(dir: &Path) -> anyhow::Result<String> {
    if let Ok(v) = std::env::var("MEDIA_RECORDING_KEYS")
        && !v.trim().is_empty()
    {
        return Ok(v);
    }
    let path = dir.join("dev-media-recording-keys");
    if let Ok(v) = std::fs::read_to_string(&path) {
        return Ok(v.trim().to_owned());
    }
    let keys = media_svc::recording::PlatformKeys::generate().to_setting();
    write_private(&path, &keys)?;
    Ok(keys)
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
    install::prepare(!args.no_install)?;

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

/// Every service's identity files: read from `keys_dir`, generated there the first time.
fn identity_files(keys_dir: &Path) -> anyhow::Result<BTreeMap<String, IdentityFiles>> {
    if !keys_dir.join("trusted-keys.json").exists() {
        println!("  generating development keys in {}", keys_dir.display());
        return Ok(DevKeys::generate().write(keys_dir)?.into_iter().collect());
    }
    DevKeys::read(keys_dir).context("reading development keys")?;
    Ok(names::ALL
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
        .collect())
}

/// A development secret and whether `up` generated it (then it is printed).
type DevSecret = (String, bool);

/// The four services' settings, each with its own identity and database role.
struct Services {
    tenant: tenant_svc::Settings,
    memory: memory_svc::Settings,
    media: media_svc::Settings,
    gateway: gateway::Settings,
    twilio: DevSecret,
    jwt: DevSecret,
}

impl Services {
    fn from_env(dir: &Path, admin_url: &str, keys_dir: &Path) -> anyhow::Result<Self> {
        let files = identity_files(keys_dir)?;
        let twilio = dev_secret(dir, "TWILIO_AUTH_TOKEN", 32)?;
        let jwt = dev_secret(dir, "JWT_SECRET_KEY", 48)?;
        // Settings shared by every service: the process environment, with `up`'s defaults for
        // the values it provides.
        let mut base: BTreeMap<String, String> = std::env::vars().collect();
        base.insert("BIND_HOST".into(), env_or("BIND_HOST", "127.0.0.1"));
        base.insert("TWILIO_AUTH_TOKEN".into(), twilio.0.clone());
        base.insert("JWT_SECRET_KEY".into(), jwt.0.clone());
        // A local mesh delivers webhooks to receivers on this machine (http://127.0.0.1:…); a
        // deployment keeps the default (https and public addresses only).
        base.insert(
            "WEBHOOK_ALLOW_INSECURE".into(),
            env_or("WEBHOOK_ALLOW_INSECURE", "true"),
        );
        // Call recordings: a platform key generated once and kept here (never in the
        // repository), the encrypted store and the spool in folders beside it.
        base.insert("MEDIA_RECORDING_KEYS".into(), recording_keys(dir)?);
        for (name, folder) in [
            ("MEDIA_RECORDING_STORE", "recordings"),
            ("MEDIA_RECORDING_SPOOL_DIR", "recording-spool"),
        ] {
            base.insert(
                name.into(),
                env_or(name, &dir.join(folder).display().to_string()),
            );
        }
        // The platform's mail (the portal's password-reset links from the gateway, the owners'
        // notices of new messages from tenant-svc) goes to a folder here unless SMTP is set.
        if !base.contains_key("PORTAL_SMTP_URL") {
            base.insert(
                "PORTAL_OUTBOX_DIR".into(),
                env_or(
                    "PORTAL_OUTBOX_DIR",
                    &dir.join("outbox").display().to_string(),
                ),
            );
        }
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
        Ok(Self {
            tenant: tenant_svc::Settings::from_env(for_service(
                names::TENANT_SVC,
                Some("tenant_svc"),
            )?)?,
            memory: memory_svc::Settings::from_env(for_service(
                names::MEMORY_SVC,
                Some("memory_svc"),
            )?)?,
            media: media_svc::Settings::from_env(for_service(
                names::MEDIA_SVC,
                Some("media_svc"),
            )?)?,
            gateway: gateway::Settings::from_env(for_service(names::GATEWAY, None)?)?,
            twilio,
            jwt,
        })
    }
}

/// (name, gRPC address, admin address) of each gRPC service, tenant-svc first.
type Addrs = [(&'static str, SocketAddr, SocketAddr); 3];

/// The services running in this process, and the switch that stops them.
struct Running {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop: watch::Sender<bool>,
}

impl Running {
    fn spawn(s: Services) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(tenant_svc::run(s.tenant, stopped()).map(|r| ("tenant-svc", r)));
        tasks.spawn(memory_svc::run(s.memory, stopped()).map(|r| ("memory-svc", r)));
        tasks.spawn(media_svc::run(s.media, stopped()).map(|r| ("media-svc", r)));
        tasks.spawn(gateway::run(s.gateway, stopped()).map(|r| ("gateway", r)));
        Self { tasks, stop }
    }

    /// Waits until every gRPC service answers health, or one of them fails to start.
    async fn ready(&mut self, addrs: &Addrs) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = async {
            for (name, grpc, _) in addrs {
                wait_serving(name, &grpc.to_string(), deadline).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = ready => r,
            Some(Ok((name, Err(e)))) = self.tasks.join_next() => {
                let _ = self.stop.send(true);
                bail!("{name} failed to start: {e:#}");
            }
        }
    }

    /// Runs until Ctrl-C or a service stops, then drains the others; true if any failed.
    async fn until_stopped(mut self) -> bool {
        let mut failed = false;
        tokio::select! {
            () = mesh::server::shutdown_signal() => {}
            Some(res) = self.tasks.join_next() => {
                if let Ok((name, Err(e))) = res {
                    eprintln!("{name} stopped with an error: {e:#}");
                    failed = true;
                }
            }
        }
        println!("stopping: draining in-flight calls");
        let _ = self.stop.send(true);
        while let Some(res) = self.tasks.join_next().await {
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
        failed
    }
}

async fn run_services(dir: &Path, admin_url: &str) -> anyhow::Result<ExitCode> {
    mesh::migrations::run_url(admin_url)
        .await
        .context("applying migrations")?;
    println!("  migrations applied");
    let keys_dir = dir.join("keys");
    let services = Services::from_env(dir, admin_url, &keys_dir)?;
    let addrs: Addrs = [
        (
            "tenant-svc",
            services.tenant.common.grpc_addr,
            services.tenant.common.admin_addr,
        ),
        (
            "memory-svc",
            services.memory.common.grpc_addr,
            services.memory.common.admin_addr,
        ),
        (
            "media-svc",
            services.media.common.grpc_addr,
            services.media.common.admin_addr,
        ),
    ];
    let gateway_addrs = (services.gateway.http_addr, services.gateway.admin_addr);
    let portal_mail = services.gateway.portal.mail.clone();
    let public_base_url = services.gateway.public_base_url.clone();
    let (twilio, jwt) = (services.twilio.clone(), services.jwt.clone());
    let mut running = Running::spawn(services);
    running.ready(&addrs).await?;

    let keys = DevKeys::read(&keys_dir)?;
    let demo = demo::seed_demo_tenants(&keys, &addrs[0].1.to_string()).await?;
    let owners = demo::invite_owners(&keys, &addrs[0].1.to_string(), &demo).await?;
    println!();
    println!("NeuroSphere Mesh is up. Ctrl-C stops everything.");
    for (name, grpc, admin) in &addrs {
        println!("  {name:<11} gRPC {grpc:<18} admin http://{admin}/metrics");
    }
    println!(
        "  {:<11} HTTP http://{}  admin http://{}/metrics",
        "gateway", gateway_addrs.0, gateway_addrs.1
    );
    println!("  {:<11} {}", "PostgreSQL", redact_url(admin_url));
    println!("  {:<11} {}", "keys", keys_dir.display());
    if let portal::config::MailTransport::Outbox(outbox) = &portal_mail {
        println!(
            "  {:<11} {} (the portal's mail, as .eml files)",
            "outbox",
            outbox.display()
        );
    }
    for (name, (value, generated)) in [("TWILIO_AUTH_TOKEN", twilio), ("JWT_SECRET_KEY   ", jwt)] {
        if generated {
            println!(
                "  {name} (development value, kept in {}): {value}",
                dir.display()
            );
        }
    }
    print_owners(&public_base_url, &owners);
    print_try(&keys, &keys_dir, &demo, &addrs[0].1)?;
    let failed = running.until_stopped().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints the tenant portal's address and, for each demo tenant, its owner's one-time
/// invitation link (or that the owner already signed up).
fn print_owners(base: &str, owners: &[(String, String, Option<String>)]) {
    println!();
    println!(
        "Tenant portal: {}/portal/ (invitation links are single-use, valid 72 hours; \
         `neurosphere user invite` makes more)",
        base.trim_end_matches('/')
    );
    for (name, email, token) in owners {
        match token {
            Some(token) => println!(
                "  {name:<28} {email:<24} {}",
                crate::ops::invitation_link(base, token)
            ),
            None => {
                println!("  {name:<28} {email:<24} already a user: sign in with their password")
            }
        }
    }
}

/// Prints the demo tenants and ready-to-paste commands: a simulated call to each, and grpcurl
/// with a tenant token for the first.
fn print_try(
    keys: &DevKeys,
    keys_dir: &Path,
    demo: &[(i64, String, String)],
    tenant_addr: &SocketAddr,
) -> anyhow::Result<()> {
    let customer = mesh::domain::CustomerId::new(demo[0].0).expect("positive");
    let token = keys.identity(names::TENANT_SVC).minter().mint_tenant(
        customer,
        "neurosphere-up",
        &[names::TENANT_SVC, names::MEMORY_SVC, names::MEDIA_SVC],
        mesh::identity::scope::TENANT_SCOPES,
        Duration::from_secs(3600),
    )?;
    println!();
    println!("Demo tenants:");
    for (id, name, number) in demo {
        println!("  customer {id:<3} {name:<28} {number}");
    }
    println!();
    println!("Call them (a simulated Twilio call through the gateway):");
    for (_, _, number) in demo {
        println!(
            "  cargo run -q -p neurosphere-cli -- call simulate --to '{number}' --save agent.wav"
        );
    }
    println!();
    println!(
        "Try (a tenant token for customer {}, valid 1 hour):",
        demo[0].0
    );
    println!("  grpcurl -plaintext {tenant_addr} list");
    println!(
        "  grpcurl -plaintext -H 'authorization: Bearer {token}' {tenant_addr} neurosphere.tenant.v1.TenantService/GetMyCustomer"
    );
    println!(
        "More tokens: neurosphere token mint --customer 1 --scope memory:read --keys {}",
        keys_dir.display()
    );
    Ok(())
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
