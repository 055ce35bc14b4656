//! [`Db`]: the pool of one service role, and the transactions it hands out (tenant, service, and
//! resolve-then-tenant), each opened with the session reset and, for a tenant, the
//! transaction-local tenant (see the module docs of [`crate::db`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::types::Type;

use super::{DbConfig, DbError, Tx};
use crate::domain::CustomerId;

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
    let prelude = async { tx.batch_execute(&sql).await.map_err(E::from) };
    let ((), value) = futures::future::try_join(prelude, f(tx)).await?;
    Ok(value)
}

/// A pool of connections for one service role. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// The pool's connection settings, for [`Db::listen`]'s dedicated connection.
    pub(super) config: std::sync::Arc<tokio_postgres::Config>,
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

    pub(super) async fn checkout(&self) -> Result<Object, DbError> {
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

    /// Readiness: a connection can be checked out and answers `SELECT 1`.
    pub async fn ping(&self) -> Result<(), DbError> {
        let conn = self.checkout().await?;
        conn.simple_query("SELECT 1").await?;
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
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}
