//! Tenant-scoped database access: a deadpool-postgres pool logged in as the service's own role, and
//! [`Db::tenant_tx`], the one way to touch tenant data.
//!
//! # How tenant isolation works
//! Every tenant table has ROW LEVEL SECURITY enabled and forced, with a policy
//! `USING (customer_id = app.current_customer_id()) WITH CHECK (...)`. `app.current_customer_id()`
//! (migration V1) reads the setting `app.customer_id` and raises SQLSTATE 42501 when it is unset
//! or empty, so a query without tenant context fails closed instead of seeing everything.
//! Row-level security only binds roles that are not superuser, not BYPASSRLS and not the table's
//! owner (unless the table uses FORCE): services connect as such roles and verify it at start-up
//! with [`Db::self_check`]. RLS, not the query text, is what isolates tenants: a query without a
//! `WHERE customer_id = ...` still sees only the current tenant's rows.
//!
//! # Why transaction-local settings
//! A session-level setting (a plain `SET` of `app.customer_id`, or `set_config(.., false)`)
//! survives on the connection after the request ends; with a pool, the next request, possibly for
//! another tenant or for no tenant at all, would inherit it: a cross-tenant leak. `SET LOCAL`
//! cannot take a bind parameter. So [`Db::tenant_tx`] begins a transaction and runs
//! `SELECT set_config('app.customer_id', $1, true)`: the value dies with the transaction, on commit,
//! rollback, or when the connection is dropped mid-request (tokio-postgres then sends ROLLBACK).
//! `set_config(.., true)` outside a transaction would have no effect, which is why nothing in this
//! module hands out a bare connection.
//!
//! # Pool hygiene
//! Every transaction starts by resetting the session (`RESET ALL`, `RESET ROLE`, session
//! authorization, cursors, listeners, advisory locks, temporary tables) before it sets its tenant,
//! so nothing a previous user of the pooled connection left behind (a session-level `SET`, even of
//! `app.customer_id`) is visible to it. The reset is sent in the same message as the tenant
//! setting, pipelined with the closure's first statement (see "Round trips"): it costs no round
//! trip of its own. A checkout only checks that the socket is open; tokio-postgres rolls back a
//! transaction whose future was dropped before the connection is used again.
//!
//! # Round trips
//! A transaction costs `BEGIN`, then one round trip that carries the reset, the tenant setting
//! and the closure's first statement (tokio-postgres pipelines requests whose futures are polled
//! together, in the order they are first polled, and PostgreSQL runs them in that order), then
//! one per further statement, then `COMMIT`. If the reset or the tenant setting fails, the
//! transaction is aborted, so the closure's statements cannot run without them, and the
//! closure's future is dropped.
//!
//! # Prepared statements
//! Closures get a [`Tx`]: its `query`, `execute`, `query_typed` and friends run SQL text as named
//! prepared statements cached per pooled connection, so PostgreSQL parses and plans each
//! statement once per connection rather than on every call. Plans are shared by every tenant
//! that uses the connection; the policies' `app.current_customer_id()` is `STABLE`, evaluated
//! when the statement runs, never folded into a plan.
//!
//! # Timeouts
//! [`DbConfig::statement_timeout`] and [`DbConfig::idle_in_transaction_timeout`] are sent as
//! session defaults in the connection's startup options (`-c statement_timeout=...`), so they
//! survive the `RESET ALL` of every transaction; settings already present in the URL's `options`
//! are kept.
//!
//! # Errors
//! [`DbError`] never carries row values in its `Display` or `Debug` output: PostgreSQL's DETAIL
//! (e.g. `Key (customer_id, id)=(1, 7) already exists`) is dropped, and messages of data-exception
//! and integrity-violation errors are replaced by the SQLSTATE and constraint name. The SQLSTATE is
//! available through [`DbError::code`] (e.g. map `unique_violation` to ALREADY_EXISTS).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row, Statement};

use crate::domain::CustomerId;

/// Connection settings for one service's pool.
#[derive(Clone)]
pub struct DbConfig {
    /// `postgres://user[:password]@host:port/dbname` (or a key=value connection string). The user
    /// is the service's own login role (e.g. `tenant_svc`), never an owner or superuser.
    pub url: String,
    /// Pool size (>= 1).
    pub max_connections: usize,
    /// Server-side `statement_timeout` for every statement; `None` keeps the server default.
    pub statement_timeout: Option<Duration>,
    /// Server-side `idle_in_transaction_session_timeout`: the server ends a session whose
    /// transaction sits idle this long. `None` keeps the server default.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// Time allowed to establish a new connection (TCP connect and startup).
    pub connect_timeout: Option<Duration>,
    /// Time a request waits for a free pooled connection before failing.
    pub checkout_timeout: Option<Duration>,
    /// `application_name` shown in `pg_stat_activity`, unless the URL sets one.
    pub application_name: Option<String>,
}

impl DbConfig {
    /// Defaults: 10 connections, 30 s statement timeout, 60 s idle-in-transaction timeout, 5 s
    /// connect timeout, 5 s checkout timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            statement_timeout: Some(Duration::from_secs(30)),
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            connect_timeout: Some(Duration::from_secs(5)),
            checkout_timeout: Some(Duration::from_secs(5)),
            application_name: None,
        }
    }
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("checkout_timeout", &self.checkout_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Replaces the password of a URL-form connection string; key=value strings are hidden entirely
/// when they mention a password.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        if !rest.contains("password=") {
            return url.to_owned();
        }
    } else if !url.contains("password") {
        return url.to_owned();
    }
    "<connection string with password, redacted>".to_owned()
}

/// Database access failed, or the start-up self-check refused the connected role.
///
/// `Display`/`Debug` never contain row values (see the module docs).
#[derive(thiserror::Error)]
pub enum DbError {
    /// The configuration cannot be used (bad URL, pool size 0, ...).
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The pool could not hand out a connection (timeout, closed).
    #[error("database pool: {0}")]
    Pool(String),
    /// PostgreSQL or the connection reported an error; see [`DbError::code`].
    #[error("{}", describe_postgres(.0))]
    Postgres(tokio_postgres::Error),
    /// Self-check: the service is connected as a superuser, which bypasses row-level security.
    #[error(
        "refusing to serve: database role `{role}` is a superuser and would bypass row-level security; connect as the service's own role"
    )]
    Superuser {
        /// The connected role.
        role: String,
    },
    /// Self-check: the role has BYPASSRLS.
    #[error(
        "refusing to serve: database role `{role}` has BYPASSRLS and would bypass row-level security; ALTER ROLE {role} NOBYPASSRLS"
    )]
    BypassRls {
        /// The connected role.
        role: String,
    },
    /// Self-check: the role is a member of a superuser or BYPASSRLS role.
    #[error(
        "refusing to serve: database role `{role}` is a member of privileged role(s) {granted:?} (superuser or BYPASSRLS); revoke the membership"
    )]
    PrivilegedMembership {
        /// The connected role.
        role: String,
        /// The superuser/BYPASSRLS roles it can act as.
        granted: Vec<String>,
    },
    /// Self-check: the role (or a role it is a member of) owns relations, so row-level security
    /// does not bind it on those tables unless they are FORCEd; ownership belongs to
    /// `neurosphere_owner`.
    #[error(
        "refusing to serve: database role `{role}` owns (directly or through role membership) {count} table(s)/view(s), e.g. {examples:?}; table owners bypass row-level security: objects must be owned by neurosphere_owner and the service must not be a member of it"
    )]
    OwnsTables {
        /// The connected role.
        role: String,
        /// How many relations it owns.
        count: i64,
        /// Up to 10 of them, `schema.name`.
        examples: Vec<String>,
    },
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same text as Display: the derived Debug of tokio_postgres::Error would include DETAIL.
        write!(f, "DbError({self})")
    }
}

impl DbError {
    /// The SQLSTATE of a PostgreSQL error (e.g. [`SqlState::UNIQUE_VIOLATION`]), if this is one.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// Whether this is the error raised by `app.current_customer_id()` (or any other
    /// insufficient-privilege error): a query ran without tenant context or lacked a grant.
    pub fn is_insufficient_privilege(&self) -> bool {
        self.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    }

    /// Whether the database is unreachable or going away (pool timeout, refused or lost
    /// connection, server shutting down or starting up, too many connections), as opposed to a
    /// query that failed: callers answer UNAVAILABLE, which clients may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Pool(_) => true,
            Self::Postgres(e) => {
                if let Some(code) = e.code() {
                    let c = code.code();
                    return c.starts_with("08")
                        || matches!(c, "57P01" | "57P02" | "57P03" | "53300");
                }
                let mut source = std::error::Error::source(e);
                let mut io = false;
                while let Some(s) = source {
                    io |= s.is::<std::io::Error>();
                    source = s.source();
                }
                e.is_closed() || io
            }
            _ => false,
        }
    }

    /// The underlying tokio-postgres error. Careful: its own `Display` includes PostgreSQL's
    /// DETAIL, which may contain row values; do not log it.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Self::Postgres(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Self::Postgres(e),
            PoolError::PostCreateHook(HookError::Backend(e)) => Self::Postgres(e),
            PoolError::Timeout(kind) => Self::Pool(format!("timed out ({kind:?})")),
            other => Self::Pool(other.to_string()),
        }
    }
}

/// Text for a tokio-postgres error without DETAIL and, for data exceptions (class 22) and
/// integrity violations (class 23), without the primary message, which can quote values.
fn describe_postgres(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        let text = e.to_string();
        // Conversion errors may quote the value (e.g. serde_json's messages): keep the column or
        // parameter index only. Connection and protocol errors carry no row values.
        if text.starts_with("error deserializing") || text.starts_with("error serializing") {
            let head = text.split(": ").next().unwrap_or_default();
            return format!("database: {head}");
        }
        return format!("database: {text}");
    };
    let code = db.code().code();
    if code.starts_with("22") || code.starts_with("23") {
        let mut text = format!("database error {code}");
        if let Some(constraint) = db.constraint() {
            text.push_str(&format!(" (constraint {constraint}"));
            if let Some(table) = db.table() {
                text.push_str(&format!(" on {table}"));
            }
            text.push(')');
        }
        text
    } else {
        format!("database error {code}: {}", db.message())
    }
}

/// What a transaction runs first: undoes any session-level state a previous user of the pooled
/// connection may have left (every statement here is allowed inside a transaction block; the
/// startup options, where the timeouts are, are what `RESET ALL` returns to).
const SESSION_RESET_SQL: &str = "\
    CLOSE ALL; \
    SET SESSION AUTHORIZATION DEFAULT; \
    RESET ALL; \
    RESET ROLE; \
    UNLISTEN *; \
    SELECT pg_catalog.pg_advisory_unlock_all(); \
    DISCARD TEMP; \
    DISCARD SEQUENCES;";

/// The reset, then (for a tenant transaction) the transaction-local tenant: one message. The
/// customer id is a validated positive integer, so writing it into the text is safe.
fn prelude_sql(customer: Option<CustomerId>) -> String {
    match customer {
        None => SESSION_RESET_SQL.to_owned(),
        Some(c) => format!(
            "{SESSION_RESET_SQL} SELECT pg_catalog.set_config('app.customer_id', '{}', true);",
            c.get()
        ),
    }
}

/// Runs `f` in `tx` with the prelude for `customer` sent first and pipelined with `f`'s first
/// statement (see the module docs); `f` is dropped if the prelude fails.
async fn with_prelude<T, E, F>(tx: &Tx<'_>, customer: Option<CustomerId>, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
    E: From<DbError>,
{
    let sql = prelude_sql(customer);
    let prelude = async {
        tx.batch_execute(&sql)
            .await
            .map_err(|e| E::from(DbError::from(e)))
    };
    let ((), value) = futures::future::try_join(prelude, f(tx)).await?;
    Ok(value)
}

/// A pool of connections for one service role. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// The pool's connection settings, for [`Db::listen`]'s dedicated connection.
    config: std::sync::Arc<tokio_postgres::Config>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Db")
            .field("size", &status.size)
            .field("available", &status.available)
            .field("max_size", &status.max_size)
            .finish()
    }
}

impl Db {
    /// Builds the pool (no TLS) and opens one connection to check the URL and credentials.
    /// Call [`Db::self_check`] before serving.
    pub async fn connect(config: &DbConfig) -> Result<Db, DbError> {
        if config.max_connections == 0 {
            return Err(DbError::Config("max_connections must be at least 1".into()));
        }
        let mut pg = tokio_postgres::Config::from_str(&config.url)
            .map_err(|e| DbError::Config(format!("cannot parse the database URL: {e}")))?;
        let mut options = pg.get_options().unwrap_or_default().to_owned();
        if let Some(t) = config.statement_timeout {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        if let Some(t) = config.idle_in_transaction_timeout {
            options.push_str(&format!(
                " -c idle_in_transaction_session_timeout={}",
                t.as_millis()
            ));
        }
        let options = options.trim();
        if !options.is_empty() {
            pg.options(options);
        }
        if pg.get_application_name().is_none()
            && let Some(name) = &config.application_name
        {
            pg.application_name(name);
        }
        if let Some(t) = config.connect_timeout {
            pg.connect_timeout(t);
        }

        let reset_limit = config
            .connect_timeout
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        let listen_config = std::sync::Arc::new(pg.clone());
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                // `Fast` only checks that the socket is open; every transaction resets the
                // session itself (module docs).
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(config.checkout_timeout)
            .create_timeout(config.connect_timeout)
            .recycle_timeout(Some(reset_limit))
            .build()
            .map_err(|e| DbError::Config(e.to_string()))?;
        let db = Db {
            pool,
            config: listen_config,
        };
        db.ping().await?;
        Ok(db)
    }

    async fn checkout(&self) -> Result<Object, DbError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `f` in a transaction whose tenant is `customer`: checks out a connection, begins a
    /// transaction, sets the transaction-local `app.customer_id`, runs `f`, commits when it
    /// returns `Ok` and rolls back when it returns `Err` (or when the future is dropped).
    ///
    /// ```ignore
    /// let rows = db
    ///     .tenant_tx(customer, async |tx| {
    ///         Ok::<_, DbError>(tx.query("SELECT id FROM memory.memories", &[]).await?)
    ///     })
    ///     .await?;
    /// ```
    pub async fn tenant_tx<T, E, F>(&self, customer: CustomerId, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut conn = self.checkout().await?;
        let tx = Tx::begin(&mut conn).await?;
        finish(tx, async |tx| with_prelude(tx, Some(customer), f).await).await
    }

    /// One transaction for a lookup that first finds the tenant and then reads its rows (the
    /// owner of a called number, then that customer): runs `resolve` WITHOUT tenant context
    /// (platform tables and SECURITY DEFINER functions only, as in [`Db::service_tx`]); when it
    /// names a tenant, sets that tenant transaction-locally and runs `f` under it, exactly as
    /// [`Db::tenant_tx`] would. `Ok(None)` when `resolve` finds nobody. Saves the second
    /// checkout, reset and transaction of doing the two steps separately.
    pub async fn resolve_then_tenant_tx<T, E, R, F>(
        &self,
        resolve: R,
        f: F,
    ) -> Result<Option<(CustomerId, T)>, E>
    where
        R: AsyncFnOnce(&Tx<'_>) -> Result<Option<CustomerId>, E>,
        F: AsyncFnOnce(&Tx<'_>, CustomerId) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut conn = self.checkout().await?;
        let tx = Tx::begin(&mut conn).await?;
        finish(tx, async |tx| {
            let Some(customer) = with_prelude(tx, None, resolve).await? else {
                return Ok(None);
            };
            let value = futures::future::try_join(
                async { set_tenant(tx, customer).await.map_err(E::from) },
                f(tx, customer),
            )
            .await?
            .1;
            Ok(Some((customer, value)))
        })
        .await
    }

    /// Runs `f` in a transaction WITHOUT tenant context: for platform-wide tables that have no
    /// `customer_id` and for SECURITY DEFINER functions. Tenant tables fail closed here (their
    /// policies raise "no tenant context").
    pub async fn service_tx<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
        E: From<DbError>,
    {
        let mut conn = self.checkout().await?;
        let tx = Tx::begin(&mut conn).await?;
        finish(tx, async |tx| with_prelude(tx, None, f).await).await
    }

    /// Opens a dedicated connection (same settings as the pool, outside it) that `LISTEN`s on
    /// `channels`, and returns the notifications it receives. The receiver yields `None` once the
    /// connection is gone (server restart, network): the caller must then assume it missed
    /// notifications and listen again. Channel names are identifiers chosen by the code, never
    /// by a client (they are quoted, not bound).
    pub async fn listen(&self, channels: &[&str]) -> Result<Notifications, DbError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        // At most this many notifications wait for the consumer; past it the listener reports an
        // overflow (`Notice::Overflow`) instead of growing without bound.
        const BACKLOG: usize = 1024;
        let (tx, rx) = tokio::sync::mpsc::channel(BACKLOG);
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                let notice = match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => Notice::Notification {
                        channel: n.channel().to_owned(),
                        payload: n.payload().to_owned(),
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %DbError::from(e), "listening database connection failed");
                        break;
                    }
                };
                match tx.try_send(notice) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                        // The consumer is behind: it is told once and must treat everything as
                        // changed; the connection ends so that it listens afresh.
                        let _ = tx.send(Notice::Overflow).await;
                        break;
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
        let listen: String = channels
            .iter()
            .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
            .collect();
        if let Err(e) = client.batch_execute(&listen).await {
            task.abort();
            return Err(e.into());
        }
        Ok(Notifications {
            rx,
            _client: client,
            task,
        })
    }

    /// Readiness: a connection can be checked out and answers `SELECT 1`.
    pub async fn ping(&self) -> Result<(), DbError> {
        let conn = self.checkout().await?;
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Start-up self-check: refuses when the connected role is a superuser, has BYPASSRLS, is a
    /// member of such a role, or owns (directly or through membership) any table, partitioned
    /// table, view, materialized view or foreign table outside the system schemas. Each of these
    /// would let the service bypass row-level security. Services call this before serving.
    pub async fn self_check(&self) -> Result<(), DbError> {
        let conn = self.checkout().await?;
        let me = conn
            .query_one(
                "SELECT r.rolname::text, r.rolsuper, r.rolbypassrls \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
                &[],
            )
            .await?;
        let role: String = me.get(0);
        if me.get::<_, bool>(1) {
            return Err(DbError::Superuser { role });
        }
        if me.get::<_, bool>(2) {
            return Err(DbError::BypassRls { role });
        }

        let granted: Vec<String> = conn
            .query(
                "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
                 WHERE r.rolname <> current_user AND (r.rolsuper OR r.rolbypassrls) \
                   AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') \
                 ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if !granted.is_empty() {
            return Err(DbError::PrivilegedMembership { role, granted });
        }

        let owned = conn
            .query(
                "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), count(*) OVER () \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                   AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_' \
                   AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER') \
                 ORDER BY 1 LIMIT 10",
                &[],
            )
            .await?;
        if let Some(first) = owned.first() {
            return Err(DbError::OwnsTables {
                role,
                count: first.get(1),
                examples: owned.iter().map(|row| row.get(0)).collect(),
            });
        }
        Ok(())
    }

    /// Test-only: a bare pooled connection, to inspect what a checkout
    /// looks like. Never use it for tenant data.
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub async fn raw_connection_for_tests(&self) -> Result<Object, DbError> {
        self.checkout().await
    }
}

/// What a [`Notifications`] stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A `NOTIFY` on one of the channels.
    Notification {
        /// The channel.
        channel: String,
        /// The payload (may be empty).
        payload: String,
    },
    /// Notifications arrived faster than they were taken: some were dropped. The stream ends
    /// right after this.
    Overflow,
}

/// Notifications from [`Db::listen`]. Dropping it closes the connection.
pub struct Notifications {
    rx: tokio::sync::mpsc::Receiver<Notice>,
    /// Kept alive: dropping the client would end the session and its LISTENs.
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Notifications {
    /// The next notification; `None` once the connection is gone (notifications may have been
    /// missed: listen again and treat everything as changed).
    pub async fn recv(&mut self) -> Option<Notice> {
        self.rx.recv().await
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for Notifications {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

/// Most distinct statements one connection keeps prepared. The services' SQL is fixed text (at
/// most a few variants per query), so this is never reached in practice; past it, statements are
/// prepared per use rather than growing the cache without bound.
const STATEMENT_CACHE_LIMIT: usize = 512;

/// An open transaction on a pooled connection, handed to the closures of [`Db::tenant_tx`],
/// [`Db::resolve_then_tenant_tx`] and [`Db::service_tx`].
///
/// It dereferences to [`tokio_postgres::Transaction`], and its `query`, `query_one`,
/// `query_opt`, `execute` and `query_typed` take SQL text like tokio-postgres' do but run it as a
/// named prepared statement kept per pooled connection (deadpool-postgres' statement cache):
/// PostgreSQL parses and plans each statement once per connection instead of on every call
/// (for a plain query that is also a round trip saved: tokio-postgres prepares an unnamed
/// statement before running `&str` SQL). Cached statements survive the session reset of every
/// transaction (it does not `DEALLOCATE`); PostgreSQL re-plans them itself after DDL.
pub struct Tx<'a> {
    inner: deadpool_postgres::Transaction<'a>,
}

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = tokio_postgres::Transaction<'a>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("cached_statements", &self.inner.statement_cache.size())
            .finish()
    }
}

impl<'a> Tx<'a> {
    async fn begin(conn: &'a mut Object) -> Result<Tx<'a>, DbError> {
        Ok(Tx {
            inner: conn.transaction().await?,
        })
    }

    async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.inner.commit().await
    }

    async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.inner.rollback().await
    }

    /// The prepared statement for `sql` (parameter types inferred by PostgreSQL), from this
    /// connection's cache or prepared now and cached.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        self.prepare_typed_cached(sql, &[]).await
    }

    /// The prepared statement for `sql` with these parameter types (`Type::UNKNOWN` or missing
    /// trailing entries: inferred), from this connection's cache or prepared now and cached.
    pub async fn prepare_typed_cached(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        let cache = &self.inner.statement_cache;
        if cache.size() >= STATEMENT_CACHE_LIMIT {
            return self.inner.prepare_typed(sql, types).await;
        }
        self.inner.prepare_typed_cached(sql, types).await
    }

    /// Runs `sql` (a cached prepared statement) and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.inner.query(&statement, params).await
    }

    /// Runs `sql` (a cached prepared statement) and returns its one row, or an error when it
    /// returns none or several.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.inner.query_one(&statement, params).await
    }

    /// Runs `sql` (a cached prepared statement) and returns its row if there is one (an error
    /// when there are several).
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.inner.query_opt(&statement, params).await
    }

    /// Runs `sql` (a cached prepared statement) and returns the number of rows it affected.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.inner.execute(&statement, params).await
    }

    /// Like [`tokio_postgres::Transaction::query_typed`] (parameters with their types), but run
    /// as a cached prepared statement of those types.
    ///
    /// Pipelining is kept: like tokio-postgres' `query_typed`, the statement is queued when the
    /// future is first polled, so statements polled together (`try_join!`) still run in the order
    /// they were first polled. On a cache miss this call runs as an unnamed statement, queued
    /// right behind the `Parse` of the statement being cached for next time, instead of waiting
    /// a round trip for the prepare (which would let later statements overtake it).
    pub async fn query_typed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
        let prepare = self.prepare_typed_cached(sql, &types);
        let mut prepare = std::pin::pin!(prepare);
        match futures::poll!(prepare.as_mut()) {
            std::task::Poll::Ready(statement) => {
                let statement = statement?;
                let values: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|(value, _)| *value).collect();
                self.inner.query(&statement, &values).await
            }
            std::task::Poll::Pending => {
                let (prepared, rows) =
                    futures::future::join(prepare, self.inner.query_typed(sql, params)).await;
                match (prepared, rows) {
                    // The prepare's error came first (the unnamed run then only reports the
                    // aborted transaction).
                    (Err(e), Err(_)) => Err(e),
                    (_, rows) => rows,
                }
            }
        }
    }
}

/// Sets the transaction-local tenant: the only place `app.customer_id` is written.
async fn set_tenant(tx: &Tx<'_>, customer: CustomerId) -> Result<(), DbError> {
    let tenant = customer.get().to_string();
    tx.query_typed(
        "SELECT pg_catalog.set_config('app.customer_id', $1, true)",
        &[(&tenant, Type::TEXT)],
    )
    .await?;
    Ok(())
}

/// Runs the closure inside `tx`; commits on `Ok`, rolls back on `Err`.
async fn finish<T, E, F>(tx: Tx<'_>, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&Tx<'_>) -> Result<T, E>,
    E: From<DbError>,
{
    match f(&tx).await {
        Ok(value) => {
            tx.commit().await.map_err(DbError::from)?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %DbError::from(rollback), "rollback failed");
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://svc:s3cret@db:5432/app"),
            "postgres://svc:***@db:5432/app"
        );
        assert_eq!(
            redact_url("postgres://svc@db:5432/app"),
            "postgres://svc@db:5432/app"
        );
        assert!(!redact_url("host=db user=svc password=s3cret").contains("s3cret"));
        assert!(!format!("{:?}", DbConfig::new("postgres://a:pw@h/d")).contains("pw@"));
    }
}
