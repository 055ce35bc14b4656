//! The PostgreSQL server of a test process: the one `DATABASE_URL` names, or a private cluster
//! started on first use under a watchdog that removes it when the process is gone (see the
//! module docs of [`crate::testkit`]).

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};

static SERVER: OnceCell<TestPostgres> = OnceCell::const_new();

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
pub(super) async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
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
