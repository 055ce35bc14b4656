//! V16's portal accounts: `tenant.users`, `tenant.invitations`, `tenant.sessions`,
//! `tenant.signin_failures`, `tenant.signin_address_failures` and `tenant.password_resets`.
//!
//! The four lookups made before a tenant is known (by e-mail hash, invitation token, reset token,
//! session secret) go through V16's SECURITY DEFINER functions, which return ids only, in a
//! transaction without tenant context; everything else is read and written inside the tenant's
//! own transaction, under its row-level security. Secrets are stored as SHA-256 only; durations
//! are passed in seconds and added to the database's clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;
use tokio_postgres::Row;

use crate::account::Role;
use crate::error::Result;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The account hash key V16 generated (used when `TENANT_ACCOUNT_HASH_KEY` is unset).
pub async fn account_hash_key(tx: &Tx<'_>) -> Result<Vec<u8>> {
    Ok(tx
        .query_one("SELECT key FROM tenant.account_hash_key", &[])
        .await?
        .get(0))
}

/// Every (customer, user) whose e-mail has this hash (definer function; no tenant context).
pub async fn users_by_email_hash(tx: &Tx<'_>, hash: &[u8]) -> Result<Vec<(CustomerId, i64)>> {
    Ok(tx
        .query(
            "SELECT customer_id, user_id FROM tenant.user_ids_by_email_hash($1)",
            &[&hash],
        )
        .await?
        .iter()
        .filter_map(|r| Some((r.try_get::<_, CustomerId>(0).ok()?, r.get(1))))
        .collect())
}

/// The invitation with this token hash (definer function; no tenant context).
pub async fn invitation_by_token_hash(
    tx: &Tx<'_>,
    hash: &[u8],
) -> Result<Option<(CustomerId, i64)>> {
    one_id(
        tx,
        "SELECT customer_id, invitation_id FROM tenant.invitation_id_by_token_hash($1)",
        hash,
    )
    .await
}

/// The password reset with this token hash (definer function; no tenant context).
pub async fn reset_by_token_hash(tx: &Tx<'_>, hash: &[u8]) -> Result<Option<(CustomerId, i64)>> {
    one_id(
        tx,
        "SELECT customer_id, reset_id FROM tenant.password_reset_id_by_token_hash($1)",
        hash,
    )
    .await
}

/// The session with this secret hash (definer function; no tenant context).
pub async fn session_by_secret_hash(tx: &Tx<'_>, hash: &[u8]) -> Result<Option<(CustomerId, i64)>> {
    one_id(
        tx,
        "SELECT customer_id, session_id FROM tenant.session_id_by_secret_hash($1)",
        hash,
    )
    .await
}

async fn one_id(tx: &Tx<'_>, sql: &str, hash: &[u8]) -> Result<Option<(CustomerId, i64)>> {
    let rows = tx.query(sql, &[&hash]).await?;
    Ok(rows
        .first()
        .and_then(|r| Some((r.try_get::<_, CustomerId>(0).ok()?, r.get(1)))))
}

/// A portal user as the handlers need them.
#[derive(Debug, Clone)]
pub struct User {
    /// Id within the customer.
    pub id: i64,
    /// Their (normalised) e-mail address.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Whether the user may no longer sign in.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

const USER_COLUMNS: &str = "id, email, role, password_hash, disabled_at IS NOT NULL, created_at";

fn user(r: &Row) -> User {
    User {
        id: r.get(0),
        email: r.get(1),
        role: Role::from_db(r.get(2)),
        password_hash: r.get(3),
        disabled: r.get(4),
        created_at: r.get(5),
    }
}

/// The current tenant's user `user_id`.
pub async fn get_user(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<Option<User>> {
    Ok(tx
        .query_opt(
            &format!("SELECT {USER_COLUMNS} FROM tenant.users WHERE customer_id = $1 AND id = $2"),
            &[&id, &user_id],
        )
        .await?
        .as_ref()
        .map(user))
}

/// The current tenant's users, oldest first.
pub async fn list_users(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<User>> {
    Ok(tx
        .query(
            &format!("SELECT {USER_COLUMNS} FROM tenant.users WHERE customer_id = $1 ORDER BY id"),
            &[&id],
        )
        .await?
        .iter()
        .map(user)
        .collect())
}

/// Whether the current tenant has a user with this e-mail hash.
pub async fn user_exists(tx: &Tx<'_>, id: CustomerId, email_hash: &[u8]) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM tenant.users WHERE customer_id = $1 AND email_hash = $2",
            &[&id, &email_hash],
        )
        .await?
        .is_some())
}

/// Creates a user; returns their id. An e-mail the tenant already has is a unique violation.
pub async fn insert_user(
    tx: &Tx<'_>,
    id: CustomerId,
    email_hash: &[u8],
    email: &str,
    role: Role,
    password_hash: &str,
) -> Result<i64> {
    Ok(tx
        .query_one(
            "INSERT INTO tenant.users (customer_id, email_hash, email, role, password_hash) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[&id, &email_hash, &email, &role.as_str(), &password_hash],
        )
        .await?
        .get(0))
}

/// Replaces a user's password hash.
pub async fn set_password(tx: &Tx<'_>, id: CustomerId, user_id: i64, hash: &str) -> Result<()> {
    tx.execute(
        "UPDATE tenant.users SET password_hash = $3, password_changed_at = now() \
         WHERE customer_id = $1 AND id = $2",
        &[&id, &user_id, &hash],
    )
    .await?;
    Ok(())
}

/// Changes a user's role; whether the user exists.
pub async fn set_role(tx: &Tx<'_>, id: CustomerId, user_id: i64, role: Role) -> Result<bool> {
    Ok(tx
        .execute(
            "UPDATE tenant.users SET role = $3 WHERE customer_id = $1 AND id = $2",
            &[&id, &user_id, &role.as_str()],
        )
        .await?
        == 1)
}

/// Deletes a user (their sessions, failures and resets go with them); whether they existed.
pub async fn delete_user(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<bool> {
    Ok(tx
        .execute(
            "DELETE FROM tenant.users WHERE customer_id = $1 AND id = $2",
            &[&id, &user_id],
        )
        .await?
        == 1)
}

/// The current tenant's owners, locked until the transaction ends (so two concurrent removals
/// cannot each leave the other as the last owner and then remove them).
pub async fn lock_owner_ids(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<i64>> {
    Ok(tx
        .query(
            "SELECT id FROM tenant.users WHERE customer_id = $1 AND role = 'owner' \
             AND disabled_at IS NULL ORDER BY id FOR UPDATE",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Invitations
// ---------------------------------------------------------------------------------------------

/// An invitation.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// Its id.
    pub id: i64,
    /// The invited address (normalised).
    pub email: String,
    /// The role the user will have.
    pub role: Role,
    /// Who created it (`user:<id>`, `service:<issuer>`).
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// When it was accepted.
    pub used_at: Option<DateTime<Utc>>,
    /// Whether it is unused and unexpired.
    pub open: bool,
}

const INVITATION_COLUMNS: &str = "id, email, role, created_by, created_at, expires_at, used_at, (used_at IS NULL AND expires_at > now())";

fn invitation(r: &Row) -> Invitation {
    Invitation {
        id: r.get(0),
        email: r.get(1),
        role: Role::from_db(r.get(2)),
        created_by: r.get(3),
        created_at: r.get(4),
        expires_at: r.get(5),
        used_at: r.get(6),
        open: r.get(7),
    }
}

/// Creates an invitation; returns its id and expiry.
#[allow(clippy::too_many_arguments)]
pub async fn insert_invitation(
    tx: &Tx<'_>,
    id: CustomerId,
    token_hash: &[u8],
    email_hash: &[u8],
    email: &str,
    role: Role,
    created_by: &str,
    ttl: Duration,
) -> Result<(i64, DateTime<Utc>)> {
    let r = tx
        .query_one(
            "INSERT INTO tenant.invitations \
             (customer_id, token_hash, email_hash, email, role, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + $7::float8 * interval '1 second') \
             RETURNING id, expires_at",
            &[
                &id,
                &token_hash,
                &email_hash,
                &email,
                &role.as_str(),
                &created_by,
                &secs(ttl),
            ],
        )
        .await?;
    Ok((r.get(0), r.get(1)))
}

/// The current tenant's invitation `inv`, locked for update when `lock`.
pub async fn get_invitation(
    tx: &Tx<'_>,
    id: CustomerId,
    inv: i64,
    lock: bool,
) -> Result<Option<Invitation>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {INVITATION_COLUMNS} FROM tenant.invitations \
                 WHERE customer_id = $1 AND id = $2{lock}"
            ),
            &[&id, &inv],
        )
        .await?
        .as_ref()
        .map(invitation))
}

/// The current tenant's open (unused, unexpired) invitations, newest first.
pub async fn list_open_invitations(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<Invitation>> {
    Ok(tx
        .query(
            &format!(
                "SELECT {INVITATION_COLUMNS} FROM tenant.invitations \
                 WHERE customer_id = $1 AND used_at IS NULL AND expires_at > now() \
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&id],
        )
        .await?
        .iter()
        .map(invitation)
        .collect())
}

/// Marks an invitation used (by `user_id`, or by nobody when revoked).
pub async fn use_invitation(
    tx: &Tx<'_>,
    id: CustomerId,
    inv: i64,
    user_id: Option<i64>,
) -> Result<bool> {
    Ok(tx
        .execute(
            "UPDATE tenant.invitations SET used_at = now(), user_id = $3 \
             WHERE customer_id = $1 AND id = $2 AND used_at IS NULL",
            &[&id, &inv, &user_id],
        )
        .await?
        == 1)
}

/// Ends an open invitation (it can no longer be accepted); whether there was one.
pub async fn revoke_invitation(tx: &Tx<'_>, id: CustomerId, inv: i64) -> Result<bool> {
    Ok(tx
        .execute(
            "UPDATE tenant.invitations SET used_at = now() \
             WHERE customer_id = $1 AND id = $2 AND used_at IS NULL AND expires_at > now()",
            &[&id, &inv],
        )
        .await?
        == 1)
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// A session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its id.
    pub id: i64,
    /// Its user.
    pub user_id: i64,
    /// Browser summary.
    pub user_agent: String,
    /// Sign-in time.
    pub created_at: DateTime<Utc>,
    /// Last use.
    pub last_seen_at: DateTime<Utc>,
    /// When it ends unused.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
}

const SESSION_COLUMNS: &str =
    "id, user_id, user_agent, created_at, last_seen_at, idle_expires_at, expires_at";

/// A session that is neither revoked nor expired.
const OPEN: &str = "revoked_at IS NULL AND idle_expires_at > now() AND expires_at > now()";

fn session(r: &Row) -> Session {
    Session {
        id: r.get(0),
        user_id: r.get(1),
        user_agent: r.get(2),
        created_at: r.get(3),
        last_seen_at: r.get(4),
        idle_expires_at: r.get(5),
        expires_at: r.get(6),
    }
}

/// Creates a session for `user_id`.
pub async fn insert_session(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
    secret_hash: &[u8],
    user_agent: &str,
    idle: Duration,
    max: Duration,
) -> Result<Session> {
    let r = tx
        .query_one(
            &format!(
                "INSERT INTO tenant.sessions \
                 (customer_id, user_id, secret_hash, user_agent, idle_expires_at, expires_at) \
                 VALUES ($1, $2, $3, $4, now() + least($5::float8, $6::float8) * interval '1 second', \
                         now() + $6::float8 * interval '1 second') \
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[&id, &user_id, &secret_hash, &user_agent, &secs(idle), &secs(max)],
        )
        .await?;
    Ok(session(&r))
}

/// The current tenant's open session `sid`.
pub async fn open_session(tx: &Tx<'_>, id: CustomerId, sid: i64) -> Result<Option<Session>> {
    Ok(tx
        .query_opt(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM tenant.sessions \
                 WHERE customer_id = $1 AND id = $2 AND {OPEN}"
            ),
            &[&id, &sid],
        )
        .await?
        .as_ref()
        .map(session))
}

/// Marks an open session used now and moves its idle expiry on (never past its absolute
/// expiry); `None` when it is not open.
pub async fn touch_session(
    tx: &Tx<'_>,
    id: CustomerId,
    sid: i64,
    idle: Duration,
) -> Result<Option<Session>> {
    Ok(tx
        .query_opt(
            &format!(
                "UPDATE tenant.sessions SET last_seen_at = now(), \
                 idle_expires_at = least(now() + $3::float8 * interval '1 second', expires_at) \
                 WHERE customer_id = $1 AND id = $2 AND {OPEN} \
                 RETURNING {SESSION_COLUMNS}"
            ),
            &[&id, &sid, &secs(idle)],
        )
        .await?
        .as_ref()
        .map(session))
}

/// The open sessions of a user, newest first.
pub async fn list_sessions(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<Vec<Session>> {
    Ok(tx
        .query(
            &format!(
                "SELECT {SESSION_COLUMNS} FROM tenant.sessions \
                 WHERE customer_id = $1 AND user_id = $2 AND {OPEN} \
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&id, &user_id],
        )
        .await?
        .iter()
        .map(session)
        .collect())
}

/// Ends a session if it is open; whether it was.
pub async fn revoke_session(tx: &Tx<'_>, id: CustomerId, sid: i64) -> Result<bool> {
    Ok(tx
        .execute(
            &format!(
                "UPDATE tenant.sessions SET revoked_at = now() \
                 WHERE customer_id = $1 AND id = $2 AND {OPEN}"
            ),
            &[&id, &sid],
        )
        .await?
        == 1)
}

/// Ends one open session of `user_id`; whether it had that one.
pub async fn revoke_user_session(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
    sid: i64,
) -> Result<bool> {
    Ok(tx
        .execute(
            &format!(
                "UPDATE tenant.sessions SET revoked_at = now() \
                 WHERE customer_id = $1 AND user_id = $2 AND id = $3 AND {OPEN}"
            ),
            &[&id, &user_id, &sid],
        )
        .await?
        == 1)
}

/// Ends every open session of `user_id` except `keep`; how many it ended.
pub async fn revoke_user_sessions(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
    keep: Option<i64>,
) -> Result<u64> {
    Ok(tx
        .execute(
            &format!(
                "UPDATE tenant.sessions SET revoked_at = now() \
                 WHERE customer_id = $1 AND user_id = $2 AND id IS DISTINCT FROM $3 AND {OPEN}"
            ),
            &[&id, &user_id, &keep],
        )
        .await?)
}

// ---------------------------------------------------------------------------------------------
// Throttles
// ---------------------------------------------------------------------------------------------

/// Failures in the last `window` (and when the oldest of them was, in seconds ago).
#[derive(Debug, Clone, Copy, Default)]
pub struct Failures {
    /// How many.
    pub count: i64,
    /// Seconds since the oldest of them.
    pub oldest_age_secs: f64,
}

impl Failures {
    /// When at least `max`: the seconds until the oldest leaves the window.
    pub fn retry_after(&self, max: i64, window: Duration) -> Option<u64> {
        (self.count >= max).then(|| {
            let left = window.as_secs_f64() - self.oldest_age_secs;
            left.ceil().max(1.0) as u64
        })
    }
}

fn failures(r: &Row) -> Failures {
    Failures {
        count: r.get(0),
        oldest_age_secs: r.get::<_, Option<f64>>(1).unwrap_or(0.0),
    }
}

/// The failed sign-ins of a user in the last `window`.
pub async fn user_failures(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
    window: Duration,
) -> Result<Failures> {
    Ok(failures(
        &tx.query_one(
            "SELECT count(*), extract(epoch FROM now() - min(at))::float8 FROM tenant.signin_failures \
             WHERE customer_id = $1 AND user_id = $2 AND at > now() - $3::float8 * interval '1 second'",
            &[&id, &user_id, &secs(window)],
        )
        .await?,
    ))
}

/// Records a failed sign-in of a user.
pub async fn record_user_failure(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.signin_failures (customer_id, user_id) VALUES ($1, $2)",
        &[&id, &user_id],
    )
    .await?;
    Ok(())
}

/// The failed sign-ins from a client address (its keyed hash) in the last `window`.
pub async fn address_failures(tx: &Tx<'_>, hash: &[u8], window: Duration) -> Result<Failures> {
    Ok(failures(
        &tx.query_one(
            "SELECT count(*), extract(epoch FROM now() - min(at))::float8 \
             FROM tenant.signin_address_failures \
             WHERE address_hash = $1 AND at > now() - $2::float8 * interval '1 second'",
            &[&hash, &secs(window)],
        )
        .await?,
    ))
}

/// Records a failed sign-in from a client address, and forgets those older than a day (the
/// table has no tenant and would otherwise only grow).
pub async fn record_address_failure(tx: &Tx<'_>, hash: &[u8]) -> Result<()> {
    tx.execute(
        "INSERT INTO tenant.signin_address_failures (address_hash) VALUES ($1)",
        &[&hash],
    )
    .await?;
    tx.execute(
        "DELETE FROM tenant.signin_address_failures WHERE at < now() - interval '1 day'",
        &[],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Password resets
// ---------------------------------------------------------------------------------------------

/// Seconds since the user's newest reset, if any.
pub async fn last_reset_age(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<Option<f64>> {
    Ok(tx
        .query_one(
            "SELECT extract(epoch FROM now() - max(created_at))::float8 FROM tenant.password_resets \
             WHERE customer_id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?
        .get(0))
}

/// Creates a reset; returns its expiry.
pub async fn insert_reset(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
    token_hash: &[u8],
    ttl: Duration,
) -> Result<DateTime<Utc>> {
    Ok(tx
        .query_one(
            "INSERT INTO tenant.password_resets (customer_id, user_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, now() + $4::float8 * interval '1 second') RETURNING expires_at",
            &[&id, &user_id, &token_hash, &secs(ttl)],
        )
        .await?
        .get(0))
}

/// Uses an open (unused, unexpired) reset: marks it and every other open reset of the same
/// user used; returns the user, or `None` when the reset is not open.
pub async fn use_reset(tx: &Tx<'_>, id: CustomerId, reset: i64) -> Result<Option<i64>> {
    let Some(row) = tx
        .query_opt(
            "SELECT user_id FROM tenant.password_resets WHERE customer_id = $1 AND id = $2 \
             AND used_at IS NULL AND expires_at > now() FOR UPDATE",
            &[&id, &reset],
        )
        .await?
    else {
        return Ok(None);
    };
    let user_id: i64 = row.get(0);
    tx.execute(
        "UPDATE tenant.password_resets SET used_at = now() \
         WHERE customer_id = $1 AND user_id = $2 AND used_at IS NULL",
        &[&id, &user_id],
    )
    .await?;
    Ok(Some(user_id))
}

/// Ends the current tenant's open invitations of this e-mail hash (a new one replaces them);
/// how many.
pub async fn revoke_invitations_of(tx: &Tx<'_>, id: CustomerId, email_hash: &[u8]) -> Result<u64> {
    Ok(tx
        .execute(
            "UPDATE tenant.invitations SET used_at = now() \
             WHERE customer_id = $1 AND email_hash = $2 AND used_at IS NULL AND expires_at > now()",
            &[&id, &email_hash],
        )
        .await?)
}

/// Each of the current tenant's users with their latest sign-in (their newest session), owners
/// first, then by e-mail address.
pub async fn list_team(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<(User, Option<DateTime<Utc>>)>> {
    Ok(tx
        .query(
            "SELECT u.id, u.email, u.role, u.password_hash, u.disabled_at IS NOT NULL, u.created_at, \
                    (SELECT max(s.created_at) FROM tenant.sessions s \
                     WHERE s.customer_id = u.customer_id AND s.user_id = u.id) \
             FROM tenant.users u WHERE u.customer_id = $1 \
             ORDER BY u.role = 'owner' DESC, u.email, u.id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| (user(r), r.get(6)))
        .collect())
}

/// The latest sign-in of a user.
pub async fn last_sign_in(
    tx: &Tx<'_>,
    id: CustomerId,
    user_id: i64,
) -> Result<Option<DateTime<Utc>>> {
    Ok(tx
        .query_one(
            "SELECT max(created_at) FROM tenant.sessions WHERE customer_id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?
        .get(0))
}

/// Forgets a user's failed sign-ins (after a password reset: whoever was guessing the old
/// password no longer keeps the owner of the address out).
pub async fn clear_user_failures(tx: &Tx<'_>, id: CustomerId, user_id: i64) -> Result<()> {
    tx.execute(
        "DELETE FROM tenant.signin_failures WHERE customer_id = $1 AND user_id = $2",
        &[&id, &user_id],
    )
    .await?;
    Ok(())
}
