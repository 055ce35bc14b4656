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
//!
//! The parts: `server` ([`TestPostgres`]: which server, and starting the private cluster), this
//! module ([`TestDb`]: the template and the per-test databases), `catalog`
//! ([`check_rls_everywhere`]: the row-level security catalog check), `smtp`
//! ([`smtp::SmtpServer`]: a real SMTP server, aiosmtpd, for the mail tests), `twilio`
//! ([`twilio::FakeTwilio`]: Twilio's REST and Pricing APIs, for the numbers tests).

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::Client;

use crate::db::{Db, DbConfig};

mod catalog;
mod server;
pub mod smtp;
pub mod twilio;

pub use catalog::{
    SECURITY_DEFINER_ALLOW_LIST, TENANT_POLICY_EXPR, assert_rls_everywhere, check_rls_everywhere,
};
pub use server::TestPostgres;
use server::connect;

/// Service login roles created by the migrations.
pub const SERVICE_ROLES: [&str; 3] = ["tenant_svc", "memory_svc", "media_svc"];

/// Schemas holding application tables (views over them must be `security_invoker`).
pub const APP_SCHEMAS: [&str; 4] = ["app", "tenant", "memory", "media"];

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static JANITOR: OnceLock<mpsc::Sender<String>> = OnceLock::new();

/// Serialises template builds across processes sharing a cluster (taken in the maintenance db).
const TEMPLATE_LOCK_KEY: i64 = 0x6d65_7368_5f74_706c; // "mesh_tpl"

/// Bump when the way templates are built changes, so stale templates are not reused.
const TEMPLATE_FORMAT: &str = "mesh-testkit-template-v1";

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
