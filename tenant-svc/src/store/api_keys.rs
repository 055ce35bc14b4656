//! `tenant.api_keys` (V17): the API keys a tenant's owners create for their developers. Only the
//! SHA-256 of a secret is stored; the exchange finds a key by that hash through the SECURITY
//! DEFINER lookup (ids only) and reads the key itself inside the tenant's transaction.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::Result;

/// A key as stored (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// The key's id.
    pub id: Uuid,
    /// The owner's name for it.
    pub name: String,
    /// `nsk_` and the secret's last 4 characters.
    pub hint: String,
    /// Scopes of the tokens it exchanges for.
    pub scopes: Vec<String>,
    /// Lifetime of those tokens, in seconds.
    pub max_token_ttl_seconds: i32,
    /// Who created it (a token subject).
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// The last exchange (written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The columns [`ApiKeyRow::from_row`] reads, in order.
const COLUMNS: &str = "id, name, hint, scopes, max_token_ttl_seconds, created_by, created_at, \
                       last_used_at, revoked_at";

impl ApiKeyRow {
    fn from_row(r: &Row) -> ApiKeyRow {
        ApiKeyRow {
            id: r.get(0),
            name: r.get(1),
            hint: r.get(2),
            scopes: r.get(3),
            max_token_ttl_seconds: r.get(4),
            created_by: r.get(5),
            created_at: r.get(6),
            last_used_at: r.get(7),
            revoked_at: r.get(8),
        }
    }
}

/// What a new key is made of.
pub struct NewApiKey<'a> {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: &'a str,
    /// Its hint.
    pub hint: &'a str,
    /// SHA-256 of the secret.
    pub secret_hash: &'a [u8; 32],
    /// Its scopes.
    pub scopes: &'a [String],
    /// Token lifetime in seconds (60 to 3600).
    pub max_token_ttl_seconds: i32,
    /// Who creates it.
    pub created_by: &'a str,
}

/// Inserts a key for the current tenant. A unique violation (an active key of the same name)
/// is the caller's to map.
pub async fn insert_api_key(tx: &Tx<'_>, id: CustomerId, key: &NewApiKey<'_>) -> Result<ApiKeyRow> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO tenant.api_keys (customer_id, id, name, hint, secret_hash, scopes, \
                 max_token_ttl_seconds, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &key.id,
                &key.name,
                &key.hint,
                &key.secret_hash.as_slice(),
                &key.scopes,
                &key.max_token_ttl_seconds,
                &key.created_by,
            ],
        )
        .await?;
    Ok(ApiKeyRow::from_row(&row))
}

/// The current tenant's keys, newest first.
pub async fn list_api_keys(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<ApiKeyRow>> {
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenant.api_keys WHERE customer_id = $1 \
                 ORDER BY created_at DESC, id DESC"
            ),
            &[&id],
        )
        .await?;
    Ok(rows.iter().map(ApiKeyRow::from_row).collect())
}

/// How [`get_api_key`] locks the row it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// An exchange: `FOR KEY SHARE`, held while the token is minted. Exchanges do not block each
    /// other (nor their `last_used_at` writes), but a revocation waits for them, so its
    /// not-before second covers every token they mint.
    Exchange,
    /// A revocation: `FOR UPDATE`.
    Revoke,
}

/// One key of the current tenant, locked as `lock` says; `None` when the tenant has no such key.
pub async fn get_api_key(
    tx: &Tx<'_>,
    id: CustomerId,
    key: Uuid,
    lock: Lock,
) -> Result<Option<ApiKeyRow>> {
    let lock = match lock {
        Lock::Exchange => " FOR KEY SHARE",
        Lock::Revoke => " FOR UPDATE",
    };
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM tenant.api_keys WHERE customer_id = $1 AND id = $2{lock}"
            ),
            &[&id, &key],
        )
        .await?;
    Ok(row.as_ref().map(ApiKeyRow::from_row))
}

/// Revokes a key of the current tenant (now); returns the key after the change, or `None` when
/// it was already revoked (nothing changed) or does not exist.
pub async fn revoke_api_key(tx: &Tx<'_>, id: CustomerId, key: Uuid) -> Result<Option<ApiKeyRow>> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE tenant.api_keys SET revoked_at = now() \
                 WHERE customer_id = $1 AND id = $2 AND revoked_at IS NULL RETURNING {COLUMNS}"
            ),
            &[&id, &key],
        )
        .await?;
    Ok(row.as_ref().map(ApiKeyRow::from_row))
}

/// Records an exchange of a key: `last_used_at = now()` unless it was written less than a minute
/// ago (one write a minute however often the key is exchanged). Returns whether it wrote.
pub async fn touch_api_key(tx: &Tx<'_>, id: CustomerId, key: Uuid) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE tenant.api_keys SET last_used_at = now() \
             WHERE customer_id = $1 AND id = $2 \
               AND (last_used_at IS NULL OR last_used_at <= now() - interval '1 minute')",
            &[&id, &key],
        )
        .await?;
    Ok(n > 0)
}

/// The (customer, key) whose secret has this SHA-256, through the SECURITY DEFINER lookup (run it
/// in a service transaction: no tenant is known yet).
pub async fn api_key_by_secret_hash(
    tx: &Tx<'_>,
    hash: &[u8; 32],
) -> Result<Option<(CustomerId, Uuid)>> {
    let row = tx
        .query_opt(
            "SELECT customer_id, key_id FROM tenant.api_key_id_by_secret_hash($1)",
            &[&hash.as_slice()],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
