//! `tenant.customers`: the customer row, its configuration overrides, its status, and the two
//! id-only SECURITY DEFINER helpers an operator's listing and a creation need.

use mesh::db::Tx;
use mesh::domain::{CustomerId, Voice};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::customer::{Customer, CustomerStatus};
use crate::error::{Result, TenantError};
use crate::model::Overrides;
use crate::wire::{from_json, json};

use super::numbers;

const CUSTOMER_COLUMNS: &str = "email, business_name, contact_name, contact_phone, \
     package_tier, status, agent_name, greeting_new_caller, greeting_returning_caller, voice, \
     sliders, prompt_blocks, transfer_rules, time_zone, created_at, updated_at";

/// The customer of a row read by its id `id` (RLS shows no other).
fn customer_from_row(row: &Row, id: CustomerId) -> Customer {
    let sliders: Value = row.get("sliders");
    Customer {
        id,
        email: row.get("email"),
        business_name: row.get("business_name"),
        contact_name: row.get("contact_name"),
        contact_phone: row.get("contact_phone"),
        package_tier: row.get("package_tier"),
        status: CustomerStatus::from_column(row.get("status")),
        overrides: Overrides {
            agent_name: row.get("agent_name"),
            greeting_new_caller: row.get("greeting_new_caller"),
            greeting_returning_caller: row.get("greeting_returning_caller"),
            // Written only after `Voice::parse`; a name it no longer knows reads as unset (the
            // platform default) rather than failing every read of the customer.
            voice: voice_column(row.get("voice")),
            sliders: serde_json::from_value(sliders).unwrap_or_default(),
            prompt_blocks: from_json(row.get("prompt_blocks")),
            transfer_rules: from_json(row.get("transfer_rules")),
            time_zone: row.get("time_zone"),
        },
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        numbers: Vec::new(),
    }
}

/// A stored voice name as a [`Voice`]; `None` when NULL or no longer a realtime voice.
fn voice_column(name: Option<String>) -> Option<Voice> {
    name.and_then(|n| Voice::parse(&n).ok())
}

/// The overrides as the eight configuration parameters that creating and updating a customer
/// both write (`agent_name` to `time_zone`, in that order).
struct ConfigParams<'a> {
    o: &'a Overrides,
    voice: Option<&'static str>,
    sliders: Value,
    prompt_blocks: Option<Value>,
    transfer_rules: Option<Value>,
}

impl<'a> ConfigParams<'a> {
    fn new(o: &'a Overrides) -> Self {
        Self {
            o,
            voice: o.voice.map(Voice::as_str),
            sliders: json(&o.sliders),
            prompt_blocks: o.prompt_blocks.as_ref().map(json),
            transfer_rules: o.transfer_rules.as_ref().map(json),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.o.agent_name,
            &self.o.greeting_new_caller,
            &self.o.greeting_returning_caller,
            &self.voice,
            &self.sliders,
            &self.prompt_blocks,
            &self.transfer_rules,
            &self.o.time_zone,
        ]
    }
}

/// The next customer id (from the identity sequence), so the row can be inserted under its own
/// tenant context.
pub async fn next_customer_id(tx: &Tx<'_>) -> Result<CustomerId> {
    let row = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('tenant.customers', 'customer_id'))",
            &[],
        )
        .await?;
    row.try_get::<_, CustomerId>(0)
        .map_err(|_| TenantError::FailedPrecondition("bad id".into()))
}

/// New customer fields.
pub struct NewCustomer<'a> {
    /// Email.
    pub email: &'a str,
    /// Business name.
    pub business_name: &'a str,
    /// Contact name.
    pub contact_name: &'a str,
    /// Contact phone.
    pub contact_phone: &'a str,
    /// Tier.
    pub package_tier: &'a str,
    /// Initial overrides.
    pub overrides: &'a Overrides,
}

/// Inserts a customer with the given id (inside that customer's tenant transaction).
pub async fn insert_customer(tx: &Tx<'_>, id: CustomerId, c: &NewCustomer<'_>) -> Result<()> {
    let config = ConfigParams::new(c.overrides);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &id,
        &c.email,
        &c.business_name,
        &c.contact_name,
        &c.contact_phone,
        &c.package_tier,
    ];
    params.extend(config.params());
    tx.execute(
        "INSERT INTO tenant.customers (customer_id, email, business_name, contact_name, \
         contact_phone, package_tier, agent_name, greeting_new_caller, greeting_returning_caller, \
         voice, sliders, prompt_blocks, transfer_rules, time_zone) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &params,
    )
    .await?;
    Ok(())
}

/// The current tenant's customer row without its numbers (the call path needs no more);
/// `None` when it does not exist. One round trip (typed, no separate prepare).
pub async fn get_customer_core(tx: &Tx<'_>, id: CustomerId) -> Result<Option<Customer>> {
    let rows = tx
        .query_typed(
            &format!("SELECT {CUSTOMER_COLUMNS} FROM tenant.customers WHERE customer_id = $1"),
            &[(&id, Type::INT8)],
        )
        .await?;
    Ok(rows.first().map(|r| customer_from_row(r, id)))
}

/// Like [`get_customer_core`] but NOT_FOUND when missing.
pub async fn require_customer_core(tx: &Tx<'_>, id: CustomerId) -> Result<Customer> {
    get_customer_core(tx, id)
        .await?
        .ok_or(TenantError::NotFound("customer"))
}

/// The current tenant's customer (RLS shows only it), with numbers; `None` when it does not
/// exist.
pub async fn get_customer(tx: &Tx<'_>, id: CustomerId) -> Result<Option<Customer>> {
    let Some(mut c) = get_customer_core(tx, id).await? else {
        return Ok(None);
    };
    c.numbers = numbers::list(tx, id).await?;
    Ok(Some(c))
}

/// Like [`get_customer`] but NOT_FOUND when missing.
pub async fn require_customer(tx: &Tx<'_>, id: CustomerId) -> Result<Customer> {
    get_customer(tx, id)
        .await?
        .ok_or(TenantError::NotFound("customer"))
}

/// Writes the overrides of the current tenant's customer.
pub async fn update_overrides(tx: &Tx<'_>, id: CustomerId, o: &Overrides) -> Result<()> {
    let config = ConfigParams::new(o);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    params.extend(config.params());
    tx.execute(
        "UPDATE tenant.customers SET agent_name = $2, greeting_new_caller = $3, \
         greeting_returning_caller = $4, voice = $5, sliders = $6, prompt_blocks = $7, \
         transfer_rules = $8, time_zone = $9, updated_at = now() WHERE customer_id = $1",
        &params,
    )
    .await?;
    Ok(())
}

/// Sets the status; returns whether it changed.
pub async fn set_status(tx: &Tx<'_>, id: CustomerId, status: CustomerStatus) -> Result<bool> {
    let n = tx
        .execute(
            "UPDATE tenant.customers SET status = $2, updated_at = now() \
             WHERE customer_id = $1 AND status <> $2",
            &[&id, &status.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Deletes the current tenant's customer (its numbers, settings, secrets and history go with it,
/// `ON DELETE CASCADE`); NOT_FOUND when it does not exist.
pub async fn delete_customer(tx: &Tx<'_>, id: CustomerId) -> Result<()> {
    let n = tx
        .execute(
            "DELETE FROM tenant.customers WHERE customer_id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(TenantError::NotFound("customer"));
    }
    Ok(())
}

/// Locks the current tenant's customer row until the transaction ends, so that concurrent
/// read-modify-write changes of its settings or secret apply one after the other (a second
/// rotation then turns the first one's secret into `previous` instead of losing it). NOT_FOUND
/// when the customer does not exist.
pub async fn lock_customer(tx: &Tx<'_>, id: CustomerId) -> Result<()> {
    tx.query_opt(
        "SELECT 1 FROM tenant.customers WHERE customer_id = $1 FOR NO KEY UPDATE",
        &[&id],
    )
    .await?
    .map(|_| ())
    .ok_or(TenantError::NotFound("customer"))
}

/// Customer ids after `after`, in order (admin listing, through the id-only SECURITY DEFINER
/// function: an operator's transaction has no tenant context).
pub async fn list_customer_ids(tx: &Tx<'_>, after: i64, limit: i32) -> Result<Vec<CustomerId>> {
    Ok(tx
        .query("SELECT tenant.list_customer_ids($1, $2)", &[&after, &limit])
        .await?
        .iter()
        .filter_map(|r| r.try_get::<_, CustomerId>(0).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_voices_read_back_and_unknown_ones_read_as_unset() {
        assert_eq!(voice_column(Some("sage".into())), Some(Voice::Sage));
        assert_eq!(voice_column(None), None);
        assert_eq!(voice_column(Some("nova".into())), None);
    }
}
