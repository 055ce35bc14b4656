//! `tenant.webhook_secrets`: the signing secrets of a customer's webhook deliveries (migration
//! V5). They are written and read here only; no RPC returns one except the rotation that creates
//! it.

use chrono::{DateTime, Utc};
use mesh::db::Tx;
use mesh::domain::CustomerId;
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::types::Type;

use crate::error::{Result, TenantError};

/// Makes `secret` the current webhook secret, under [`lock_customer`](super::customers::lock_customer). The old current secret
/// becomes the previous one until the database's `now() + overlap`; a zero overlap drops it.
/// Returns `None` when there was no secret before, else when the previous secret stops signing.
pub async fn rotate_webhook_secret(
    tx: &Tx<'_>,
    id: CustomerId,
    secret: &SecretString,
    overlap: std::time::Duration,
) -> Result<Option<DateTime<Utc>>> {
    let overlap_s = overlap.as_secs_f64();
    let replaced = tx
        .query_opt(
            "UPDATE tenant.webhook_secrets SET \
             previous_secret = CASE WHEN $3::float8 > 0 THEN secret END, \
             previous_expires_at = CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END, \
             secret = $2, rotated_at = now() \
             WHERE customer_id = $1 \
             RETURNING coalesce(previous_expires_at, now())",
            &[&id, &secret.expose_secret(), &overlap_s],
        )
        .await?;
    if let Some(r) = replaced {
        return Ok(Some(r.get(0)));
    }
    tx.execute(
        "INSERT INTO tenant.webhook_secrets (customer_id, secret) VALUES ($1, $2)",
        &[&id, &secret.expose_secret()],
    )
    .await?;
    Ok(None)
}

/// What signing a delivery needs: the webhook URL (empty when none) and the secrets that sign now
/// (the current one, then the previous one while its overlap lasts, by the database clock).
pub struct SigningKeys {
    /// The customer's `webhook_url` ("" when never set).
    pub webhook_url: String,
    /// Current secret, if any.
    pub current: Option<SecretString>,
    /// Previous secret, only while its overlap lasts.
    pub previous: Option<SecretString>,
}

/// The current tenant's [`SigningKeys`]; NOT_FOUND when the customer does not exist.
pub async fn signing_keys(tx: &Tx<'_>, id: CustomerId) -> Result<SigningKeys> {
    let rows = tx
        .query_typed(
            "SELECT coalesce(s.webhook_url, ''), w.secret, \
             CASE WHEN w.previous_expires_at > now() THEN w.previous_secret END \
             FROM tenant.customers c \
             LEFT JOIN tenant.outbound_settings s ON s.customer_id = c.customer_id \
             LEFT JOIN tenant.webhook_secrets w ON w.customer_id = c.customer_id \
             WHERE c.customer_id = $1",
            &[(&id, Type::INT8)],
        )
        .await?;
    let r = rows.first().ok_or(TenantError::NotFound("customer"))?;
    Ok(SigningKeys {
        webhook_url: r.get(0),
        current: r.get::<_, Option<String>>(1).map(SecretString::from),
        previous: r.get::<_, Option<String>>(2).map(SecretString::from),
    })
}
