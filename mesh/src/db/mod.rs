//! Tenant-scoped database access: a deadpool-postgres pool logged in as the service's own role, and
//! [`Db::tenant_tx`], the one way to touch tenant data.
//!
//! The parts: `config` ([`DbConfig`]), `pool` ([`Db`] and its transactions), `tx` ([`Tx`], the
//! cached-statement transaction closures get), `error` ([`DbError`] and its status code),
//! `notify` ([`Db::listen`]) and `check` ([`Db::self_check`], the start-up role check).
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

mod check;
mod config;
mod error;
mod notify;
mod pool;
mod tx;

pub use config::DbConfig;
pub use error::DbError;
pub use notify::{Notice, Notifications};
pub use pool::Db;
pub use tx::Tx;
