//! `media.numbers` (migration V26): every statement of the numbers. Each runs in a transaction
//! opened by `Db::tenant_tx` (RLS confines it to one tenant), except [`number_tenants`], which
//! runs in `Db::service_tx` through the SECURITY DEFINER function that returns customer ids only.

use chrono::{DateTime, Utc};
use mesh::api::media::{NumberOrigin, NumberState, PlatformNumber, Price};
use mesh::db::{DbError, Tx};
use mesh::domain::CustomerId;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::client::Money;
use crate::store::timestamp;

/// States that hold a number (counted against the limit, one tenant per number).
pub const HELD: [NumberState; 3] = [
    NumberState::Purchasing,
    NumberState::Active,
    NumberState::Releasing,
];

const COLUMNS: &str = "number_id, phone_number, request_id, twilio_sid, state, origin, \
                       price_currency, price_minor, webhooks_ok, created_at, acquired_at, released_at";

/// One row.
#[derive(Debug, Clone)]
pub struct NumberRow {
    /// Its id within the tenant.
    pub number_id: i64,
    /// E.164.
    pub phone_number: String,
    /// The purchase's idempotency key.
    pub request_id: Option<Uuid>,
    /// Twilio's sid, once known.
    pub twilio_sid: Option<String>,
    /// State.
    pub state: NumberState,
    /// Origin.
    pub origin: NumberOrigin,
    /// Monthly price when bought.
    pub price: Option<(String, i64)>,
    /// Webhooks ours at the last check.
    pub webhooks_ok: bool,
    /// When the row was written.
    pub created_at: DateTime<Utc>,
    /// When it became ACTIVE.
    pub acquired_at: Option<DateTime<Utc>>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
}

impl NumberRow {
    fn from_row(row: &tokio_postgres::Row) -> Self {
        let currency: Option<String> = row.get(6);
        let minor: Option<i64> = row.get(7);
        Self {
            number_id: row.get(0),
            phone_number: row.get(1),
            request_id: row.get(2),
            twilio_sid: row.get(3),
            state: NumberState::try_from(i32::from(row.get::<_, i16>(4)))
                .unwrap_or(NumberState::Unspecified),
            origin: NumberOrigin::try_from(i32::from(row.get::<_, i16>(5)))
                .unwrap_or(NumberOrigin::Unspecified),
            price: currency.zip(minor),
            webhooks_ok: row.get(8),
            created_at: row.get(9),
            acquired_at: row.get(10),
            released_at: row.get(11),
        }
    }

    /// The API's view; `customer` only for operators' views (0 hides it).
    pub fn to_pb(&self, customer: i64) -> PlatformNumber {
        PlatformNumber {
            phone_number: self.phone_number.clone(),
            twilio_sid: self.twilio_sid.clone().unwrap_or_default(),
            state: self.state as i32,
            origin: self.origin as i32,
            acquired_at: self.acquired_at.map(timestamp),
            released_at: self.released_at.map(timestamp),
            monthly_price: self.price.as_ref().map(|(c, m)| Price {
                currency: c.clone(),
                amount_minor: *m,
            }),
            customer_id: customer,
            webhooks_ok: self.webhooks_ok,
        }
    }

    /// Whether the number is held (purchasing, active, releasing).
    pub fn is_held(&self) -> bool {
        HELD.contains(&self.state)
    }
}

fn held_list() -> String {
    HELD.iter()
        .map(|s| (*s as i32).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Serialises the tenant's purchases and imports (the limit is counted and the intent written
/// under it). The key is a 64-bit hash of a numbers-specific name seeded with the tenant id.
pub async fn lock_tenant(tx: &Tx<'_>, customer: CustomerId) -> Result<(), DbError> {
    tx.query_typed(
        "SELECT pg_advisory_xact_lock(hashtextextended('media.numbers', $1))",
        &[(&customer, Type::INT8)],
    )
    .await?;
    Ok(())
}

/// Takes the one-runner lock of reconcile for this transaction; false when another holds it.
pub async fn try_reconcile_lock(tx: &Tx<'_>) -> Result<bool, DbError> {
    let row = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('media.numbers_reconcile', 0))",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// The row of a purchase request.
pub async fn by_request(
    tx: &Tx<'_>,
    customer: CustomerId,
    request_id: Uuid,
) -> Result<Option<NumberRow>, DbError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM media.numbers WHERE customer_id = $1 AND request_id = $2"
            ),
            &[&customer, &request_id],
        )
        .await?;
    Ok(row.as_ref().map(NumberRow::from_row))
}

/// The tenant's held row of `number`.
pub async fn held(
    tx: &Tx<'_>,
    customer: CustomerId,
    number: &str,
) -> Result<Option<NumberRow>, DbError> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM media.numbers WHERE customer_id = $1 AND phone_number = $2 \
                 AND state IN ({}) ORDER BY number_id DESC LIMIT 1",
                held_list()
            ),
            &[&customer, &number],
        )
        .await?;
    Ok(row.as_ref().map(NumberRow::from_row))
}

/// How many numbers the tenant holds.
pub async fn count_held(tx: &Tx<'_>, customer: CustomerId) -> Result<i64, DbError> {
    let row = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM media.numbers WHERE customer_id = $1 AND state IN ({})",
                held_list()
            ),
            &[&customer],
        )
        .await?;
    Ok(row.get(0))
}

/// The tenant's numbers, newest first (failed purchases left out); `held_only` for the held.
pub async fn list(
    tx: &Tx<'_>,
    customer: CustomerId,
    held_only: bool,
) -> Result<Vec<NumberRow>, DbError> {
    let filter = if held_only {
        format!("state IN ({})", held_list())
    } else {
        format!("state <> {}", NumberState::Failed as i32)
    };
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM media.numbers WHERE customer_id = $1 AND {filter} \
                 ORDER BY number_id DESC LIMIT 1000"
            ),
            &[&customer],
        )
        .await?;
    Ok(rows.iter().map(NumberRow::from_row).collect())
}

/// A new row to write.
#[derive(Debug, Clone)]
pub struct NewNumber<'a> {
    /// E.164.
    pub phone_number: &'a str,
    /// Idempotency key (purchases).
    pub request_id: Option<Uuid>,
    /// Twilio's sid (imports).
    pub twilio_sid: Option<&'a str>,
    /// PURCHASING or ACTIVE.
    pub state: NumberState,
    /// Origin.
    pub origin: NumberOrigin,
    /// Monthly price.
    pub price: Option<Money>,
    /// Webhooks ours.
    pub webhooks_ok: bool,
}

/// Writes a row. A unique violation (the number held by a tenant, or the request id used)
/// comes back as the database error; [`is_unique_violation`] tells.
pub async fn insert(
    tx: &Tx<'_>,
    customer: CustomerId,
    n: &NewNumber<'_>,
) -> Result<NumberRow, DbError> {
    let active = n.state == NumberState::Active;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO media.numbers (customer_id, phone_number, request_id, twilio_sid, \
                 state, origin, price_currency, price_minor, webhooks_ok, acquired_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $10 THEN now() END) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &customer,
                &n.phone_number,
                &n.request_id,
                &n.twilio_sid,
                &(n.state as i16),
                &(n.origin as i16),
                &n.price.map(|p| p.currency().to_owned()),
                &n.price.map(|p| p.minor),
                &n.webhooks_ok,
                &active,
            ],
        )
        .await?;
    Ok(NumberRow::from_row(&row))
}

/// Whether a write failed on a unique constraint.
pub fn is_unique_violation(e: &DbError) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// The purchase happened: ACTIVE with its sid.
pub async fn activate(
    tx: &Tx<'_>,
    customer: CustomerId,
    number_id: i64,
    sid: &str,
    webhooks_ok: bool,
) -> Result<NumberRow, DbError> {
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.numbers SET state = {}, twilio_sid = $3, webhooks_ok = $4, \
                 acquired_at = coalesce(acquired_at, now()), updated_at = now() \
                 WHERE customer_id = $1 AND number_id = $2 RETURNING {COLUMNS}",
                NumberState::Active as i32
            ),
            &[&customer, &number_id, &sid, &webhooks_ok],
        )
        .await?;
    Ok(NumberRow::from_row(&row))
}

/// Moves a row to `state` (RELEASED and FAILED stamp `released_at`).
pub async fn set_state(
    tx: &Tx<'_>,
    customer: CustomerId,
    number_id: i64,
    state: NumberState,
) -> Result<NumberRow, DbError> {
    let row = tx
        .query_one(
            &format!(
                "UPDATE media.numbers SET state = $3::smallint, updated_at = now(), \
                 released_at = CASE WHEN $3::smallint IN ({}, {}) THEN now() ELSE released_at END \
                 WHERE customer_id = $1 AND number_id = $2 RETURNING {COLUMNS}",
                NumberState::Released as i32,
                NumberState::Failed as i32
            ),
            &[&customer, &number_id, &(state as i16)],
        )
        .await?;
    Ok(NumberRow::from_row(&row))
}

/// Records the last webhook check.
pub async fn set_webhooks_ok(
    tx: &Tx<'_>,
    customer: CustomerId,
    number_id: i64,
    ok: bool,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE media.numbers SET webhooks_ok = $3, updated_at = now() \
         WHERE customer_id = $1 AND number_id = $2",
        &[&customer, &number_id, &ok],
    )
    .await?;
    Ok(())
}

/// Forgets an intent Twilio refused outright (nothing was bought, nothing stays stored).
pub async fn delete_intent(
    tx: &Tx<'_>,
    customer: CustomerId,
    number_id: i64,
) -> Result<(), DbError> {
    tx.execute(
        &format!(
            "DELETE FROM media.numbers WHERE customer_id = $1 AND number_id = $2 AND state = {}",
            NumberState::Purchasing as i32
        ),
        &[&customer, &number_id],
    )
    .await?;
    Ok(())
}

/// Customer ids holding a number (SECURITY DEFINER `media.number_tenants()`, ids only). Runs
/// in `Db::service_tx`.
pub async fn number_tenants(tx: &Tx<'_>) -> Result<Vec<CustomerId>, DbError> {
    let rows = tx
        .query("SELECT customer_id FROM media.number_tenants()", &[])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| CustomerId::new(r.get::<_, i64>(0)).ok())
        .collect())
}
