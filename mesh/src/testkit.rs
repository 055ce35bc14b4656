//! Test harness (feature `testkit`): a PostgreSQL server for the test process, a fresh migrated
//! database per test, and the catalog check that every tenant table is protected by row-level
//! security.
//!
//! # Server
//! - `DATABASE_URL` set (and non-empty): that server is used. The URL must name an administrative
//!   role able to CREATE DATABASE and CREATE ROLE (a superuser in practice), and the server must
//!   accept the service roles (`tenant_svc`, ...) without a password (trust auth), since
//!   [`TestDb::url_for_role`] builds password-less URLs.
//! - otherwise a private cluster is started once per test process: `initdb` (trust auth, no sync,
//!   locale C) into a fresh temporary directory, `postgres` listening on 127.0.0.1 at a free port
//!   (bound to port 0 to pick one; a fresh directory and port on collision) with its unix socket in
//!   the same directory and durability turned off (`fsync`, `synchronous_commit`,
//!   `full_page_writes`). When the current user is root the server runs as the `postgres` OS user
//!   (`runuser`). The server is started under a small `sh` watchdog in its own process group that
//!   polls the test process (`kill -0`) and, once it is gone, stops PostgreSQL (SIGQUIT, immediate
//!   shutdown) and deletes the directory, so nothing is left behind even though statics are never
//!   dropped and even after Ctrl-C.
//!   Binaries are looked up in `MESH_TEST_PG_BIN` (a directory), then `PATH`, then
//!   `/usr/lib/postgresql/<version>/bin`.
//!
//! # Databases
//! Migrations are applied once per process to a template database named after a hash of the
//! migration files (`tpl_<hash>`), built under a cluster-wide advisory lock (so concurrent test
//! binaries do not race) into `tpl_<hash>_building` and renamed when complete, and reused by later
//! processes. Each [`TestDb::new`] is then a `CREATE DATABASE t_<uuid> TEMPLATE tpl_<hash>`.
//!
//! Dropping a [`TestDb`] drops its database (`WITH (FORCE)`): with `DATABASE_URL`, synchronously on
//! a helper thread with its own runtime (so a shared server is left clean); with the private
//! cluster, in the background (the whole cluster is deleted at exit anyway, this only bounds disk
//! use). Set `MESH_TEST_KEEP_DB=1` to keep databases for inspection.
//!
//! Environment variables read: `DATABASE_URL`, `MESH_TEST_PG_BIN`, `MESH_TEST_KEEP_DB`.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

use crate::db::{Db, DbConfig};

/// Service login roles created by the migrations.
pub const SERVICE_ROLES: [&str; 3] = ["tenant_svc", "memory_svc", "media_svc"];

/// Schemas holding application tables (views over them must be `security_invoker`).
pub const APP_SCHEMAS: [&str; 4] = ["app", "tenant", "memory", "media"];

static SERVER: OnceCell<TestPostgres> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static JANITOR: OnceLock<mpsc::Sender<String>> = OnceLock::new();

/// Serialises template builds across processes sharing a cluster (taken in the maintenance db).
const TEMPLATE_LOCK_KEY: i64 = 0x6d65_7368_5f74_706c; // "mesh_tpl"

/// Bump when the way templates are built changes, so stale templates are not reused.
const TEMPLATE_FORMAT: &str = "mesh-testkit-template-v1";

/// Watchdog: starts the server command, and once the test process (`$1`) is gone stops it and
/// deletes the directory. Writes `$dir/exited` when the server exits (e.g. the port was taken).
const WATCHDOG_SH: &str = r#"
parent="$1"; dir="$2"; data="$3"; shift 3
"$@" >"$dir/postgres.log" 2>&1 </dev/null &
pg=$!
(
  while kill -0 "$parent" 2>/dev/null; do sleep 0.2; done
  if [ ! -e "$dir/exited" ] && [ -f "$data/postmaster.pid" ]; then
    kill -QUIT "$(head -n 1 "$data/postmaster.pid")" 2>/dev/null
  fi
) &
wait "$pg"
: >"$dir/exited"
wait
rm -rf "$dir"
"#;

#[derive(Debug, Clone)]
enum ServerHost {
    Tcp(String),
    Unix(PathBuf),
}

/// The PostgreSQL server used by this test process (see the module docs).
#[derive(Debug)]
pub struct TestPostgres {
    host: ServerHost,
    port: u16,
    admin_user: String,
    admin_password: Option<String>,
    maintenance_db: String,
    private_dir: Option<PathBuf>,
}

impl TestPostgres {
    /// The server for this process: `DATABASE_URL`, or a private cluster started on first use.
    pub async fn global() -> &'static TestPostgres {
        SERVER
            .get_or_init(|| async {
                match std::env::var("DATABASE_URL") {
                    Ok(url) if !url.trim().is_empty() => Self::from_url(&url),
                    _ => start_private().await,
                }
            })
            .await
    }

    fn from_url(url: &str) -> TestPostgres {
        let config = tokio_postgres::Config::from_str(url)
            .unwrap_or_else(|e| panic!("DATABASE_URL is not a valid PostgreSQL URL: {e}"));
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => ServerHost::Tcp(h.clone()),
            Some(Host::Unix(p)) => ServerHost::Unix(p.clone()),
            None => ServerHost::Tcp("localhost".into()),
        };
        TestPostgres {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            admin_user: config
                .get_user()
                .expect("DATABASE_URL must name a user (an administrative role)")
                .to_owned(),
            admin_password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            maintenance_db: config.get_dbname().unwrap_or("postgres").to_owned(),
            private_dir: None,
        }
    }

    /// Whether this is the private cluster started by the harness (deleted at exit).
    pub fn is_private(&self) -> bool {
        self.private_dir.is_some()
    }

    /// URL of database `db` for `user` (with `password`, if any).
    pub fn url(&self, user: &str, password: Option<&str>, db: &str) -> String {
        let host = match &self.host {
            ServerHost::Tcp(h) if h.contains(':') => format!("[{h}]"),
            ServerHost::Tcp(h) => pct(h),
            ServerHost::Unix(p) => pct(&p.to_string_lossy()),
        };
        let auth = match password {
            Some(pw) => format!("{}:{}", pct(user), pct(pw)),
            None => pct(user),
        };
        format!("postgres://{auth}@{host}:{}/{}", self.port, pct(db))
    }

    /// Administrative URL of database `db`.
    pub fn admin_url(&self, db: &str) -> String {
        self.url(&self.admin_user, self.admin_password.as_deref(), db)
    }

    /// Administrative URL of the maintenance database (the one named in `DATABASE_URL`, or
    /// `postgres`).
    pub fn maintenance_url(&self) -> String {
        self.admin_url(&self.maintenance_db)
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Connects and drives the connection on the current runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn find_pg_bin() -> PathBuf {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("MESH_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            has_both(&dir),
            "MESH_TEST_PG_BIN={} does not contain initdb and postgres",
            dir.display()
        );
        return dir;
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries (initdb, postgres) not found in MESH_TEST_PG_BIN, PATH or \
             /usr/lib/postgresql/*/bin: install them (`apt-get install postgresql`), or set \
             DATABASE_URL to an existing server"
        ),
    }
}

/// A command run as the `postgres` OS user when we are root (PostgreSQL refuses to run as root).
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0 to find a free port")
}

/// initdb into a fresh directory; returns (directory, data directory).
fn init_cluster(bin: &Path, root: bool) -> (PathBuf, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("mesh-pg-")
        .tempdir()
        .expect("cannot create a temporary directory for PostgreSQL")
        .keep();
    if root {
        let status = Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status()
            .expect("cannot run chown");
        assert!(
            status.success(),
            "chown postgres: {} failed: does the `postgres` OS user exist? (`id postgres`)",
            dir.display()
        );
    }
    let data = dir.join("data");
    let output = as_server_user(&bin.join("initdb"), root)
        .current_dir(&dir)
        .arg("-D")
        .arg(&data)
        .args([
            "--auth=trust",
            "-U",
            "postgres",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run initdb (through runuser when root)");
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (dir, data)
}

/// Spawns the watchdog (which starts postgres) in its own process group.
fn spawn_server(bin: &Path, root: bool, dir: &Path, data: &Path, port: u16) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG_SH)
        .arg("mesh-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(data);
    if root {
        cmd.args(["runuser", "-u", "postgres", "--"]);
    }
    cmd.arg(bin.join("postgres"))
        .arg("-D")
        .arg(data)
        .arg("-k")
        .arg(dir)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    for setting in [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "autovacuum=off",
        "max_connections=200",
        "wal_level=minimal",
        "max_wal_senders=0",
        "log_min_messages=warning",
    ] {
        cmd.args(["-c", setting]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut watchdog = cmd
        .spawn()
        .expect("cannot start the PostgreSQL watchdog (sh)");
    // The watchdog outlives the test process on purpose; this thread only reaps it if it exits
    // early (server failed to start), so it does not linger as a zombie.
    std::thread::spawn(move || {
        let _ = watchdog.wait();
    });
}

enum Startup {
    Ready,
    /// The server exited (port taken, ...): log text.
    Exited(String),
}

async fn wait_ready(server: &TestPostgres, dir: &Path, data: &Path) -> Startup {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("{}?connect_timeout=2", server.maintenance_url());
    let expected_data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_owned());
    loop {
        if dir.join("exited").exists() {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            return Startup::Exited(log);
        }
        if let Ok(client) = connect(&url).await {
            // Make sure we reached our own server, not another one that grabbed the port.
            if let Ok(row) = client.query_one("SHOW data_directory", &[]).await {
                let shown: String = row.get(0);
                let shown = std::fs::canonicalize(&shown).unwrap_or_else(|_| PathBuf::from(&shown));
                if shown == expected_data {
                    return Startup::Ready;
                }
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            panic!("PostgreSQL did not accept connections within 60 s; log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_private() -> TestPostgres {
    let root = is_root();
    let bin = find_pg_bin();
    for _attempt in 0..5 {
        let (dir, data) = {
            let bin = bin.clone();
            tokio::task::spawn_blocking(move || init_cluster(&bin, root))
                .await
                .expect("initdb task panicked")
        };
        let port = free_port();
        spawn_server(&bin, root, &dir, &data, port);
        let server = TestPostgres {
            host: ServerHost::Tcp("127.0.0.1".into()),
            port,
            admin_user: "postgres".into(),
            admin_password: None,
            maintenance_db: "postgres".into(),
            private_dir: Some(dir.clone()),
        };
        match wait_ready(&server, &dir, &data).await {
            Startup::Ready => return server,
            Startup::Exited(log)
                if log.contains("could not bind")
                    || log.contains("already in use")
                    || log.contains("could not create any TCP/IP sockets") =>
            {
                // Port collision: its watchdog removes that directory at exit; try another.
                continue;
            }
            Startup::Exited(log) => panic!("PostgreSQL exited during start-up; log:\n{log}"),
        }
    }
    panic!("could not start PostgreSQL on a free port after 5 attempts");
}

/// FNV-1a over the embedded migrations: names the template database.
fn migrations_fingerprint() -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator, so that ("ab","c") and ("a","bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    feed(TEMPLATE_FORMAT.as_bytes());
    for (version, name, sql) in crate::migrations::embedded() {
        feed(&version.to_le_bytes());
        feed(name.as_bytes());
        feed(sql.as_bytes());
    }
    hash
}

/// The migrated template database for this process's migrations (built if missing).
async fn template(server: &'static TestPostgres) -> &'static str {
    TEMPLATE
        .get_or_init(|| async move {
            let name = format!("tpl_{:016x}", migrations_fingerprint());
            let admin = connect(&server.maintenance_url())
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
            admin
                .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
                .await
                .expect("pg_advisory_lock");
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .expect("query pg_database")
                .is_some();
            if !exists {
                let building = format!("{name}_building");
                let sql = format!(
                    "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE); \
                     CREATE DATABASE \"{building}\" TEMPLATE template0 ENCODING 'UTF8' \
                     LC_COLLATE 'C' LC_CTYPE 'C'"
                );
                for statement in sql.split("; ") {
                    admin
                        .batch_execute(statement)
                        .await
                        .unwrap_or_else(|e| panic!("{statement}: {e}"));
                }
                if let Err(e) = crate::migrations::run_url(&server.admin_url(&building)).await {
                    panic!("migrating the template database failed: {e}");
                }
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("renaming the template database: {e}"));
            }
            admin
                .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
                .await
                .expect("pg_advisory_unlock");
            name
        })
        .await
}

/// A fresh database with all migrations applied; dropped when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    admin_url: String,
    server: &'static TestPostgres,
}

impl TestDb {
    /// Creates `t_<uuid>` from the migrated template.
    pub async fn new() -> TestDb {
        let server = TestPostgres::global().await;
        let template = template(server).await;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&server.maintenance_url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server: {e}"));
        admin
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDb {
            admin_url: server.admin_url(&name),
            name,
            server,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of this database for the administrative role (superuser on the private cluster).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// URL of this database for a login role, without a password (trust auth).
    pub fn url_for_role(&self, role: &str) -> String {
        self.server.url(role, None, &self.name)
    }

    /// An administrative connection to this database, driven on the current runtime.
    pub async fn admin_client(&self) -> Client {
        connect(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {} as admin: {e}", self.name))
    }

    /// Pool settings for `role` on this database (4 connections, 10 s statement timeout), to
    /// adjust before [`Db::connect`].
    pub fn db_config_for_role(&self, role: &str) -> DbConfig {
        let mut config = DbConfig::new(self.url_for_role(role));
        config.max_connections = 4;
        config.statement_timeout = Some(Duration::from_secs(10));
        config.application_name = Some("mesh-testkit".into());
        config
    }

    /// A [`Db`] pool logged in as `role` on this database.
    pub async fn db_for_role(&self, role: &str) -> Db {
        Db::connect(&self.db_config_for_role(role))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {} as {role}: {e}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("MESH_TEST_KEEP_DB").is_some_and(|v| !v.is_empty() && v != "0") {
            return;
        }
        let name = std::mem::take(&mut self.name);
        let server = self.server;
        if server.is_private() {
            // The cluster is deleted at exit; drop in the background only to bound disk use.
            let janitor = JANITOR.get_or_init(|| spawn_janitor(server));
            let _ = janitor.send(name);
        } else {
            // A shared server: drop now, on a helper thread with its own runtime.
            let handle = std::thread::spawn(move || {
                if let Some(runtime) = small_runtime() {
                    runtime.block_on(drop_database(server, &name));
                }
            });
            let _ = handle.join();
        }
    }
}

fn small_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

fn spawn_janitor(server: &'static TestPostgres) -> mpsc::Sender<String> {
    let (sender, receiver) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        let Some(runtime) = small_runtime() else {
            return;
        };
        while let Ok(name) = receiver.recv() {
            runtime.block_on(drop_database(server, &name));
        }
    });
    sender
}

async fn drop_database(server: &TestPostgres, name: &str) {
    if let Ok(client) = connect(&server.maintenance_url()).await
        && let Err(e) = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
    {
        eprintln!("testkit: could not drop database {name}: {e}");
    }
}

/// The catalog check behind [`assert_rls_everywhere`]; returns one line per offender:
/// - every table (`relkind` r or p, partitions included) outside the system schemas that has a
///   `customer_id` column must have row-level security ENABLED and FORCED;
/// - every view over relations in [`APP_SCHEMAS`] or over tables with a `customer_id` column (in
///   any schema) must be `security_invoker = true`;
/// - no materialized view may read such relations (they cannot enforce row-level security).
pub async fn check_rls_everywhere(admin: &Client) -> Vec<String> {
    let mut offenders = Vec::new();
    let tables = admin
        .query(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), \
                    c.relkind::text, c.relrowsecurity, c.relforcerowsecurity \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                           WHERE a.attrelid = c.oid AND a.attname = 'customer_id' \
                             AND a.attnum > 0 AND NOT a.attisdropped) \
               AND NOT (c.relrowsecurity AND c.relforcerowsecurity) \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("catalog query (tables)");
    for row in &tables {
        let name: String = row.get(0);
        let enabled: bool = row.get(2);
        let forced: bool = row.get(3);
        let missing = match (enabled, forced) {
            (false, false) => "ENABLE and FORCE ROW LEVEL SECURITY",
            (false, true) => "ENABLE ROW LEVEL SECURITY",
            _ => "FORCE ROW LEVEL SECURITY",
        };
        offenders.push(format!("table {name} has customer_id but lacks {missing}"));
    }

    let views = admin
        .query(
            "WITH sensitive AS ( \
                 SELECT c.oid FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = ANY($1) \
                    OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                               WHERE a.attrelid = c.oid AND a.attname = 'customer_id' \
                                 AND a.attnum > 0 AND NOT a.attisdropped) \
             ) \
             SELECT pg_catalog.format('%I.%I', n.nspname, v.relname), v.relkind::text, \
                    coalesce(v.reloptions, '{}')::text[] \
             FROM pg_catalog.pg_class v \
             JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
             WHERE v.relkind IN ('v', 'm') \
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
               AND EXISTS ( \
                   SELECT 1 FROM pg_catalog.pg_rewrite r \
                   JOIN pg_catalog.pg_depend d \
                     ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
                    AND d.refclassid = 'pg_catalog.pg_class'::regclass \
                   WHERE r.ev_class = v.oid AND d.refobjid <> v.oid \
                     AND d.refobjid IN (SELECT oid FROM sensitive)) \
             ORDER BY 1",
            &[&APP_SCHEMAS.map(str::to_owned).to_vec()],
        )
        .await
        .expect("catalog query (views)");
    for row in &views {
        let name: String = row.get(0);
        let kind: String = row.get(1);
        let options: Vec<String> = row.get(2);
        if kind == "m" {
            offenders.push(format!(
                "materialized view {name} reads tenant data but cannot enforce row-level security"
            ));
            continue;
        }
        let invoker = options.iter().any(|o| {
            o.split_once('=').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("security_invoker")
                    && matches!(v.to_ascii_lowercase().as_str(), "true" | "on" | "1" | "yes")
            })
        });
        if !invoker {
            offenders.push(format!(
                "view {name} reads tenant data but is not WITH (security_invoker = true)"
            ));
        }
    }
    offenders
}

/// Panics, listing every offender, unless [`check_rls_everywhere`] finds none.
pub async fn assert_rls_everywhere(admin: &Client) {
    let offenders = check_rls_everywhere(admin).await;
    assert!(
        offenders.is_empty(),
        "row-level security is missing on {} relation(s):\n  {}",
        offenders.len(),
        offenders.join("\n  ")
    );
}
