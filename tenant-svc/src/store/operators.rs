//! V28's operator accounts: `tenant.operators`, `tenant.operator_sessions` and
//! `tenant.operator_signin_failures`. Platform data (no customer, no row-level security), read and
//! written in transactions without tenant context (`Db::service_tx`); only tenant-svc's role has
//! grants on them. Secrets are stored as SHA-256 (sessions) or sealed (TOTP); durations are passed
//! in seconds and added to the database's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use tokio_postgres::Row;

use crate::error::Result;
use crate::store::accounts::Failures;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An operator account.
#[derive(Debug, Clone)]
pub struct OperatorRow {
    /// Its id.
    pub id: i64,
    /// Their address (their own, for display).
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// The sealed TOTP secret.
    pub totp_sealed: Vec<u8>,
    /// The last time step accepted.
    pub totp_last_step: i64,
    /// Whether the operator was disabled.
    pub disabled: bool,
}

const OPERATOR_COLUMNS: &str =
    "id, email, password_hash, totp_sealed, totp_last_step, disabled_at IS NOT NULL";

fn operator(r: &Row) -> OperatorRow {
    OperatorRow {
        id: r.get(0),
        email: r.get(1),
        password_hash: r.get(2),
        totp_sealed: r.get(3),
        totp_last_step: r.get(4),
        disabled: r.get(5),
    }
}

/// The operator with this e-mail hash.
pub async fn by_email_hash(tx: &Tx<'_>, hash: &[u8]) -> Result<Option<OperatorRow>> {
    Ok(tx
        .query_opt(
            &format!("SELECT {OPERATOR_COLUMNS} FROM tenant.operators WHERE email_hash = $1"),
            &[&hash],
        )
        .await?
        .as_ref()
        .map(operator))
}

/// The operator `id`.
pub async fn get(tx: &Tx<'_>, id: i64) -> Result<Option<OperatorRow>> {
    Ok(tx
        .query_opt(
            &format!("SELECT {OPERATOR_COLUMNS} FROM tenant.operators WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(operator))
}

/// Creates an operator; its id.
pub async fn insert(
    tx: &Tx<'_>,
    email_hash: &[u8],
    email: &str,
    password_hash: &str,
    totp_sealed: &[u8],
    created_by: &str,
) -> Result<i64> {
    Ok(tx
        .query_one(
            "INSERT INTO tenant.operators \
             (email_hash, email, password_hash, totp_sealed, created_by) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &email_hash,
                &email,
                &password_hash,
                &totp_sealed,
                &created_by,
            ],
        )
        .await?
        .get(0))
}

/// Records `step` as the operator's last accepted TOTP step if it is later than the one stored;
/// whether it was (false: the code was used already, or a later one was).
pub async fn accept_step(tx: &Tx<'_>, id: i64, step: i64) -> Result<bool> {
    Ok(tx
        .execute(
            "UPDATE tenant.operators SET totp_last_step = $2 \
             WHERE id = $1 AND totp_last_step < $2 AND disabled_at IS NULL",
            &[&id, &step],
        )
        .await?
        == 1)
}

/// Disables the operator with this e-mail hash and ends their sessions; `None` for an unknown
/// address, else how many sessions ended.
pub async fn disable(tx: &Tx<'_>, email_hash: &[u8]) -> Result<Option<(i64, u64)>> {
    let Some(r) = tx
        .query_opt(
            "UPDATE tenant.operators SET disabled_at = coalesce(disabled_at, now()) \
             WHERE email_hash = $1 RETURNING id",
            &[&email_hash],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: i64 = r.get(0);
    let ended = tx
        .execute(
            &format!(
                "UPDATE tenant.operator_sessions SET revoked_at = now() \
                 WHERE operator_id = $1 AND {OPEN}"
            ),
            &[&id],
        )
        .await?;
    Ok(Some((id, ended)))
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// An open operator session.
#[derive(Debug, Clone)]
pub struct OperatorSessionRow {
    /// Its id.
    pub id: i64,
    /// Its operator.
    pub operator_id: i64,
    /// When it ends unused.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
}

const SESSION_COLUMNS: &str = "id, operator_id, idle_expires_at, expires_at";

/// A session that is neither revoked nor expired.
const OPEN: &str = "revoked_at IS NULL AND idle_expires_at > now() AND expires_at > now()";

fn session(r: &Row) -> OperatorSessionRow {
    OperatorSessionRow {
        id: r.get(0),
        operator_id: r.get(1),
        idle_expires_at: r.get(2),
        expires_at: r.get(3),
    }
}

/// Creates a session for `operator_id`.
pub async fn insert_session(
    tx: &Tx<'_>,
    operator_id: i64,
    secret_hash: &[u8],
    user_agent: &str,
    idle: Duration,
    max: Duration,
) -> Result<OperatorSessionRow> {
    let r = tx
        .query_one(
            &format!(
                "INSERT INTO tenant.operator_sessions \
                 (operator_id, secret_hash, user_agent, idle_expires_at, expires_at) \
                 VALUES ($1, $2, $3, now() + least($4::float8, $5::float8) * interval '1 second', \
                         now() + $5::float8 * interval '1 second') \
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[
                &operator_id,
                &secret_hash,
                &user_agent,
                &secs(idle),
                &secs(max),
            ],
        )
        .await?;
    Ok(session(&r))
}

/// The open session with this secret hash, of an operator who is not disabled, marked used now
/// with its idle expiry moved on (never past its absolute expiry); `None` otherwise.
pub async fn touch_session(
    tx: &Tx<'_>,
    secret_hash: &[u8],
    idle: Duration,
) -> Result<Option<OperatorSessionRow>> {
    Ok(tx
        .query_opt(
            &format!(
                "UPDATE tenant.operator_sessions s SET last_seen_at = now(), \
                 idle_expires_at = least(now() + $2::float8 * interval '1 second', expires_at) \
                 WHERE secret_hash = $1 AND {OPEN} AND EXISTS ( \
                     SELECT 1 FROM tenant.operators o \
                     WHERE o.id = s.operator_id AND o.disabled_at IS NULL) \
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[&secret_hash, &secs(idle)],
        )
        .await?
        .as_ref()
        .map(session))
}

/// Ends the session with this secret hash if it is open; its operator if it was.
pub async fn revoke_session(tx: &Tx<'_>, secret_hash: &[u8]) -> Result<Option<(i64, i64)>> {
    Ok(tx
        .query_opt(
            &format!(
                "UPDATE tenant.operator_sessions SET revoked_at = now() \
                 WHERE secret_hash = $1 AND {OPEN} RETURNING id, operator_id"
            ),
            &[&secret_hash],
        )
        .await?
        .map(|r| (r.get(0), r.get(1))))
}

// ---------------------------------------------------------------------------------------------
// The per-account throttle
// ---------------------------------------------------------------------------------------------

/// The failed sign-ins of an operator in the last `window`.
pub async fn failures(tx: &Tx<'_>, operator_id: i64, window: Duration) -> Result<Failures> {
    let r = tx
        .query_one(
            "SELECT count(*), extract(epoch FROM now() - min(at))::float8 \
             FROM tenant.operator_signin_failures \
             WHERE operator_id = $1 AND at > now() - $2::float8 * interval '1 second'",
            &[&operator_id, &secs(window)],
        )
        .await?;
    Ok(Failures {
        count: r.get(0),
        oldest_age_secs: r.get::<_, Option<f64>>(1).unwrap_or(0.0),
    })
}

/// Records a failed sign-in of an operator, and forgets those older than a day.
pub async fn record_failure(tx: &Tx<'_>, operator_id: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.operator_signin_failures (operator_id) VALUES ($1)",
        &[&operator_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM tenant.operator_signin_failures WHERE at < now() - interval '1 day'",
        &[],
    )
    .await?;
    Ok(())
}
