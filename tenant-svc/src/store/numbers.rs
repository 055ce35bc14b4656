//! `tenant.phone_numbers`: a customer's numbers, assigning and releasing one, and the one
//! cross-tenant read of the call path (which customer owns a called number).

use chrono::{DateTime, Utc};
use mesh::api::tenant as pb;
use mesh::db::Tx;
use mesh::domain::{AccountSid, CustomerId, PhoneNumber};
use tokio_postgres::types::Type;

use crate::error::{Result, TenantError};
use crate::wire::timestamp;

/// The current tenant's numbers, in order.
pub async fn list(tx: &Tx<'_>, id: CustomerId) -> Result<Vec<pb::PhoneNumber>> {
    Ok(tx
        .query_typed(
            "SELECT number, twilio_account_sid, assigned_at FROM tenant.phone_numbers \
             WHERE customer_id = $1 ORDER BY number",
            &[(&id, Type::INT8)],
        )
        .await?
        .iter()
        .map(|r| pb::PhoneNumber {
            number: r.get(0),
            twilio_account_sid: r.get(1),
            assigned_at: Some(timestamp(r.get(2))),
        })
        .collect())
}

/// Assigns `number` to the current tenant (pinned to `account` when given); returns when. A
/// number another customer (or this one) holds is a unique violation.
pub async fn assign_number(
    tx: &Tx<'_>,
    id: CustomerId,
    number: &PhoneNumber,
    account: Option<&AccountSid>,
) -> Result<DateTime<Utc>> {
    let row = tx
        .query_one(
            "INSERT INTO tenant.phone_numbers (customer_id, number, twilio_account_sid) \
             VALUES ($1, $2, $3) RETURNING assigned_at",
            &[&id, number, &account],
        )
        .await?;
    Ok(row.get(0))
}

/// Releases `number` from the current tenant; NOT_FOUND when it does not hold it.
pub async fn release_number(tx: &Tx<'_>, id: CustomerId, number: &PhoneNumber) -> Result<()> {
    let n = tx
        .execute(
            "DELETE FROM tenant.phone_numbers WHERE customer_id = $1 AND number = $2",
            &[&id, number],
        )
        .await?;
    if n == 0 {
        return Err(TenantError::NotFound("phone number"));
    }
    Ok(())
}

/// The customer owning exactly `number` (and matching the Twilio account when the number is
/// pinned to one). The only cross-tenant read of the call path; returns the id only.
pub async fn resolve_number(
    tx: &Tx<'_>,
    number: &PhoneNumber,
    account: &AccountSid,
) -> Result<Option<CustomerId>> {
    let row = tx
        .query_typed(
            "SELECT tenant.resolve_number($1, $2)",
            &[(number, Type::TEXT), (account, Type::TEXT)],
        )
        .await?;
    let Some(row) = row.first() else {
        return Ok(None);
    };
    // NULL (no owner) and an id that is not a customer's both read as no customer.
    Ok(row.try_get::<_, Option<CustomerId>>(0).ok().flatten())
}
