//! V27's `tenant.signups` (sign-ups awaiting their e-mail verification: platform-wide rows, no
//! tenant yet) and the once-only onboarding mail claims on `tenant.customers`
//! (`approved_mail_at`, `welcome_mail_at`, read and written in the customer's own transaction).

use std::time::Duration;

use mesh::db::Tx;
use mesh::domain::CustomerId;

use crate::error::Result;

/// A new sign-up row.
pub struct NewSignup<'a> {
    /// SHA-256 of the verification token.
    pub token_hash: &'a [u8],
    /// Keyed hash of the normalised e-mail address.
    pub email_hash: &'a [u8],
    /// Keyed hash of the client address key (IPv4, or the IPv6 /64).
    pub address_hash: &'a [u8],
    /// The normalised address.
    pub email: &'a str,
    /// The business's name.
    pub business_name: &'a str,
    /// The contact's name.
    pub contact_name: &'a str,
    /// The chosen password's Argon2id hash.
    pub password_hash: &'a str,
    /// How long the link is valid.
    pub ttl: Duration,
}

/// A verified sign-up's content, read as its row is marked verified.
pub struct Claimed {
    /// The normalised address.
    pub email: String,
    /// Its keyed hash.
    pub email_hash: Vec<u8>,
    /// The business's name.
    pub business_name: String,
    /// The contact's name.
    pub contact_name: String,
    /// The password's Argon2id hash.
    pub password_hash: String,
}

/// How many sign-ups a client address and an e-mail address made in the last 24 hours, and the
/// seconds until the client address's oldest of them is a day old.
pub async fn counts(
    tx: &Tx<'_>,
    address_hash: &[u8],
    email_hash: &[u8],
) -> Result<(i64, i64, u64)> {
    let row = tx
        .query_one(
            "SELECT \
               (SELECT count(*) FROM tenant.signups \
                 WHERE address_hash = $1 AND created_at > now() - interval '1 day'), \
               (SELECT count(*) FROM tenant.signups \
                 WHERE email_hash = $2 AND created_at > now() - interval '1 day'), \
               (SELECT coalesce(extract(epoch FROM min(created_at) + interval '1 day' - now()), 0)::float8 \
                  FROM tenant.signups \
                 WHERE address_hash = $1 AND created_at > now() - interval '1 day')",
            &[&address_hash, &email_hash],
        )
        .await?;
    let wait: f64 = row.get(2);
    Ok((row.get(0), row.get(1), wait.ceil().max(1.0) as u64))
}

/// Records a sign-up, and forgets those older than two days (the limits look back one).
pub async fn insert(tx: &Tx<'_>, s: &NewSignup<'_>) -> Result<i64> {
    tx.execute(
        "DELETE FROM tenant.signups WHERE created_at < now() - interval '2 days'",
        &[],
    )
    .await?;
    Ok(tx
        .query_one(
            "INSERT INTO tenant.signups (token_hash, email_hash, address_hash, email, \
             business_name, contact_name, password_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::float8 * interval '1 second') \
             RETURNING id",
            &[
                &s.token_hash,
                &s.email_hash,
                &s.address_hash,
                &s.email,
                &s.business_name,
                &s.contact_name,
                &s.password_hash,
                &s.ttl.as_secs_f64(),
            ],
        )
        .await?
        .get(0))
}

/// Whether an open (unverified, unexpired) sign-up has this token hash: a cheap check before a
/// customer id is taken.
pub async fn is_open(tx: &Tx<'_>, token_hash: &[u8]) -> Result<bool> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM tenant.signups \
             WHERE token_hash = $1 AND verified_at IS NULL AND expires_at > now()",
            &[&token_hash],
        )
        .await?
        .is_some())
}

/// Marks the open sign-up with this token hash verified, clearing its personal data, and
/// returns what it held; `None` when there is none (unknown, used or expired). Atomic: of two
/// concurrent verifications one gets the content, the other `None`.
pub async fn claim(tx: &Tx<'_>, token_hash: &[u8]) -> Result<Option<Claimed>> {
    let row = tx
        .query_opt(
            "UPDATE tenant.signups s SET verified_at = now(), email = NULL, business_name = NULL, \
               contact_name = NULL, password_hash = NULL \
             FROM (SELECT id, email, email_hash, business_name, contact_name, password_hash \
                     FROM tenant.signups \
                    WHERE token_hash = $1 AND verified_at IS NULL AND expires_at > now() \
                    FOR UPDATE) old \
             WHERE s.id = old.id \
             RETURNING old.email, old.email_hash, old.business_name, old.contact_name, \
               old.password_hash",
            &[&token_hash],
        )
        .await?;
    Ok(row.map(|r| Claimed {
        email: r.get(0),
        email_hash: r.get(1),
        business_name: r.get(2),
        contact_name: r.get::<_, Option<String>>(3).unwrap_or_default(),
        password_hash: r.get(4),
    }))
}

/// Claims the customer's approval mail: `true` once (the column was unset), then `false`.
pub async fn claim_approved_mail(tx: &Tx<'_>, id: CustomerId) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE tenant.customers SET approved_mail_at = now() \
             WHERE customer_id = $1 AND approved_mail_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Claims the customer's welcome mail when it holds exactly one number (its first routed one):
/// `true` once per customer, then `false`.
pub async fn claim_welcome_mail(tx: &Tx<'_>, id: CustomerId) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE tenant.customers SET welcome_mail_at = now() \
             WHERE customer_id = $1 AND welcome_mail_at IS NULL \
               AND (SELECT count(*) FROM tenant.phone_numbers WHERE customer_id = $1) = 1",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// The customer's active owners' addresses (their own; never logged), oldest first.
pub async fn owner_addresses(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "SELECT email FROM tenant.users \
             WHERE customer_id = $1 AND role = 'owner' AND disabled_at IS NULL ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
