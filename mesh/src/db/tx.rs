//! [`Tx`]: the transaction a closure gets, running SQL text as prepared statements cached per
//! pooled connection and reporting [`DbError`], so call sites never convert errors by hand.

use std::fmt;

use deadpool_postgres::Object;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use super::DbError;

/// Most distinct statements one connection keeps prepared. The services' SQL is fixed text (at
/// most a few variants per query), so this is never reached in practice; past it, statements are
/// prepared per use rather than growing the cache without bound.
const STATEMENT_CACHE_LIMIT: usize = 512;

/// An open transaction on a pooled connection, handed to the closures of
/// [`Db::tenant_tx`](super::Db::tenant_tx),
/// [`Db::resolve_then_tenant_tx`](super::Db::resolve_then_tenant_tx) and
/// [`Db::service_tx`](super::Db::service_tx).
///
/// Its `query`, `query_one`, `query_opt`, `execute` and `query_typed` take SQL text like
/// tokio-postgres' do, return [`DbError`], and run the SQL as a named prepared statement kept per pooled connection (deadpool-postgres' statement cache):
/// PostgreSQL parses and plans each statement once per connection instead of on every call
/// (for a plain query that is also a round trip saved: tokio-postgres prepares an unnamed
/// statement before running `&str` SQL). Cached statements survive the session reset of every
/// transaction (it does not `DEALLOCATE`); PostgreSQL re-plans them itself after DDL. It wraps
/// rather than dereferences to [`tokio_postgres::Transaction`], so every method reports
/// [`DbError`] and no call site converts errors by hand.
pub struct Tx<'a> {
    inner: deadpool_postgres::Transaction<'a>,
}

impl fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("cached_statements", &self.inner.statement_cache.size())
            .finish()
    }
}

impl<'a> Tx<'a> {
    pub(super) async fn begin(conn: &'a mut Object) -> Result<Tx<'a>, DbError> {
        Ok(Tx {
            inner: conn.transaction().await?,
        })
    }

    pub(super) async fn commit(self) -> Result<(), DbError> {
        Ok(self.inner.commit().await?)
    }

    pub(super) async fn rollback(self) -> Result<(), DbError> {
        Ok(self.inner.rollback().await?)
    }

    /// Runs `sql` (one or more statements, no parameters) with the simple query protocol, e.g.
    /// `SAVEPOINT name`. Nothing is cached or returned.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.inner.batch_execute(sql).await?)
    }

    /// The prepared statement for `sql` (parameter types inferred by PostgreSQL), from this
    /// connection's cache or prepared now and cached.
    pub async fn prepare_cached(&self, sql: &str) -> Result<Statement, DbError> {
        self.prepare_typed_cached(sql, &[]).await
    }

    /// The prepared statement for `sql` with these parameter types (`Type::UNKNOWN` or missing
    /// trailing entries: inferred), from this connection's cache or prepared now and cached.
    pub async fn prepare_typed_cached(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, DbError> {
        let cache = &self.inner.statement_cache;
        if cache.size() >= STATEMENT_CACHE_LIMIT {
            return Ok(self.inner.prepare_typed(sql, types).await?);
        }
        Ok(self.inner.prepare_typed_cached(sql, types).await?)
    }

    /// Runs `sql` (a cached prepared statement) and returns its rows.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.inner.query(&statement, params).await?)
    }

    /// Runs `sql` (a cached prepared statement) and returns its one row, or an error when it
    /// returns none or several.
    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.inner.query_one(&statement, params).await?)
    }

    /// Runs `sql` (a cached prepared statement) and returns its row if there is one (an error
    /// when there are several).
    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.inner.query_opt(&statement, params).await?)
    }

    /// Runs `sql` (a cached prepared statement) and returns the number of rows it affected.
    pub async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.inner.execute(&statement, params).await?)
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
    ) -> Result<Vec<Row>, DbError> {
        let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
        let prepare = self.prepare_typed_cached(sql, &types);
        let mut prepare = std::pin::pin!(prepare);
        match futures::poll!(prepare.as_mut()) {
            std::task::Poll::Ready(statement) => {
                let statement = statement?;
                let values: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|(value, _)| *value).collect();
                Ok(self.inner.query(&statement, &values).await?)
            }
            std::task::Poll::Pending => {
                let (prepared, rows) =
                    futures::future::join(prepare, self.inner.query_typed(sql, params)).await;
                match (prepared, rows) {
                    // The prepare's error came first (the unnamed run then only reports the
                    // aborted transaction).
                    (Err(e), Err(_)) => Err(e),
                    (_, rows) => Ok(rows?),
                }
            }
        }
    }
}
